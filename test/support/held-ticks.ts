/**
 * Raft ticks a test can suspend in members started by startNode (which takes no
 * scheduler: its hosts tick on realScheduler's setInterval). `during` swaps
 * realScheduler.startTicks while the members start, so their tick timers come back here;
 * while `hold`ing, a tick timer fires without ticking (no heartbeat, no election or lease
 * tick, no notice a leader's tick sends). TestCluster.holdTicks is the same for
 * test/raft/host/cluster.ts. A test then shows that something happens with no tick at all
 * (counted: `ticked` does not move), instead of bounding its milliseconds.
 */
import { realScheduler } from "../../src/raft/host/runtime.ts";

export class HoldableTicks {
  private held = false;
  /** Ticks delivered to the hosts, and ticks dropped while held. */
  ticked = 0;
  dropped = 0;
  /** Hosts whose ticks came through `during`. */
  started = 0;

  /** Runs `start` (it starts Raft hosts with the default scheduler) with holdable ticks. */
  async during<T>(start: () => Promise<T>): Promise<T> {
    const original = realScheduler.startTicks;
    realScheduler.startTicks = (tickMs, onTick) => {
      this.started++;
      return original.call(realScheduler, tickMs, () => {
        if (this.held) this.dropped++;
        else {
          this.ticked++;
          onTick();
        }
      });
    };
    try {
      return await start();
    } finally {
      realScheduler.startTicks = original;
    }
  }

  /** Suspends every tick until the returned function is called. */
  hold(): () => void {
    this.held = true;
    return () => {
      this.held = false;
    };
  }
}

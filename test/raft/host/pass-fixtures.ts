/** Fixtures shared by the host's one-member tests (ready-pass, review21-host-batches, runtime). */
import { ManualClock } from "../../../src/clock.ts";
import type { Entry } from "../../../src/raft/core/types.ts";
import type { HostScheduler } from "../../../src/raft/host/runtime.ts";
import type { RaftHostConfig, StateMachine } from "../../../src/raft/host/types.ts";
import type { SimDisk } from "../sim/host/disk.ts";
import { MemoryNetwork } from "./memory-transport.ts";

export const utf8 = new TextEncoder();

/** Counts applied entries; answers each with its index. */
export class CountingMachine implements StateMachine {
  applied = 0;
  apply(entry: Entry): Uint8Array {
    this.applied++;
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array {
    return utf8.encode(String(this.applied));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = Number(new TextDecoder().decode(data));
  }
}

/** No ticks unless the test calls them; deferred work runs after pending I/O. */
export class IdleScheduler implements HostScheduler {
  startTicks(): () => void {
    return () => {};
  }
  later(run: () => void): void {
    setImmediate(run);
  }
  monotonicMs(): number {
    return 0;
  }
}

/** Lets pending promise continuations (the host's passes) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The config of a one-member host ("solo") on `disk`: 10 ms ticks, no snapshots, a manual
 * clock and an in-memory transport; `scheduler` and `onFatal` are the test's.
 */
export function soloHostConfig(
  disk: SimDisk,
  scheduler: HostScheduler,
  onFatal: (error: Error) => void,
): RaftHostConfig {
  return {
    self: "solo",
    members: new Map([["solo", "mem:solo"]]),
    dataDir: "(simulated)",
    tickMs: 10,
    electionTicks: 10,
    heartbeatTicks: 2,
    snapshotEntries: 0,
    compactionOverheadEntries: 0,
    clock: new ManualClock(),
    transport: new MemoryNetwork().transport("solo"),
    scheduler,
    openStorage: async (groupId, initialConf) => disk.open(groupId, initialConf),
    onFatal,
  };
}

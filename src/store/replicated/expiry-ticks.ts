/**
 * A DStore's expiry ticks: keys with delete deadlines expire at log time (the leader's
 * stamp on entries), so while one is due and the log is silent, a tick entry is proposed
 * to let the time pass on every member. Checked on the store's own timer or a timer
 * shared by a member's many shards (SharedTicks).
 */
import type { Clock } from "../../clock.ts";
import { DkvError } from "../../errors.ts";
import type { RaftHost } from "../../raft/host/raft-host.ts";
import { PurgeLoop, type SharedTicks } from "../purge-loop.ts";
import { checkDuration } from "../validate.ts";
import { encodeCommand, Op } from "./command.ts";
import type { DStoreStateMachine } from "./state-machine.ts";

const EMPTY = new Uint8Array(0);

export class ExpiryTicks {
  private readonly tickMs: number;
  /** Stops the checks (its own PurgeLoop, or its place on the shared timer). */
  private readonly stopChecks: () => void;
  private stopped = false;
  private tickInFlight = false;

  /** `tickMs`: the interval of its own timer (0: never), unless `shared` gives one. */
  constructor(
    private readonly host: RaftHost,
    private readonly groupId: number,
    private readonly stateMachine: DStoreStateMachine,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    tickMs: number,
    shared: SharedTicks | undefined,
  ) {
    this.tickMs = shared?.intervalMs ?? tickMs;
    checkDuration("expiryTickMs", this.tickMs);
    if (shared !== undefined && this.tickMs > 0) {
      this.stopChecks = shared.add(() => this.maybeTick());
    } else if (this.tickMs > 0) {
      const loop = new PurgeLoop(this.clock, this.tickMs, () => {
        this.maybeTick();
        return false;
      });
      loop.start();
      this.stopChecks = () => loop.stop();
    } else {
      this.stopChecks = () => {};
    }
  }

  /** The store closed: no more ticks from it. */
  stop(): void {
    this.stopped = true;
    this.stopChecks();
  }

  /**
   * Proposes a tick entry when a delete deadline has passed (by the clock that stamps
   * entries) and nothing is in the log to let it pass: on the leader at once, on a
   * follower only once the deadline is overdue by two intervals (a leader without a
   * DStore of its own, or one that fell behind). One in flight per member at a time.
   */
  private maybeTick(): void {
    if (this.stopped || this.tickInFlight) return;
    const dueMs = this.stateMachine.db.nextDeadlineMs();
    const nowMs = this.clock.now();
    if (dueMs > nowMs) return;
    let leader: boolean;
    try {
      leader = this.host.status(this.groupId).raft.role === "leader";
    } catch (error) {
      // The host is closing: nothing to stamp.
      if (DkvError.is(error)) return;
      throw error;
    }
    if (!leader && nowMs - dueMs < 2 * this.tickMs) return;
    this.tickInFlight = true;
    const tick = { op: Op.Tick, key: "", value: EMPTY, expireInMs: 0, deleteInMs: 0, origin: undefined };
    this.host
      .propose(this.groupId, encodeCommand(tick), { timeoutMs: this.timeoutMs })
      .then(
        () => undefined,
        (error: unknown) => {
          // No leader right now, or closing: the next look proposes again.
          if (!DkvError.is(error)) throw error;
        },
      )
      .finally(() => {
        this.tickInFlight = false;
      });
  }
}

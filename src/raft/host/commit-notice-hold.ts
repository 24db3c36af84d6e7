/**
 * Commit notices held for a moment (the core's RaftConfig.holdCommitNotices). When a
 * leader's commit index moves with nothing new to append, its followers would each get a
 * Commit message at once; with many groups each taking one write at a time, that is a
 * message, a decode and a follower Ready per write and follower, and the group's next write
 * often follows within a few milliseconds with an Append that carries the same commit
 * index. So the core holds such notices and the host sends whatever is still owed after
 * `holdMs` (all groups' at once: one frame per follower). A follower's read waiting for a
 * read index is never held (the core sends those at once), and the leader's tick sends any
 * notice still held when the runtime gives no timer (the simulator). `holdMs` is kept far
 * below a tick: a follower applies a write without waiting for the leader's next tick
 * (test/review22/commit-notice-latency.test.ts holds the ticks and checks the write still
 * arrives), which its watches and lock waiters see.
 */

/** What the hold needs of a group (RaftGroup). */
export interface CommitNoticeHolder {
  /** Sends the group's held commit notices (RaftNode.sendHeldCommitNotices) and asks for a pass. */
  releaseCommitNotices(): void;
}

/** The longest a notice is held (ms), and at most this fraction of a tick. */
export const COMMIT_NOTICE_HOLD_MS_MAX = 5;
const COMMIT_NOTICE_HOLD_TICK_FRACTION = 1 / 16;

/** How long notices are held with this tick; 0 (no hold) when that is under a millisecond (timers are no finer). */
export function commitNoticeHoldMs(tickMs: number): number {
  const ms = Math.min(COMMIT_NOTICE_HOLD_MS_MAX, tickMs * COMMIT_NOTICE_HOLD_TICK_FRACTION);
  return ms >= 1 ? ms : 0;
}

export class CommitNoticeHold {
  /** Groups holding notices: at most one entry per group hosted. */
  private readonly held = new Set<CommitNoticeHolder>();
  private armed = false;

  /** `after` runs a function once, `ms` from now (a timer). */
  constructor(
    private readonly holdMs: number,
    private readonly after: (ms: number, run: () => void) => void,
  ) {}

  /** `group` holds notices: they go out within holdMs (with every other group's held by then). */
  hold(group: CommitNoticeHolder): void {
    this.held.add(group);
    if (this.armed) return;
    this.armed = true;
    this.after(this.holdMs, this.release);
  }

  private readonly release = (): void => {
    this.armed = false;
    const groups = [...this.held];
    this.held.clear();
    for (const group of groups) group.releaseCommitNotices();
  };
}

/** The GroupEnv part that holds commit notices, when `scheduler` has a timer and the tick allows a hold. */
export function commitNoticeHoldEnv(
  scheduler: { after?(ms: number, run: () => void): void },
  tickMs: number,
): { holdCommitNotices?(group: CommitNoticeHolder): void } {
  const after = scheduler.after;
  const holdMs = commitNoticeHoldMs(tickMs);
  if (after === undefined || holdMs === 0) return {};
  const hold = new CommitNoticeHold(holdMs, (ms, run) => after.call(scheduler, ms, run));
  return { holdCommitNotices: (group) => hold.hold(group) };
}

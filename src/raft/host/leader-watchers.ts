/**
 * Who waits for a group's next leader change (RaftGroup.waitLeaderChange: a proposal that
 * found no leader waits to retry), each until a deadline checked in ticks.
 */
import type { GroupEnv } from "./group-env.ts";

interface LeaderWatcher {
  wake: () => void;
  deadlineMs: number;
}

/** One group's leader watchers: woken on every leader change (and on close), or at their deadline. */
export class LeaderWatchers {
  private watchers: LeaderWatcher[] = [];

  constructor(private readonly env: Pick<GroupEnv, "monotonicMs">) {}

  /** Resolves on the next wakeAll, or at the first expire after `ms` (monotonic), whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((wake) => {
      this.watchers.push({ wake, deadlineMs: this.env.monotonicMs() + ms });
    });
  }

  /** Wakes the watchers whose deadline passed (once per tick). */
  expire(nowMs: number): void {
    if (!this.watchers.some((watcher) => watcher.deadlineMs <= nowMs)) return;
    const due = this.watchers.filter((watcher) => watcher.deadlineMs <= nowMs);
    this.watchers = this.watchers.filter((watcher) => watcher.deadlineMs > nowMs);
    for (const watcher of due) watcher.wake();
  }

  /** Wakes every watcher (the leader changed, or the group stopped). */
  wakeAll(): void {
    const watchers = this.watchers;
    this.watchers = [];
    for (const watcher of watchers) watcher.wake();
  }
}

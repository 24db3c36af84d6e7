import { DkvError } from "../../errors.ts";

/** What the monitor ends: a watcher (store/watch.ts Watcher). */
export interface Failable {
  fail(error: DkvError): void;
}

/**
 * Ends the watches that asked for `requireLeader` once this member has had no leader for
 * longer than `timeoutMs` (an election timeout). One check timer per store, running only
 * while such watches are open; time is the monotonic clock, as Raft's election ticks are.
 */
export class LeaderMonitor {
  private readonly watchers = new Set<Failable>();
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Monotonic ms since which no leader was seen; undefined while there is one. */
  private leaderlessSinceMs: number | undefined;

  constructor(
    private readonly hasLeader: () => boolean,
    private readonly timeoutMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
      throw new DkvError("USAGE", `the leader timeout must be a whole number of ms >= 1; got ${timeoutMs}`);
    }
  }

  /**
   * Starts watching for `watcher`; throws UNAVAILABLE (nothing started) when the member is
   * already known to have been leaderless past the timeout.
   */
  add(watcher: Failable): void {
    this.check();
    if (this.overdue()) throw this.noLeader();
    this.watchers.add(watcher);
    // A quarter of the timeout: the error comes at most 1.25 timeouts after the leader went.
    this.timer ??= setInterval(() => this.check(), Math.max(1, Math.floor(this.timeoutMs / 4)));
  }

  remove(watcher: Failable): void {
    this.watchers.delete(watcher);
    if (this.watchers.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Watches open with requireLeader (monitoring, tests). */
  get size(): number {
    return this.watchers.size;
  }

  private check(): void {
    if (this.hasLeader()) {
      this.leaderlessSinceMs = undefined;
      return;
    }
    this.leaderlessSinceMs ??= this.nowMs();
    if (!this.overdue()) return;
    const error = this.noLeader();
    for (const watcher of [...this.watchers]) {
      this.remove(watcher);
      watcher.fail(error);
    }
  }

  private overdue(): boolean {
    return this.leaderlessSinceMs !== undefined && this.nowMs() - this.leaderlessSinceMs > this.timeoutMs;
  }

  private noLeader(): DkvError {
    const forMs = Math.round(this.nowMs() - (this.leaderlessSinceMs ?? this.nowMs()));
    return new DkvError(
      "UNAVAILABLE",
      `no leader: this member has had no Raft leader for ${forMs} ms (over the ${this.timeoutMs} ms election timeout), so its stream may be stale; watch through another member from the last revision seen (requireLeader)`,
    );
  }
}

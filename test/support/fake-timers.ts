/**
 * Injected monotonic time and timers, for code that takes `later(run, ms)` and
 * `monotonicMs()`: nothing waits for real time, and a test moves time on with `advance`.
 */
export class FakeTimers {
  nowMs = 0;
  /** The most timers pending at once so far. */
  maxPending = 0;
  private readonly timers: { run: () => void; atMs: number }[] = [];

  get pending(): number {
    return this.timers.length;
  }

  /** Runs `run` once `ms` have passed; returns its cancel. */
  readonly later = (run: () => void, ms: number): (() => void) => {
    const timer = { run, atMs: this.nowMs + ms };
    this.timers.push(timer);
    this.maxPending = Math.max(this.maxPending, this.timers.length);
    return () => {
      const at = this.timers.indexOf(timer);
      if (at >= 0) this.timers.splice(at, 1);
    };
  };

  readonly monotonicMs = (): number => this.nowMs;

  /** Moves time on by `ms`, running each timer when its time comes (timers they set too). */
  advance(ms: number): void {
    const endMs = this.nowMs + ms;
    // Bounded: each turn runs one due timer; a test sets a few hundred at most.
    for (let turn = 0; turn < 10_000; turn++) {
      const due = this.timers.filter((t) => t.atMs <= endMs).sort((a, b) => a.atMs - b.atMs)[0];
      if (due === undefined) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.nowMs = Math.max(this.nowMs, due.atMs);
      due.run();
    }
    this.nowMs = Math.max(this.nowMs, endMs);
  }
}

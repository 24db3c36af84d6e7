/**
 * Time is injected everywhere below the runtime so behaviour is testable without
 * sleeping. `now()` is wall-clock milliseconds since the epoch.
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms` of this clock's time (a manual clock resolves when advanced). */
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

/** A clock tests move by hand: `advance(ms)` fires every sleeper whose time has come. */
export class ManualClock implements Clock {
  private nowMs: number;
  private sleepers: { wakeAtMs: number; resolve: () => void }[] = [];
  private sleepsStartedCount = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    this.sleepsStartedCount++;
    return new Promise((resolve) => this.sleepers.push({ wakeAtMs: this.nowMs + ms, resolve }));
  }

  /** Moves time forward and wakes due sleepers; awaits a microtask turn so they run. */
  async advance(ms: number): Promise<void> {
    this.nowMs += ms;
    const due = this.sleepers.filter((s) => s.wakeAtMs <= this.nowMs);
    this.sleepers = this.sleepers.filter((s) => s.wakeAtMs > this.nowMs);
    for (const sleeper of due) sleeper.resolve();
    for (let i = 0; i < 10; i++) await Promise.resolve();
  }

  get pendingSleepers(): number {
    return this.sleepers.length;
  }

  /** How many sleeps have begun: tells a test driver that the code under test is blocked on the clock again. */
  get sleepsStarted(): number {
    return this.sleepsStartedCount;
  }
}

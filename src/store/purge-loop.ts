import { type Clock, systemClock } from "../clock.ts";

/** Delay before the next slice when the last one was full: yields to I/O, then goes on. */
const BACKLOG_DELAY_MS = 1;

/**
 * Runs `slice` every `intervalMs` of `clock` time until stopped. `slice` does a bounded
 * amount of work and returns true when it stopped early because more was left, so a
 * backlog drains in many short turns instead of one long event-loop stall.
 *
 * On the system clock it uses an unref'd timer so an idle store never keeps a process
 * alive; on any other clock (a ManualClock in tests) it sleeps on that clock, so tests
 * drive it by advancing time instead of waiting.
 */
export class PurgeLoop {
  private stopped = true;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped by stop(): a sleep on a non-system clock from before it wakes to nothing. */
  private generation = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly slice: () => boolean,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(this.intervalMs);
  }

  /** Idempotent. A sleep already pending on a non-system clock wakes later and does nothing. */
  stop(): void {
    this.stopped = true;
    this.generation++;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  get running(): boolean {
    return !this.stopped;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.clock === systemClock) {
      this.timer = setTimeout(this.tick, delayMs);
      this.timer.unref();
    } else {
      // A sleep cannot be cancelled: one begun before a stop() and start() must not run a second loop.
      const generation = this.generation;
      void this.clock.sleep(delayMs).then(() => {
        if (generation === this.generation) this.tick();
      });
    }
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    if (this.stopped) return;
    // A throwing slice is an engine bug: let it surface rather than retry it forever.
    const backlog = this.slice();
    this.schedule(backlog ? BACKLOG_DELAY_MS : this.intervalMs);
  };
}

/**
 * One timer for many stores' periodic checks: a process with many dstore shards would
 * otherwise wake once per shard every interval. `add` registers a check and returns the
 * function that removes it; the timer runs while any check is registered. A check that
 * throws stops the timer for all of them, as a PurgeLoop's throwing slice stops it: an
 * engine bug surfaces rather than repeating.
 */
export class SharedTicks {
  private readonly checks = new Set<() => void>();
  private readonly loop: PurgeLoop;

  constructor(
    readonly clock: Clock,
    readonly intervalMs: number,
  ) {
    this.loop = new PurgeLoop(clock, intervalMs, () => {
      for (const check of this.checks) check();
      return false;
    });
  }

  add(check: () => void): () => void {
    this.checks.add(check);
    this.loop.start();
    return () => {
      this.checks.delete(check);
      if (this.checks.size === 0) this.loop.stop();
    };
  }

  get running(): boolean {
    return this.loop.running;
  }
}

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
      void this.clock.sleep(delayMs).then(this.tick);
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

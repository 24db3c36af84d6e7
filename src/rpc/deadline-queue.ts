/**
 * Deadlines of requests in flight without a timer per request: entries join in arrival
 * order, all with the same timeout, so the list is sorted by deadline and one timer armed
 * for the oldest is enough. An entry that finishes unlinks itself in O(1); the timer, when
 * it fires, expires what is due and re-arms for the new oldest. (A setTimeout and a
 * clearTimeout per request cost a timer object and two timer-heap operations each, on the
 * server and on the client, for a timeout that almost never fires.)
 */

/** An entry of a DeadlineQueue: the object itself carries the links (no wrapper per request). */
export interface DeadlineEntry {
  expiresAtMs: number;
  /** Links of the queue; undefined while not queued. */
  olderEntry: DeadlineEntry | undefined;
  newerEntry: DeadlineEntry | undefined;
  queued: boolean;
}

export interface DeadlineClock {
  now(): number;
  setTimer(run: () => void, ms: number): ReturnType<typeof setTimeout>;
  clearTimer(timer: ReturnType<typeof setTimeout>): void;
}

export const realDeadlineClock: DeadlineClock = {
  now: () => performance.now(),
  setTimer: (run, ms) => setTimeout(run, ms),
  clearTimer: (timer) => clearTimeout(timer),
};

export class DeadlineQueue<E extends DeadlineEntry> {
  private oldest: E | undefined;
  private newest: E | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private count = 0;

  constructor(
    readonly timeoutMs: number,
    private readonly onExpired: (entry: E) => void,
    private readonly clock: DeadlineClock = realDeadlineClock,
  ) {}

  get size(): number {
    return this.count;
  }

  /** Queues `entry` with the deadline now + timeoutMs (`nowMs`: the clock's reading, if the caller has it). */
  add(entry: E, nowMs: number = this.clock.now()): void {
    entry.expiresAtMs = nowMs + this.timeoutMs;
    entry.olderEntry = this.newest;
    entry.newerEntry = undefined;
    entry.queued = true;
    if (this.newest === undefined) this.oldest = entry;
    else this.newest.newerEntry = entry;
    this.newest = entry;
    this.count++;
    if (this.timer === undefined) this.arm(entry.expiresAtMs);
  }

  /** Takes `entry` out (it finished); a no-op when it is not queued. */
  remove(entry: E): void {
    if (!entry.queued) return;
    entry.queued = false;
    const older = entry.olderEntry as E | undefined;
    const newer = entry.newerEntry as E | undefined;
    if (older === undefined) this.oldest = newer;
    else older.newerEntry = newer;
    if (newer === undefined) this.newest = older;
    else newer.olderEntry = older;
    entry.olderEntry = undefined;
    entry.newerEntry = undefined;
    this.count--;
    // The armed timer stays: when it fires it re-arms for whatever is oldest then.
    if (this.count === 0) this.stop();
  }

  /** Stops the timer; entries stay queued (and never expire) until removed. */
  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private arm(atMs: number): void {
    this.timer = this.clock.setTimer(this.fire, Math.max(0, Math.ceil(atMs - this.clock.now())));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const nowMs = this.clock.now();
    // Bounded by the entries queued now: each is expired (and removed) at most once.
    for (let entry = this.oldest; entry !== undefined && entry.expiresAtMs <= nowMs; entry = this.oldest) {
      this.remove(entry);
      this.onExpired(entry);
    }
    if (this.oldest !== undefined && this.timer === undefined) this.arm(this.oldest.expiresAtMs);
  };
}

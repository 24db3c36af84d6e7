import { describe, expect, test } from "bun:test";
import { type DeadlineClock, type DeadlineEntry, DeadlineQueue } from "../../src/rpc/deadline-queue.ts";

/** A hand-driven clock: timers run when `advance` passes them. */
class FakeClock implements DeadlineClock {
  nowMs = 0;
  private timers = new Map<number, { atMs: number; run: () => void }>();
  private nextId = 1;
  now(): number {
    return this.nowMs;
  }
  setTimer(run: () => void, ms: number): ReturnType<typeof setTimeout> {
    const id = this.nextId++;
    this.timers.set(id, { atMs: this.nowMs + ms, run });
    return id as unknown as ReturnType<typeof setTimeout>;
  }
  clearTimer(timer: ReturnType<typeof setTimeout>): void {
    this.timers.delete(timer as unknown as number);
  }
  get armed(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const target = this.nowMs + ms;
    // Bounded: each pass runs one due timer; a timer re-armed for later waits for its time.
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.atMs <= target)
        .sort((a, b) => a[1].atMs - b[1].atMs)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.nowMs = Math.max(this.nowMs, due[1].atMs);
      due[1].run();
    }
    this.nowMs = target;
  }
}

function entry(name: string): DeadlineEntry & { name: string } {
  return { name, expiresAtMs: 0, olderEntry: undefined, newerEntry: undefined, queued: false };
}

describe("DeadlineQueue", () => {
  test("expires each entry at its own deadline with one timer, skips removed ones, and disarms when empty", () => {
    const clock = new FakeClock();
    const expired: string[] = [];
    const queue = new DeadlineQueue<DeadlineEntry & { name: string }>(
      100,
      (e) => expired.push(e.name),
      clock,
    );
    const a = entry("a");
    const b = entry("b");
    const c = entry("c");
    queue.add(a);
    clock.advance(30);
    queue.add(b);
    clock.advance(30);
    queue.add(c);
    expect(clock.armed).toBe(1);
    queue.remove(b);
    queue.remove(b); // twice: a no-op
    expect(queue.size).toBe(2);
    clock.advance(39); // t=99
    expect(expired).toEqual([]);
    clock.advance(1); // t=100: a's deadline
    expect(expired).toEqual(["a"]);
    clock.advance(59); // t=159
    expect(expired).toEqual(["a"]);
    clock.advance(1); // t=160: c's deadline (b was removed)
    expect(expired).toEqual(["a", "c"]);
    expect(queue.size).toBe(0);
    expect(clock.armed).toBe(0);
    // Finishing everything before any deadline leaves no timer behind.
    const d = entry("d");
    queue.add(d);
    expect(clock.armed).toBe(1);
    queue.remove(d);
    expect(clock.armed).toBe(0);
    clock.advance(1_000);
    expect(expired).toEqual(["a", "c"]);
  });
});

/**
 * SharedTicks: one timer for many stores' periodic checks (a member with many dstore
 * shards wakes once per interval, not once per shard), driven here by a ManualClock.
 */
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { SharedTicks } from "../../src/store/purge-loop.ts";

describe("SharedTicks", () => {
  test("every registered check runs once per interval on one sleep; a removed one no longer runs", async () => {
    const clock = new ManualClock(0);
    const ticks = new SharedTicks(clock, 100);
    const calls = { a: 0, b: 0 };
    const removeA = ticks.add(() => calls.a++);
    ticks.add(() => calls.b++);
    // One timer for both: a single sleep pending on the clock.
    expect(clock.pendingSleepers).toBe(1);
    await clock.advance(100);
    expect(calls).toEqual({ a: 1, b: 1 });
    await clock.advance(100);
    expect(calls).toEqual({ a: 2, b: 2 });
    removeA();
    await clock.advance(100);
    expect(calls).toEqual({ a: 2, b: 3 });
  });

  test("the timer stops with the last check removed and starts again with the next", async () => {
    const clock = new ManualClock(0);
    const ticks = new SharedTicks(clock, 50);
    let calls = 0;
    const remove = ticks.add(() => calls++);
    expect(ticks.running).toBe(true);
    remove();
    expect(ticks.running).toBe(false);
    await clock.advance(200);
    expect(calls).toBe(0);
    ticks.add(() => calls++);
    await clock.advance(50);
    expect(calls).toBe(1);
  });

  test("removing the last check and adding one before the old sleep ends runs one loop, not two", async () => {
    const clock = new ManualClock(0);
    const ticks = new SharedTicks(clock, 100);
    let calls = 0;
    ticks.add(() => calls++)();
    ticks.add(() => calls++);
    await clock.advance(100);
    await clock.advance(100);
    expect(calls).toBe(2);
  });
});

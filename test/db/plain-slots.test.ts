import { describe, expect, test } from "bun:test";
import { PlainSlots } from "../../src/db/maple/plain-slots.ts";

const value = (n: number): Uint8Array => Uint8Array.of(n & 0xff);

describe("PlainSlots", () => {
  test("keeps each slot's value and revisions apart, across growth", () => {
    const slots = new PlainSlots(2);
    const ids = Array.from({ length: 100 }, (_, i) => slots.add(value(i), i + 1, 2 * i, 3 * i + 2 ** 40));
    ids.forEach((slot, i) => {
      expect(slots.values[slot]).toEqual(value(i));
      expect(slots.revisions[slot * 3]).toBe(i + 1);
      expect(slots.revisions[slot * 3 + 1]).toBe(2 * i);
      expect(slots.revisions[slot * 3 + 2]).toBe(3 * i + 2 ** 40);
    });
    expect(slots.used).toBe(100);
  });

  test("released slots are reused, so deletes and inserts keep the table at the live key count", () => {
    const slots = new PlainSlots();
    let live = Array.from({ length: 1000 }, (_, i) => slots.add(value(i), 1, i, i));
    for (let round = 0; round < 20; round++) {
      for (const slot of live) slots.release(slot);
      live = Array.from({ length: 1000 }, (_, i) => slots.add(value(i), 1, i, i));
    }
    expect(slots.used).toBe(1000);
    expect(new Set(live).size).toBe(1000);
    expect(Math.max(...live)).toBeLessThan(1000);
    // A freed slot drops its value, so the bytes can be collected.
    slots.release(live[0]!);
    expect(slots.values[live[0]!]).toBeUndefined();
  });

  test("a retired slot keeps its contents (a save may read it) until the save ends", () => {
    const slots = new PlainSlots();
    const old = slots.add(value(7), 3, 1, 5);
    slots.retire(old);
    const fresh = slots.add(value(8), 4, 1, 6);
    expect(fresh).not.toBe(old);
    expect(slots.values[old]).toEqual(value(7));
    expect(slots.revisions[old * 3 + 2]).toBe(5);
    slots.releaseRetired();
    expect(slots.add(value(9), 1, 7, 7)).toBe(old);
    expect(slots.used).toBe(2);
  });
});

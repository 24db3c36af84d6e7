import { describe, expect, test } from "bun:test";
import { DeadlineHeap } from "../../src/db/maple/deadline-heap.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { TimedEntry } from "../../src/db/maple/timed-entry.ts";
import { bytes, T0 } from "./helpers.ts";

describe("purgeExpired", () => {
  test("removes exactly the keys at or past their delete deadline", () => {
    const db = new MapleDB();
    db.set("plain", bytes("v"), T0);
    db.setE("expire-only", bytes("v"), 10, 0, T0);
    db.setE("due", bytes("v"), 0, 10, T0);
    db.setE("due-too", bytes("v"), 5, 9, T0);
    db.setE("later", bytes("v"), 0, 11, T0);
    expect(db.purgeExpired(T0 + 10, 100)).toBe(2);
    expect(db.info(T0).keys).toBe(3);
    expect(db.has("expire-only", T0 + 10)).toBe(true);
    expect(db.has("later", T0 + 10)).toBe(true);
    expect(db.purgeExpired(T0 + 10, 100)).toBe(0);
  });

  test("does at most maxEntries of work per call", () => {
    const db = new MapleDB();
    for (let i = 0; i < 1000; i++) db.setE(`k${i}`, bytes("v"), 0, 1 + (i % 7), T0);
    const removedPerCall: number[] = [];
    for (let call = 0; call < 20; call++) removedPerCall.push(db.purgeExpired(T0 + 100, 150));
    expect(removedPerCall.slice(0, 7)).toEqual([150, 150, 150, 150, 150, 150, 100]);
    expect(removedPerCall.slice(7).every((n) => n === 0)).toBe(true);
    expect(db.deadlineIndexSize).toBe(0);
    expect(db.info(T0).keys).toBe(0);
  });

  test("removes the earliest deadlines first", () => {
    const db = new MapleDB();
    for (let i = 100; i > 0; i--) db.setE(`k${i}`, bytes("v"), 0, i, T0);
    expect(db.purgeExpired(T0 + 1000, 10)).toBe(10);
    for (let i = 1; i <= 10; i++) expect(db.has(`k${i}`, T0)).toBe(false);
    expect(db.has("k11", T0)).toBe(true);
  });

  test("maxEntries 0 removes nothing", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 1, T0);
    expect(db.purgeExpired(T0 + 5, 0)).toBe(0);
    expect(db.deadlineIndexSize).toBe(1);
  });

  test("a key overwritten by set after setE is not purged at the old deadline", () => {
    const db = new MapleDB();
    db.setE("k", bytes("old"), 0, 10, T0);
    db.set("k", bytes("new"), T0 + 1);
    expect(db.deadlineIndexSize).toBe(0);
    expect(db.purgeExpired(T0 + 10, 100)).toBe(0);
    expect(db.has("k", T0 + 10)).toBe(true);
  });

  test("a key renewed to a later deadline is purged only at the new one", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 10, T0);
    db.setE("k", bytes("v"), 0, 100, T0);
    expect(db.purgeExpired(T0 + 10, 100)).toBe(0);
    expect(db.has("k", T0 + 10)).toBe(true);
    expect(db.purgeExpired(T0 + 100, 100)).toBe(1);
  });

  test("deleted and re-created keys leave no stale index entries", () => {
    const db = new MapleDB();
    for (let round = 0; round < 1000; round++) {
      db.setE("lock", bytes(`owner-${round}`), 0, 10 + round, T0 + round);
      if (round % 2 === 0) db.delete("lock", T0 + round);
    }
    expect(db.deadlineIndexSize).toBe(1);
    expect(db.purgeExpired(T0 + 100_000, 100)).toBe(1);
  });

  test("a key revived by setEIfUnset after its delete deadline keeps only the new deadline", () => {
    const db = new MapleDB();
    db.setE("k", bytes("old"), 0, 10, T0);
    expect(db.setEIfUnset("k", bytes("new"), 0, 50, T0 + 10)).toBe(true);
    expect(db.purgeExpired(T0 + 59, 100)).toBe(0);
    expect(db.purgeExpired(T0 + 60, 100)).toBe(1);
  });

  test("get and has hide due keys whether or not purge has run", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 10, T0);
    expect(db.get("k", T0 + 10)).toBeUndefined();
    expect(db.has("k", T0 + 10)).toBe(false);
    db.purgeExpired(T0 + 10, 1);
    expect(db.has("k", T0 + 10)).toBe(false);
  });
});

describe("DeadlineHeap", () => {
  function heapOrder(heap: DeadlineHeap): number[] {
    const out: number[] = [];
    for (let guard = 0; guard < 100_000 && heap.size > 0; guard++) {
      const top = heap.peek()!;
      out.push(top.deleteAtMs);
      heap.remove(top);
    }
    return out;
  }

  test("pops in deadline order after pushes, updates, replaces and removes", () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      return seed % n;
    };
    const heap = new DeadlineHeap();
    const live: TimedEntry[] = [];
    for (let step = 0; step < 5000; step++) {
      const op = random(4);
      if (op <= 1 || live.length === 0) {
        const entry = new TimedEntry(
          `k${step}`,
          new Uint8Array(0),
          Number.POSITIVE_INFINITY,
          random(1000),
          1,
          0,
          0,
        );
        heap.push(entry);
        live.push(entry);
      } else if (op === 2) {
        const entry = live[random(live.length)]!;
        entry.deleteAtMs = random(1000);
        heap.update(entry);
      } else {
        const index = random(live.length);
        const entry = live[index]!;
        if (random(2) === 0) {
          heap.remove(entry);
          live.splice(index, 1);
        } else {
          const next = new TimedEntry(entry.key, entry.value, entry.expireAtMs, random(1000), 1, 0, 0);
          heap.replace(entry, next);
          live[index] = next;
          expect(entry.heapIndex).toBe(-1);
        }
      }
    }
    expect(heap.size).toBe(live.length);
    const expected = live.map((entry) => entry.deleteAtMs).sort((a, b) => a - b);
    expect(heapOrder(heap)).toEqual(expected);
  });

  test("countDue counts exactly the entries at or before now", () => {
    const heap = new DeadlineHeap();
    for (let i = 0; i < 1000; i++)
      heap.push(new TimedEntry(`k${i}`, new Uint8Array(0), 0, (i * 7919) % 1000, 1, 0, 0));
    expect(heap.countDue(-1)).toBe(0);
    expect(heap.countDue(0)).toBe(1);
    expect(heap.countDue(499)).toBe(500);
    expect(heap.countDue(10_000)).toBe(1000);
  });
});

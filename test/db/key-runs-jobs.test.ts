/**
 * KeyRuns' sliced jobs and dead marks (review of lsm28, revidx28 D1-D3): removals mark the
 * live entry dead (no tombstones); merges and rewrites run in bounded steps while their
 * sources serve reads; a removal of an entry a job already copied is marked in the copy;
 * the runs stay about log2(n / 1024) + a few; no call does work that grows with the index.
 * Checked against a sorted array over many seeds; work is counted, not timed.
 */
import { describe, expect, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { RunConverter } from "../../src/db/maple/run-converter.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { bytes, fromChunks, modelPage, saveChunks, scanPage, T0 } from "./helpers.ts";

const key = (i: number) => `k/${String(i).padStart(6, "0")}`;

describe("KeyRuns: jobs in steps, dead marks", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    test(`removals, re-adds and scans while merges are half done agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new KeyRuns();
      const present = new Set<string>();
      const POOL = 6000;
      let midJob = 0;
      for (let round = 0; round < 400; round++) {
        // Small budgets: jobs stay half done across many batches.
        const budget = Math.floor(next() * 300);
        const adds: string[] = [];
        const removes: string[] = [];
        const n = 1 + Math.floor(next() * (next() < 0.1 ? 1500 : 120));
        const seen = new Set<string>();
        const removing = next() < 0.45;
        for (let t = 0; t < n; t++) {
          const k = key(Math.floor(next() * POOL));
          if (seen.has(k)) continue;
          seen.add(k);
          if (present.has(k)) {
            if (removing) removes.push(k);
          } else if (!removing || next() < 0.3) adds.push(k);
        }
        if (index.pending) midJob++;
        const moved = index.insertBatch(adds, 0, adds.length, budget);
        for (const k of adds) present.add(k);
        // Within the budget, save the RUNS_MAX fallback (never reached here).
        expect(moved).toBeLessThanOrEqual(Math.max(budget, 1) + 1);
        index.removeBatch(removes, 0, removes.length, budget);
        for (const k of removes) present.delete(k);
        if (next() < 0.2) index.advance(Math.floor(next() * 2000));
        const sorted = [...present].sort(compareKeys);
        expect(index.size).toBe(present.size);
        for (let probe = 0; probe < 8; probe++) {
          const from = key(Math.floor(next() * POOL));
          const exclusive = next() < 0.5;
          const max = Math.floor(next() * 40);
          expect(scanPage(index, from, exclusive, max)).toEqual(modelPage(sorted, from, exclusive, max));
          expect(index.has(from)).toBe(present.has(from));
        }
        for (const k of removes.slice(0, 5)) expect(index.has(k)).toBe(false);
      }
      // Every job done: what the copies hold is what the sources said.
      while (index.pending) index.advance(1000);
      expect(index.keys()).toEqual([...present].sort(compareKeys));
      expect(index.size).toBe(present.size);
      expect(midJob).toBeGreaterThan(100);
    });
  }

  test("a key removed after a merge copied it stays removed once the merge is swapped in; re-added, it is live once", () => {
    const index = KeyRuns.fromSorted(Array.from({ length: 4096 }, (_, i) => key(2 * i)));
    const odd = Array.from({ length: 4096 }, (_, i) => key(2 * i + 1));
    // Four runs of 1024 odd keys: they merge in pairs, then with the 4096 even keys.
    for (let at = 0; at < odd.length; at += 1024) index.insertBatch(odd, at, at + 1024, 0);
    while (index.pending && index.runCount > 2) index.advance(64);
    expect(index.pending).toBe(true);
    // Half of the last merge (4096 + 4096) done: keys before about key(4096) are copied.
    index.advance(4096);
    expect(index.pending).toBe(true);
    const gone = [key(10), key(11), key(4000), key(8000), key(8191)];
    index.removeBatch(gone, 0, gone.length, 0);
    index.insertBatch([key(11)], 0, 1, 0);
    // A continuation across the swap: the first page before it, the rest after.
    const first = scanPage(index, "", false, 6);
    while (index.pending) index.advance(100);
    const rest = scanPage(index, first[first.length - 1]!, true, 100_000);
    const all = Array.from({ length: 8192 }, (_, i) => key(i)).filter(
      (k) => k === key(11) || !gone.includes(k),
    );
    expect([...first, ...rest]).toEqual(all);
    expect(index.size).toBe(all.length);
    for (const k of gone) expect(index.has(k)).toBe(k === key(11));
  });

  test("the runs stay about log2(n / 1024) + a few while 512k keys come in fold-sized batches", () => {
    const index = new KeyRuns();
    const N = 512 * 1024;
    const keys = Array.from({ length: N }, (_, i) => `u/${(i * 2654435761) % 4294967296}/${i}`);
    let most = 0;
    let mostMovedPerCost = 0;
    for (let at = 0; at < N; at += 1024) {
      const moved = index.insertBatch(keys, at, at + 1024);
      most = Math.max(most, index.runCount);
      // What the batch costs as job entries: one a key, one more per 64 bytes (ASCII keys).
      let bytes = 0;
      for (let i = at; i < at + 1024; i++) bytes += keys[i]!.length;
      mostMovedPerCost = Math.max(mostMovedPerCost, moved / (1024 + Math.floor(bytes / 64)));
    }
    // log2(512) = 9: a binary counter holds at most 10 runs; jobs hold two sources each.
    expect(most).toBeLessThanOrEqual(Math.log2(N / 1024) + 6);
    // A call moves at most its pace (2 a level per unit of the batch's cost), not a whole level's merge.
    expect(mostMovedPerCost).toBeLessThanOrEqual(2 * (Math.log2(N / 1024) + 2));
    expect(index.size).toBe(N);
  });

  test("long keys: a batch's default budget counts their bytes as the jobs do, so the runs stay as few (revidx29 R5)", () => {
    // 3 KB keys: a merge step of them costs ~48 units an entry; a budget of entries per key
    // (the pace times the keys) left the merges behind and the runs climbed to RUNS_MAX.
    const index = new KeyRuns();
    const N = 48 * 1024;
    const pad = "x".repeat(3000);
    const key = (i: number) =>
      `k/${((i * 2654435761) % 4294967296).toString(16).padStart(8, "0")}/${pad}/${i}`;
    let most = 0;
    for (let at = 0; at < N; at += 3072) {
      const batch = Array.from({ length: 3072 }, (_, i) => key(at + i));
      index.insertBatch(batch, 0, batch.length);
      most = Math.max(most, index.runCount);
    }
    expect(most).toBeLessThanOrEqual(Math.ceil(Math.log2(N / 1024)) + 6);
    expect(index.size).toBe(N);
    const removed = Array.from({ length: 3072 }, (_, i) => key(i));
    index.removeBatch(removed, 0, removed.length);
    expect(index.size).toBe(N - 3072);
    expect(index.has(key(0))).toBe(false);
    expect(index.has(key(3072))).toBe(true);
  });

  test("a page after half the keys were removed (a stretch and every other key) reads O(page) entries", () => {
    const N = 200_000;
    const keys = Array.from({ length: N }, (_, i) => key(i));
    const index = KeyRuns.fromSorted(keys);
    // The first half gone, no budget for rewrites: the dead marks alone must do.
    const gone = keys.slice(0, N / 2);
    for (let at = 0; at < gone.length; at += 1024)
      index.removeBatch(gone, at, Math.min(gone.length, at + 1024), 0);
    let before = index.work;
    expect(scanPage(index, "", false, 100)).toEqual(keys.slice(N / 2, N / 2 + 100));
    // 100 keys, a seek, and the dead stretch a group (4096) or a block (64) at a time.
    expect(index.work - before).toBeLessThanOrEqual(100 + 1 + N / 2 / 4096 + 64 + 64);
    // The rewrite (a quarter dead) runs in steps; then the dead entries are gone.
    expect(index.pending).toBe(true);
    let steps = 0;
    while (index.pending) {
      expect(index.advance(5000)).toBeLessThanOrEqual(5000);
      steps++;
    }
    expect(steps).toBeGreaterThan(N / 5000 / 2);
    before = index.work;
    expect(scanPage(index, "", false, 100)).toEqual(keys.slice(N / 2, N / 2 + 100));
    expect(index.work - before).toBeLessThanOrEqual(100 + 1);
    expect(index.size).toBe(N / 2);
    expect(index.runCount).toBe(1);
  });

  test("a run whose every key is removed is dropped", () => {
    const index = KeyRuns.fromSorted(["a", "b", "c"]);
    index.insertBatch(["d"], 0, 1, 0);
    index.removeBatch(["a", "b", "c"], 0, 3, 0);
    while (index.pending) index.advance(10);
    expect(index.runCount).toBe(1);
    expect(index.keys()).toEqual(["d"]);
  });

  test("RunConverter counts, then writes, a built index in steps of its budget", () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => key(i));
    const converter = new RunConverter(OrderedKeys.fromSorted(keys));
    let steps = 0;
    while (!converter.done) {
      expect(converter.step(700)).toBeLessThanOrEqual(700);
      steps++;
    }
    expect(steps).toBe(2 * Math.ceil(10_000 / 700));
    expect(converter.result().keys()).toEqual(keys);
  });
});

describe("DeferredOrder over sliced merges", () => {
  for (const seed of [11, 12, 13]) {
    test(`writes, scans, drops and closes in the middle of merges (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const present = new Set<string>();
      const queue: (() => void)[] = [];
      const make = () =>
        new DeferredOrder(
          (k) => present.has(k),
          () => [present.keys()],
          new KeyRuns(),
          { keyCount: () => present.size, sliceUnits: 512, schedule: (run) => queue.push(run) },
        );
      let order = make();
      const SLICE = 512;
      for (let step = 0; step < 30_000; step++) {
        const roll = next();
        const k = key(Math.floor(next() * 20_000));
        if (roll < 0.55) {
          if (!present.has(k)) {
            present.add(k);
            order.added(k);
          }
        } else if (roll < 0.85) {
          if (present.delete(k)) order.removed(k);
        } else if (roll < 0.97) {
          const n = 1 + Math.floor(next() * 4);
          for (let s = 0; s < n && queue.length > 0; s++) queue.shift()!();
        } else if (roll < 0.995) {
          const sorted = [...present].sort(compareKeys);
          const from = key(Math.floor(next() * 20_000));
          const got: string[] = [];
          order.scan(from, false, (key) => {
            got.push(key);
            return got.length < 50;
          });
          expect(got).toEqual(modelPage(sorted, from, false, 50));
        } else if (next() < 0.5) {
          // The database is replaced or dropped mid-merge: the old order's slices find it closed.
          order = order.dropped();
        } else {
          order.close();
          while (queue.length > 0) queue.shift()!();
          order = make();
          for (const k of present) order.added(k);
        }
      }
      while (queue.length > 0) queue.shift()!();
      expect(order.keys()).toEqual([...present].sort(compareKeys));
      expect(order.stats.maxSliceUnits).toBeLessThanOrEqual(SLICE);
    });
  }

  test("a slice's units count what the merges did: none passes the budget, and merges show in them", () => {
    const scheduler = new ManualScheduler();
    const db = new RecordDB({ order: { schedule: scheduler.schedule } });
    const value = bytes("v");
    db.list({ prefix: "", limit: 1 }, T0);
    for (let i = 0; i < 300_000; i++) {
      db.set(`user/${(i * 2654435761) % 4294967296}/${i}`, value, T0);
      if (i % 50 === 49) scheduler.runOne();
    }
    scheduler.drain();
    expect(db.orderStats.maxSliceUnits).toBeLessThanOrEqual(4096);
    // Background slices with no notes left to fold did merges only.
    expect(db.orderStats.slices).toBeGreaterThan(300_000 / 1024);
    expect(db.list({ prefix: "user/", limit: 3 }, T0).items.length).toBe(3);
  });
});

describe("RecordDB: a snapshot load while merges are under way", () => {
  test("saved and loaded mid-merge (into a fresh store and over the same one): lists agree with the keys", async () => {
    const scheduler = new ManualScheduler();
    const db = new RecordDB({ order: { schedule: scheduler.schedule } });
    const value = bytes("v");
    const keys: string[] = [];
    db.list({ prefix: "", limit: 1 }, T0);
    for (let i = 0; i < 40_000; i++) {
      const k = `t/${(i * 7919) % 100_003}`;
      db.set(k, value, T0);
      keys.push(k);
      if (i % 100 === 99) scheduler.runOne();
    }
    for (let i = 0; i < 10_000; i++) db.delete(keys[i * 3]!, T0);
    // Some slices: merges and the fold of the deletes are half done.
    for (let s = 0; s < 2; s++) scheduler.runOne();
    expect(scheduler.pending).toBeGreaterThan(0);
    const chunks = await saveChunks(db, T0);
    const live = keys.filter((_, i) => !(i % 3 === 0 && i / 3 < 10_000)).sort(compareKeys);
    const fresh = new RecordDB();
    await fresh.load(fromChunks(chunks));
    expect(fresh.list({ prefix: "t/" }, T0).items.map((item) => item.key)).toEqual(live);
    // Loaded over itself while its old order still has slices queued.
    await db.load(fromChunks(chunks));
    scheduler.drain();
    db.set("t/new", value, T0);
    expect(db.list({ prefix: "t/" }, T0).items.map((item) => item.key)).toEqual(
      [...live, "t/new"].sort(compareKeys),
    );
  });
});

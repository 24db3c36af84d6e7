/**
 * lsm30: KeyRuns gathers new keys into runs of 4096 (`insertBatch(..., gather)`), sorted
 * before any read or removal; DeferredOrder folds notes short of a slice's worth only
 * once the writes pause for PAUSE_MS (not at the next turn), and converts a given
 * OrderedKeys in slices unless it is a slice's worth. Checked against a sorted array.
 */
import { describe, expect, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { modelPage, scanPage } from "./helpers.ts";

const key = (i: number) => `g/${String((i * 7919) % 1_000_003).padStart(7, "0")}`;

describe("KeyRuns: gathered keys", () => {
  test("gathered keys form no run until 4096 come or a read needs them; reads, removals and re-adds see them", () => {
    const index = new KeyRuns();
    const first = Array.from({ length: 1000 }, (_, i) => key(i));
    index.insertBatch(first, 0, first.length, 0, true);
    expect(index.runCount).toBe(0);
    expect(index.size).toBe(1000);
    // A read sorts them into a run first.
    expect(index.has(first[7]!)).toBe(true);
    expect(index.runCount).toBe(1);
    // 5000 more, gathered: one run of 4096 now, 904 still gathered.
    const more = Array.from({ length: 5000 }, (_, i) => key(1000 + i));
    index.insertBatch(more, 0, more.length, 0, true);
    expect(index.runCount).toBe(2);
    // A removal of a gathered key, then its re-add (gathered again), then a scan.
    const gone = [more[4999]!, more[10]!];
    index.removeBatch(gone, 0, gone.length, 0);
    expect(index.runCount).toBe(3);
    expect(index.has(more[4999]!)).toBe(false);
    index.insertBatch([more[4999]!], 0, 1, 0, true);
    const all = [...first, ...more].filter((k) => k !== more[10]).sort(compareKeys);
    expect(index.keys()).toEqual(all);
    expect(index.size).toBe(all.length);
  });

  for (const seed of [1, 2, 3, 4]) {
    test(`gathered and sorted batches, removals and scans agree with a sorted array; sorts of earlier keys are charged to the budget (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new KeyRuns();
      const present = new Set<string>();
      // Keys gathered (unsorted) before a call, and their bytes (ASCII: their lengths).
      let gathered = 0;
      let gatheredBytes = 0;
      for (let round = 0; round < 300; round++) {
        const budget = Math.floor(next() * 3000);
        const adds: string[] = [];
        const n = 1 + Math.floor(next() * (next() < 0.1 ? 5000 : 700));
        for (let t = 0; t < n; t++) {
          const k = key(Math.floor(next() * 40_000));
          if (!present.has(k) && !adds.includes(k)) adds.push(k);
        }
        const gather = next() < 0.7;
        const moved = index.insertBatch(adds, 0, adds.length, budget, gather);
        for (const k of adds) present.add(k);
        // Sorting keys gathered by earlier calls costs 2 an entry (one, and one per 64 bytes); the jobs stay within the budget.
        expect(moved).toBeLessThanOrEqual(
          Math.max(budget, 2 * (gathered + Math.floor(gatheredBytes / 64))) + 1,
        );
        for (const k of adds) {
          gathered = gather ? gathered + 1 : 0;
          gatheredBytes = gather ? gatheredBytes + k.length : 0;
          if (gathered === 4096) gathered = gatheredBytes = 0;
        }
        if (!gather) gathered = gatheredBytes = 0;
        const r = next();
        if (r < 0.3) {
          const removes = [...present].filter(() => next() < 0.05);
          index.removeBatch(removes, 0, removes.length, budget);
          for (const k of removes) present.delete(k);
          gathered = gatheredBytes = 0;
        } else if (r < 0.5) {
          const sorted = [...present].sort(compareKeys);
          const from = key(Math.floor(next() * 40_000));
          expect(scanPage(index, from, false, 50)).toEqual(modelPage(sorted, from, false, 50));
          gathered = gatheredBytes = 0;
        }
        expect(index.size).toBe(present.size);
        if (next() < 0.2) index.advance(Math.floor(next() * 5000));
      }
      expect(index.keys()).toEqual([...present].sort(compareKeys));
    });
  }
});

describe("DeferredOrder: background folds wait for a pause in the writes", () => {
  function order(keys: string[] = [], options = {}): { order: DeferredOrder; present: Set<string> } {
    const present = new Set<string>(keys);
    const made = new DeferredOrder(
      (k) => present.has(k),
      () => [present.values()],
      OrderedKeys.fromSorted([...keys].sort(compareKeys)),
      options,
    );
    return { order: made, present };
  }

  test("writes every turn fold nothing short of a slice's worth; once they pause, all is folded", async () => {
    const { order: o, present } = order();
    let i = 0;
    for (let turn = 0; turn < 10; turn++) {
      for (let w = 0; w < 20; w++, i++) {
        present.add(key(i));
        o.added(key(i));
      }
      // A turn with no write between (as a server's between reads of its sockets).
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
    }
    // (Folding once a turn brought no note folded 20 at a time.)
    expect(o.stats.folded).toBe(0);
    expect(o.unsettled).toBe(200);
    for (let wait = 0; wait < 100 && o.unsettled > 0; wait++) await Bun.sleep(2);
    expect(o.unsettled).toBe(0);
    expect(o.stats.folded).toBe(200);
    expect(o.keys()).toEqual([...present].sort(compareKeys));
  });

  test("an OrderedKeys past a slice's worth (its keys counted, then written) is converted in slices, writes noted meanwhile; a smaller one at once", async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => key(i));
    const { order: small } = order(keys.slice(0, 200), { sliceUnits: 512 });
    expect(small.built).toBe(true);
    const { order: big, present } = order(keys, { sliceUnits: 512 });
    expect(big.built).toBe(false);
    expect(big.building).toBe(true);
    present.add("g/new");
    big.added("g/new");
    present.delete(keys[5]!);
    big.removed(keys[5]!);
    for (let turn = 0; turn < 100 && !big.built; turn++)
      await new Promise((resolve) => setImmediate(resolve));
    expect(big.built).toBe(true);
    expect(big.stats.maxSliceUnits).toBeLessThanOrEqual(512);
    expect(big.keys()).toEqual([...present].sort(compareKeys));
  });
});

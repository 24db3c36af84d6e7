/**
 * Review of order31, task 2 (merge buffers reused, notes encoded when noted): a scan of
 * KeyRuns reads the runs it found when it began ("Read before visit: a visitor may write
 * (and fold) before the next key", KeyRuns.scan), so a visitor may add and remove keys,
 * move merges on until they finish, and scan again, in the middle of the outer scan. If a
 * finished job's source run, a sorted batch or a note buffer gives its bytes to later
 * work (a pool, a reused output array), the outer scan reads bytes overwritten under it.
 *
 * What the outer scan must do whatever its visitor did: visit keys in strictly ascending
 * byte order, each one present at some moment of the scan, and every key present
 * throughout the scan (from `from` on) — and the index must match the model afterwards.
 * Short and 32 KB keys; merges finished inside visits (large `advance` budgets, and bound
 * folds of DeferredOrder reached from inside a visit).
 *
 * Passes on main (runs are never reused: their bytes stay as they were while referenced).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { scanned } from "../support/sorted-keys.ts";
import { brief, expectedWalk, longKeys, shortKeys, sortedPool } from "./keys.ts";

setDefaultTimeout(120_000);

interface Outer {
  visited: string[];
  everPresent: Set<string>;
  throughout: Set<string>;
}

/** Checks what an outer scan visited (see the file comment). */
function checkOuter(outer: Outer, from: string, exclusive: boolean, stopped: boolean, label: string): void {
  const { visited, everPresent, throughout } = outer;
  // A scan the visitor stopped covers the keys up to its last one.
  const last = stopped ? visited[visited.length - 1] : undefined;
  for (let i = 1; i < visited.length; i++)
    if (compareKeys(visited[i - 1]!, visited[i]!) >= 0)
      throw new Error(
        `${label}: out of order at ${i}: ${JSON.stringify(brief(visited.slice(i - 1, i + 1)))}`,
      );
  const seen = new Set(visited);
  for (const key of visited)
    if (!everPresent.has(key)) throw new Error(`${label}: visited a key never present: ${brief([key])}`);
  for (const key of throughout) {
    const c = compareKeys(key, from);
    if (c < 0 || (exclusive && c === 0)) continue;
    if (last !== undefined && compareKeys(key, last) > 0) continue;
    if (!seen.has(key)) throw new Error(`${label}: missed a key present throughout: ${brief([key])}`);
  }
}

for (const seed of [1, 2, 3]) {
  test(`KeyRuns: a scan whose visitor adds, removes, finishes merges and scans again reads what it began with (seed ${seed})`, () => {
    const next = seededRandom(31_200 + seed);
    const pool = sortedPool([...shortKeys(20_000, next), ...longKeys(60)]);
    const present = new Uint8Array(pool.length);
    const index = new KeyRuns();
    const take = (n: number, want: number): string[] => {
      const out: string[] = [];
      const seen = new Set<number>();
      for (let t = 0; t < n * 4 && out.length < n; t++) {
        const k = Math.floor(next() * pool.length);
        if (present[k] !== want || seen.has(k)) continue;
        seen.add(k);
        out.push(pool[k]!);
      }
      return out;
    };
    const rank = new Map<string, number>();
    for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
    const add = (keys: string[], budget?: number): void => {
      index.insertBatch(keys, 0, keys.length, budget);
      for (const key of keys) present[rank.get(key)!] = 1;
    };
    const remove = (keys: string[], budget?: number): void => {
      index.removeBatch(keys, 0, keys.length, budget);
      for (const key of keys) present[rank.get(key)!] = 0;
    };
    // Runs of several levels, jobs under way.
    for (let b = 0; b < 12; b++) add(take(1500, 0), 50);
    let finishedInside = 0;
    for (let round = 0; round < 6; round++) {
      const from = pool[Math.floor(next() * pool.length)]!;
      const exclusive = next() < 0.5;
      const everPresent = new Set<string>();
      const throughout = new Set<string>();
      for (let k = 0; k < pool.length; k++)
        if (present[k] === 1) {
          everPresent.add(pool[k]!);
          throughout.add(pool[k]!);
        }
      const visited: string[] = [];
      const every = 20 + Math.floor(next() * 200);
      index.scan(from, exclusive, (key) => {
        visited.push(key);
        if (visited.length % every === 0) {
          const adds = take(200 + Math.floor(next() * 2000), 0);
          const removes = take(100 + Math.floor(next() * 600), 1);
          add(adds, Math.floor(next() * 500));
          for (const k of adds) everPresent.add(k);
          remove(removes, Math.floor(next() * 500));
          for (const k of removes) throughout.delete(k);
          const runsBefore = index.runCount;
          if (next() < 0.6) index.advance(1e9);
          if (index.runCount < runsBefore) finishedInside++;
          // A nested scan: exact now.
          const nestedFrom = pool[Math.floor(next() * pool.length)]!;
          const got = scanned(index, nestedFrom, false, 30);
          const want = expectedWalk(pool, present, nestedFrom, false, 30);
          expect(brief(got)).toEqual(brief(want));
          expect(got).toEqual(want);
        }
        return visited.length < 6000;
      });
      checkOuter(
        { visited, everPresent, throughout },
        from,
        exclusive,
        visited.length >= 6000,
        `seed ${seed} round ${round}`,
      );
      const all = expectedWalk(pool, present, "", false, pool.length);
      expect(index.size).toBe(all.length);
      expect(index.keys()).toEqual(all);
    }
    expect(finishedInside).toBeGreaterThan(3);
  });
}

for (const stringIndex of [false]) {
  test(`DeferredOrder (${stringIndex ? "strings" : "runs"}): a scan whose visitor writes past the notes' bound (a fold in one piece inside the visit) reads what it began with`, () => {
    const next = seededRandom(31_300);
    const pool = sortedPool([...shortKeys(30_000, next), ...longKeys(40)]);
    const present = new Uint8Array(pool.length);
    const rank = new Map<string, number>();
    for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
    const live = new Set<string>();
    const queue: (() => void)[] = [];
    const order = new DeferredOrder(
      (key) => live.has(key),
      () => [live.keys()],
      new OrderedKeys(),
      { keyCount: () => live.size, schedule: (run) => queue.push(run), stringIndex },
    );
    const flip = (k: number): void => {
      const key = pool[k]!;
      if (present[k] === 1) {
        present[k] = 0;
        live.delete(key);
        order.removed(key);
      } else {
        present[k] = 1;
        live.add(key);
        order.added(key);
      }
    };
    for (let i = 0; i < 3000; i++) flip(Math.floor(next() * pool.length));
    for (let s = 0; s < 100_000 && queue.length > 0; s++) queue.shift()!();
    let boundFolds = 0;
    for (let round = 0; round < 8; round++) {
      const from = pool[Math.floor(next() * pool.length)]!;
      const everPresent = new Set<string>();
      const throughout = new Set<string>();
      for (let k = 0; k < pool.length; k++)
        if (present[k] === 1) {
          everPresent.add(pool[k]!);
          throughout.add(pool[k]!);
        }
      const visited: string[] = [];
      const before = order.stats.boundFolds;
      order.scan(from, false, (key) => {
        visited.push(key);
        if (visited.length % 97 === 0) {
          // Past NOTES_MIN + twice the keys: folded in one piece here, merges paid.
          const n = 2000 + Math.floor(next() * 8000);
          for (let i = 0; i < n; i++) {
            const k = Math.floor(next() * pool.length);
            if (present[k] === 1) throughout.delete(pool[k]!);
            flip(k);
            if (present[k] === 1) everPresent.add(pool[k]!);
          }
          // And a slice or two, as if the event loop ran (a visitor that awaited).
          for (let s = 0; s < 2 && queue.length > 0; s++) queue.shift()!();
        }
        return visited.length < 2000;
      });
      boundFolds += order.stats.boundFolds - before;
      checkOuter({ visited, everPresent, throughout }, from, false, visited.length >= 2000, `round ${round}`);
      const all = expectedWalk(pool, present, "", false, pool.length);
      expect(order.keys()).toEqual(all);
    }
    expect(boundFolds).toBeGreaterThan(3);
  });
}

import { describe, expect, test } from "bun:test";
import { BLOCK_KEYS_MAX, CodedRun } from "../../src/db/maple/coded-run.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { expected, lowerBound, scanned } from "../support/sorted-keys.ts";

/**
 * Runs that allow outliers (the index's first keys, see CodedRun "Outliers"): a few keys
 * outside the prefix most keys share, at either end, must neither break the order nor
 * shorten the prefix the codes start after.
 */

/** Most keys share `user/<n>/`; a few lie before ("a", "probe") or after ("zz", "user0"). */
function keyOf(next: () => number, outlierShare: number): string {
  const roll = next();
  if (roll < outlierShare / 2)
    return (
      ["a", "probe", "user", "user/", "user/0"][Math.floor(next() * 5)]! + next().toString(36).slice(2, 4)
    );
  if (roll < outlierShare)
    return (
      ["zz", "user0", "user/1", "\u00e9", "😀"][Math.floor(next() * 5)]! + next().toString(36).slice(2, 4)
    );
  return `user/0/${Math.floor(next() * 1e6)}`;
}

describe("CodedRun with outliers", () => {
  for (const [seed, share] of [
    [1, 0.002],
    [2, 0.05],
    [3, 0.3],
    [4, 0.9],
  ] as const) {
    test(`lowerBound matches a sorted array through inserts and removes (seed ${seed}, outliers ${share})`, () => {
      const next = seededRandom(seed);
      let sorted: string[] = [];
      const run = new CodedRun([], true);
      for (let step = 0; step < 3000; step++) {
        if (next() < 0.75 || sorted.length === 0) {
          const key = keyOf(next, share);
          const at = lowerBound(sorted, key);
          if (sorted[at] === key) continue;
          sorted.splice(at, 0, key);
          if (next() < 0.5) run.insertAt(at, key);
          else {
            run.insertAt(at, sorted[at + 1] ?? key);
            run.replaceAt(at, key);
            if (at + 1 < sorted.length) {
              run.removeAt(at + 1);
              run.insertAt(at + 1, sorted[at + 1]!);
            }
          }
        } else {
          const at = Math.floor(next() * sorted.length);
          sorted.splice(at, 1);
          run.removeAt(at);
        }
        if (step % 7 === 0) {
          sorted = [...sorted];
          expect(run.keys).toEqual(sorted);
          for (let probes = 0; probes < 5; probes++) {
            const probe =
              next() < 0.5 ? keyOf(next, share) : (sorted[Math.floor(next() * sorted.length)] ?? "");
            expect(run.lowerBound(probe, false)).toBe(lowerBound(sorted, probe));
            const above = lowerBound(sorted, probe) + (sorted[lowerBound(sorted, probe)] === probe ? 1 : 0);
            expect(run.lowerBound(probe, false, true)).toBe(above);
          }
        }
      }
    });
  }

  test("a lone key before the rest leaves the others' prefix (and codes) as their own", () => {
    const keys = ["probe", ...Array.from({ length: 64 }, (_, i) => `user/0/${1000 + i * 150}`)];
    const run = new CodedRun(keys, true);
    expect(run.prefix).toBe("user/0/".length);
    expect(run.sharesPrefixAt(0)).toBe(false);
    expect(run.sharesPrefixAt(1)).toBe(true);
    const strict = new CodedRun([...keys]);
    expect(strict.prefix).toBe(0);
  });
});

describe("OrderedKeys with keys outside the common prefix", () => {
  test("a key routed to a block whose first key is an outlier gets no code at the first keys' prefix", () => {
    // Block 0 holds only "probe…" keys (fromSorted fills BUILD_BLOCK_FILL = 192 a block);
    // the first keys' prefix is the user keys' "user/0/5". "user/0/5" shares it, sorts
    // before every user key and so goes to block 0, whose own prefix ("probe") it lacks.
    const probes = Array.from({ length: 192 }, (_, i) => `probe${String(i).padStart(3, "0")}`);
    const users = Array.from({ length: 10_000 }, (_, i) => `user/0/${50_000 + i}`);
    for (const batch of [false, true]) {
      const index = OrderedKeys.fromSorted([...probes, ...users]);
      if (batch) index.insertBatch(["user/0/5"], 0, 1);
      else index.insert("user/0/5");
      expect(index.keys()).toEqual([...probes, "user/0/5", ...users]);
    }
  });

  for (const [seed, share] of [
    [11, 0.001],
    [12, 0.02],
    [13, 0.5],
  ] as const) {
    test(`batches, removes and scans agree with a sorted array (seed ${seed}, outliers ${share})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      index.insert("probe");
      const present = new Set<string>(["probe"]);
      let sorted = ["probe"];
      for (let round = 0; round < 60; round++) {
        const batch: string[] = [];
        const size = 1 + Math.floor(next() * 3 * BLOCK_KEYS_MAX);
        for (let i = 0; i < size; i++) {
          const key = keyOf(next, share);
          if (present.has(key)) continue;
          present.add(key);
          batch.push(key);
        }
        index.insertBatch(batch, 0, batch.length);
        sorted = [...sorted, ...batch].sort(compareKeys);
        for (let i = 0; i < 20 && sorted.length > 0; i++) {
          const key = sorted[Math.floor(next() * sorted.length)]!;
          expect(index.remove(key)).toBe(true);
          present.delete(key);
          sorted.splice(lowerBound(sorted, key), 1);
        }
        const from = keyOf(next, 0.5);
        expect(scanned(index, from, false, 30)).toEqual(expected(sorted, from, false, 30));
        expect(index.has(sorted[Math.floor(next() * sorted.length)]!)).toBe(true);
      }
      expect(index.size).toBe(sorted.length);
      expect(index.keys()).toEqual(sorted);
    });
  }
});

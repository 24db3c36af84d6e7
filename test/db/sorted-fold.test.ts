import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChunkOrder } from "../../src/db/maple/chunk-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { expected, lowerBound, scanned } from "../support/sorted-keys.ts";

/**
 * The sorted fold (OrderedKeys.insertBatch): a chunk of new keys is ordered by a coarse
 * code at the first keys' prefix (ChunkOrder, a radix sort) and routed by walking the
 * first keys' codes. Against models: ChunkOrder against a stable sort; insertBatch
 * against a sorted array, with chunks larger than one sort (SORT_CHUNK), keys whose
 * coarse codes tie (long shared prefixes past the first keys' prefix: the walk's
 * fallback to a binary search), keys tying a first key's code, keys outside the first
 * keys' shared prefix, keys that need code point order, and removes and scans between.
 */

setDefaultTimeout(60_000);

describe("ChunkOrder", () => {
  for (const [name, spread] of [
    ["full 31-bit keys", 2 ** 31],
    ["keys under 2^11 (one digit)", 2 ** 11],
    ["keys of a few values (long runs of equal keys)", 5],
    ["one key value", 1],
  ] as const) {
    test(`sorts stably like a comparison sort: ${name}`, () => {
      const next = seededRandom(spread);
      const order = new ChunkOrder(1024);
      for (const n of [0, 1, 2, 17, 1000, 1024]) {
        // A high digit the same for all, and others not: passes are skipped or not.
        const base = spread < 2 ** 20 ? 0x5a5a5 * 2 ** 11 : 0;
        const keys = Array.from({ length: n }, () => base + Math.floor(next() * spread));
        for (let i = 0; i < n; i++) {
          order.keys[i] = keys[i]!;
          order.indexes[i] = i;
        }
        order.sort(n);
        const model = keys.map((key, i) => ({ key, i })).sort((a, b) => a.key - b.key || a.i - b.i);
        expect(Array.from(order.indexes.subarray(0, n))).toEqual(model.map((entry) => entry.i));
        expect(Array.from(order.keys.subarray(0, n))).toEqual(model.map((entry) => entry.key));
      }
    });
  }
});

const TAILS = ["", "a", "z", "~", "\u00e9", "\u00ff", "\ue000", "😀", "\ud800", "0"];

/** Keys of several shapes; `alike`: most share 12 units past any prefix the index's first keys share. */
function keyOf(next: () => number, alike: boolean): string {
  const n = Math.floor(next() * 20_000);
  const tail = TAILS[Math.floor(next() * TAILS.length)]!;
  const shape = next();
  if (alike && shape < 0.8) return `user:aaaaaaaaaaaa${n}${tail}`;
  if (shape < 0.4) return `user:${n.toString(36)}:profile${tail}`;
  if (shape < 0.6) return `/registry/pods/ns${n % 7}/deploy-${n}${tail}`;
  if (shape < 0.7) return `user:${n % 40}`;
  if (shape < 0.8) return `\u00ff${n}${tail}`;
  if (shape < 0.9) return `${String.fromCharCode(0x21 + (n % 90))}${tail}`;
  return `😀/${n % 50}${tail}`;
}

describe("OrderedKeys.insertBatch (sorted fold)", () => {
  for (const [seed, alike] of [
    [21, false],
    [22, false],
    [23, true],
    [24, true],
  ] as const) {
    test(`batches up to several sort chunks agree with a sorted array (seed ${seed}${alike ? ", alike keys" : ""})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      const present = new Set<string>();
      let sorted: string[] = [];
      for (let round = 0; round < 30; round++) {
        const batch: string[] = [];
        // Mostly small batches (a slice's), some past SORT_CHUNK (a fold in one piece).
        const size = Math.floor(next() * (next() < 0.2 ? 3000 : 600));
        for (let i = 0; i < size; i++) {
          const key = keyOf(next, alike);
          if (present.has(key)) continue;
          present.add(key);
          batch.push(key);
        }
        // Some keys tie a block's first key on its code (one unit more than a first key).
        if (round > 0 && next() < 0.5) {
          const firstLike = `${sorted[Math.floor(next() * sorted.length)]!}!`;
          if (!present.has(firstLike)) {
            present.add(firstLike);
            batch.push(firstLike);
          }
        }
        const from = Math.floor(next() * 3);
        const padded = [...Array.from({ length: from }, () => "ignored"), ...batch, "ignored"];
        index.insertBatch(padded, from, from + batch.length);
        sorted = [...sorted, ...batch].sort(compareKeys);
        expect(index.size).toBe(sorted.length);
        const removals = Math.floor(next() * 100);
        for (let i = 0; i < removals && sorted.length > 0; i++) {
          const key = sorted[Math.floor(next() * sorted.length)]!;
          expect(index.remove(key)).toBe(true);
          present.delete(key);
          sorted.splice(lowerBound(sorted, key), 1);
        }
        for (let i = 0; i < 4; i++) {
          const probe =
            next() < 0.5 ? keyOf(next, alike) : (sorted[Math.floor(next() * sorted.length)] ?? "");
          const exclusive = next() < 0.5;
          expect(scanned(index, probe, exclusive, 25)).toEqual(expected(sorted, probe, exclusive, 25));
        }
        for (let i = 0; i < 20 && sorted.length > 0; i++) {
          expect(index.has(sorted[Math.floor(next() * sorted.length)]!)).toBe(true);
        }
        if (round % 6 === 5) expect(index.keys()).toEqual(sorted);
      }
      expect(index.keys()).toEqual(sorted);
    });
  }

  test("a batch that equals inserting its keys one by one, in any order", () => {
    const next = seededRandom(31);
    const keys = Array.from(new Set(Array.from({ length: 5000 }, () => keyOf(next, false))));
    const seeded = keys.slice(0, 1000);
    const batched = new OrderedKeys();
    const single = new OrderedKeys();
    batched.insertBatch(seeded, 0, seeded.length);
    for (const key of seeded) single.insert(key);
    batched.insertBatch(keys, 1000, keys.length);
    for (const key of keys.slice(1000)) single.insert(key);
    expect(batched.keys()).toEqual(single.keys());
    expect(batched.keys()).toEqual([...keys].sort(compareKeys));
  });
});

/**
 * Review of lsm30 (stop 30): longer first runs. A batch's keys are sorted into a run by
 * numbers made of their first bytes and their index in the batch (RunSorter: 257^5 ·
 * CHUNK_KEYS must stay under 2^53, so a longer chunk needs fewer bytes a number). Batches
 * of 1 to 20,000 keys in one insertBatch, keys whose first bytes are the highest a unit
 * encodes to (U+FFFF: EF BF BF; surrogates: F8 ...; U+10000+ as a pair), keys that tie on
 * their first 5, 10, 15 bytes, prefix chains (x, xx, xxx, ... up to 2000), and duplicates
 * of the order within a tie group: each run must come out in compareKeys order.
 */
import { expect, test } from "bun:test";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";

const HIGH = [
  "\uffff",
  "\ufffe",
  "\ud800",
  "\udbff",
  "\udfff",
  "\u{10ffff}",
  "\u{10000}",
  "\u07ff",
  "\u0800",
  "\u007f",
  "\u0000",
  "a",
];

function batchKeys(next: () => number, n: number): string[] {
  const keys = new Set<string>();
  const kind = Math.floor(next() * 4);
  while (keys.size < n) {
    let key = "";
    if (kind === 0) {
      // High units throughout.
      const len = Math.floor(next() * 8);
      for (let u = 0; u < len; u++) key += HIGH[Math.floor(next() * HIGH.length)]!;
    } else if (kind === 1) {
      // A shared head of 5, 10 or 15 bytes, then high units.
      key = ["\uffff\uffff", "\uffff\uffff\uffff\uffff", "ÿÿÿÿÿÿÿ"][Math.floor(next() * 3)]!;
      for (let u = Math.floor(next() * 6); u > 0; u--) key += HIGH[Math.floor(next() * HIGH.length)]!;
    } else if (kind === 2) {
      // A prefix chain, with a few branches.
      key = "x".repeat(Math.floor(next() * 2000));
      if (next() < 0.2) key += HIGH[Math.floor(next() * HIGH.length)]!;
    } else {
      key = `n/${Math.floor(next() * 1e9)}`;
      if (next() < 0.3) key += HIGH[Math.floor(next() * HIGH.length)]!.repeat(1 + Math.floor(next() * 3));
    }
    keys.add(key);
    if (kind === 2 && keys.size >= 2001) break;
  }
  return [...keys];
}

test("batches of 1 to 20,000 keys of high bytes, ties and prefix chains come out in key order", () => {
  const next = seededRandom(4242);
  for (let round = 0; round < 24; round++) {
    const n = [1, 2, 13, 1023, 1024, 1025, 2048, 4095, 4096, 4097, 8192, 20_000][round % 12]!;
    const keys = batchKeys(next, n);
    const index = new KeyRuns();
    index.insertBatch(keys, 0, keys.length, 0);
    const want = keys.slice().sort(modelKeyOrder);
    const got = index.keys();
    if (got.length !== want.length || got.some((key, i) => key !== want[i])) {
      const i = got.findIndex((key, k) => key !== want[k]);
      throw new Error(
        `round ${round} (${keys.length} keys): at ${i} got ${JSON.stringify(got[i]?.slice(0, 30))} want ${JSON.stringify(want[i]?.slice(0, 30))}`,
      );
    }
    for (let t = 0; t < 50; t++) {
      const key = keys[Math.floor(next() * keys.length)]!;
      expect(index.has(key)).toBe(true);
      expect(index.has(`${key}\u0001`)).toBe(false);
    }
    index.advance(Number.POSITIVE_INFINITY);
    expect(index.keys()).toEqual(want);
  }
});

test("a batch into an index holding neighbours of its keys: runs merged in order", () => {
  const next = seededRandom(4343);
  const index = new KeyRuns();
  const all: string[] = [];
  const seen = new Set<string>();
  for (let round = 0; round < 8; round++) {
    const keys = batchKeys(next, 3000 + Math.floor(next() * 6000)).filter((key) => !seen.has(key));
    for (const key of keys) seen.add(key);
    all.push(...keys);
    index.insertBatch(keys, 0, keys.length, Math.floor(next() * 5000));
  }
  index.advance(Number.POSITIVE_INFINITY);
  expect(index.keys()).toEqual(all.sort(modelKeyOrder));
});

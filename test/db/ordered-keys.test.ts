import { describe, expect, test } from "bun:test";
import { BLOCK_KEYS_MAX, BLOCK_PENDING_MAX } from "../../src/db/maple/coded-run.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { expected, lowerBound, scanned } from "../support/sorted-keys.ts";

/**
 * The ordered index against a plain sorted array, over keys chosen to stress its coded
 * comparisons: long shared prefixes, keys that are prefixes of others, and the units
 * where UTF-16 order and UTF-8 byte order disagree (U+E000–FFFF vs surrogate pairs, lone
 * surrogates), in enough keys for many blocks, splits and merges.
 */

const UNITS = [
  "a",
  "b",
  "z",
  "0",
  "~",
  "\u00e9",
  "\u07ff",
  "\ud7ff",
  "\ue000",
  "\uffff",
  "😀",
  "𐀀",
  "\ud800",
  "\udfff",
];
const PREFIXES = ["", "user:", "user:1", "svc/registry/", "\ue000", "😀", "\ud83d"];

function randomKey(next: () => number): string {
  let key = PREFIXES[Math.floor(next() * PREFIXES.length)]!;
  const length = Math.floor(next() * 6);
  for (let i = 0; i < length; i++) key += UNITS[Math.floor(next() * UNITS.length)]!;
  return key;
}

/** Byte order as the contract defines it (lone surrogates: by code unit, like compareKeys). */

describe("OrderedKeys", () => {
  test("compareKeys is UTF-8 byte order for well-formed keys", () => {
    const keys = ["a", "ab", "\u07ff", "\ud7ff", "\ue000", "\uffff", "😀", "𐀀", ""];
    const bytes = (s: string) => [...new TextEncoder().encode(s)];
    const byBytes = [...keys].sort((x, y) => {
      const a = bytes(x);
      const b = bytes(y);
      for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
      return a.length - b.length;
    });
    expect([...keys].sort(compareKeys)).toEqual(byBytes);
  });

  for (const seed of [1, 2, 3]) {
    test(`random inserts, removes and scans agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      const present = new Set<string>();
      let sorted: string[] = [];
      const steps = 20 * BLOCK_KEYS_MAX;
      for (let step = 0; step < steps; step++) {
        const roll = next();
        // Grow for the first half (many splits), then shrink (merges, emptied blocks).
        const growing = step < steps / 2 ? roll < 0.8 : roll < 0.3;
        if (growing) {
          const key = randomKey(next);
          if (present.has(key)) continue;
          present.add(key);
          index.insert(key);
          sorted.splice(lowerBound(sorted, key), 0, key);
        } else if (sorted.length > 0) {
          const key = sorted[Math.floor(next() * sorted.length)]!;
          expect(index.remove(key)).toBe(true);
          present.delete(key);
          sorted.splice(lowerBound(sorted, key), 1);
          expect(index.remove(key)).toBe(false);
        }
        if (step % 97 === 0) {
          const from = randomKey(next);
          const exclusive = next() < 0.5;
          expect(scanned(index, from, exclusive, 20)).toEqual(expected(sorted, from, exclusive, 20));
        }
        if (step % 1000 === 0) {
          expect(index.keys()).toEqual(sorted);
          sorted = [...sorted];
        }
      }
      expect(index.size).toBe(sorted.length);
      expect(index.keys()).toEqual(sorted);
      for (const from of ["", ...sorted.slice(0, 50), "\uffff\uffff", "😀😀😀"]) {
        expect(scanned(index, from, true, 5)).toEqual(expected(sorted, from, true, 5));
        expect(scanned(index, from, false, 5)).toEqual(expected(sorted, from, false, 5));
      }
    });
  }

  test("an index built from sorted keys takes inserts and removes like one built key by key", () => {
    const next = seededRandom(9);
    const keys = new Set<string>();
    while (keys.size < 3 * BLOCK_KEYS_MAX) keys.add(randomKey(next) + randomKey(next));
    const sorted = OrderedKeys.sortKeys([...keys]);
    const index = OrderedKeys.fromSorted(sorted);
    expect(index.keys()).toEqual(sorted);
    const reference = [...sorted];
    for (let i = 0; i < 2 * BLOCK_KEYS_MAX; i++) {
      const key = `${randomKey(next)}#${i}`;
      index.insert(key);
      reference.splice(lowerBound(reference, key), 0, key);
    }
    for (const key of reference.filter((_, i) => i % 3 === 0)) expect(index.remove(key)).toBe(true);
    const left = reference.filter((_, i) => i % 3 !== 0);
    expect(index.keys()).toEqual(left);
    expect(scanned(index, "user:", false, 30)).toEqual(expected(left, "user:", false, 30));
  });

  test("probes with units beyond Latin-1 find their place among Latin-1 keys", () => {
    const index = new OrderedKeys();
    const reference: string[] = [];
    const alphabet = "az~\u00e9\u00fe";
    for (let i = 0; i < 2 * BLOCK_KEYS_MAX; i++) {
      let key = "p/";
      for (let n = i; key.length < 6; n = Math.floor(n / alphabet.length))
        key += alphabet[n % alphabet.length];
      if (reference.includes(key)) continue;
      index.insert(key);
      reference.splice(lowerBound(reference, key), 0, key);
    }
    const probes = [
      "p/\u00ff",
      "p/a\u00ff",
      "p/a\u0100",
      "p/az\uffff",
      "p/\u00fe\u00fe\ue000",
      "p/~😀",
      "p/a\ud800",
    ];
    for (const from of probes) {
      expect(scanned(index, from, false, 10)).toEqual(expected(reference, from, false, 10));
      expect(index.remove(from)).toBe(false);
    }
    expect(index.keys()).toEqual(reference);
  });

  test("keys that share long prefixes and tie on the coded units are still ordered", () => {
    const index = new OrderedKeys();
    const reference: string[] = [];
    const next = seededRandom(4);
    // Everything past the shared prefix agrees in its next three units; the order is decided later.
    for (let i = 0; i < 3 * BLOCK_KEYS_MAX; i++) {
      const key = `tenant/acme/aaa${Math.floor(next() * 1e9).toString(36)}${i % 2 === 0 ? "😀" : "\uffff"}`;
      if (reference.includes(key)) continue;
      index.insert(key);
      reference.splice(lowerBound(reference, key), 0, key);
    }
    expect(index.keys()).toEqual(reference);
    for (const from of ["tenant/acme/aaa", "tenant/acme/aaa5", "tenant/acme/aab", "tenant/"]) {
      expect(scanned(index, from, false, 40)).toEqual(expected(reference, from, false, 40));
    }
  });

  test("keys still waiting in a block's pending list are seen by scans and removes at once", () => {
    const sorted = Array.from(
      { length: 20 * BLOCK_KEYS_MAX },
      (_, i) => `k/${String(i * 2).padStart(8, "0")}`,
    );
    const index = OrderedKeys.fromSorted(sorted);
    const reference = [...sorted];
    const add = (key: string): void => {
      index.insert(key);
      reference.splice(lowerBound(reference, key), 0, key);
    };
    // Fewer keys than one block's pending bound, spread so that several blocks hold some.
    const odd = Array.from(
      { length: BLOCK_PENDING_MAX - 1 },
      (_, i) => `k/${String(i * 97 * 2 + 1).padStart(8, "0")}`,
    );
    for (const key of odd) add(key);
    // A key below every key goes to block 0 as its new first key.
    add("a");
    expect(index.size).toBe(reference.length);
    for (const key of odd.slice(0, 10)) {
      expect(scanned(index, key, false, 5)).toEqual(expected(reference, key, false, 5));
      expect(scanned(index, key, true, 5)).toEqual(expected(reference, key, true, 5));
    }
    expect(scanned(index, "", false, 3)).toEqual(["a", "k/00000000", "k/00000001"]);
    // Removing a pending key (no scan has merged its block) takes it out.
    const last = odd[odd.length - 1]!;
    expect(index.remove(last)).toBe(true);
    reference.splice(reference.indexOf(last), 1);
    expect(index.remove(last)).toBe(false);
    // Enough keys into one block to merge it mid-stream, and past that to split it.
    for (let i = 0; i < BLOCK_KEYS_MAX + BLOCK_PENDING_MAX; i++)
      add(`k/00000100.${String(i).padStart(4, "0")}`);
    expect(index.keys()).toEqual(reference);
    expect(index.size).toBe(reference.length);
  });
});

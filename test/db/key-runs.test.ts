/**
 * KeyRuns (the settled ordered index as sorted runs of key bytes): every scan, `has` and
 * size agree with a sorted array of the keys present, through batches of adds and
 * removes that make runs merge (a removal marks its entry dead in its run), for keys of
 * every code unit class (ASCII, 2- and 3-byte units, paired and lone surrogates).
 */
import { describe, expect, test } from "bun:test";
import { compareBytes, decodeKey, encodeKey } from "../../src/db/maple/key-bytes.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { modelPage, scanPage } from "./helpers.ts";

const UNITS = [
  0x61, 0x62, 0x2f, 0x00, 0x7f, 0xe9, 0x7ff, 0x800, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xe000, 0xffff,
];

function randomKey(next: () => number, shape: number): string {
  if (shape === 0) return `user/${Math.floor(next() * 50)}/${Math.floor(next() * 100000)}`;
  if (shape === 1) return `k${String(Math.floor(next() * 5000)).padStart(6, "0")}`;
  const n = Math.floor(next() * 6);
  let key = "p/";
  for (let i = 0; i < n; i++) key += String.fromCharCode(UNITS[Math.floor(next() * UNITS.length)]!);
  return key;
}

describe("key bytes", () => {
  test("byte order of the encoding is compareKeys' order, and every key decodes back exactly", () => {
    const next = seededRandom(7);
    const keys = Array.from({ length: 3000 }, () => randomKey(next, 2));
    const bytes = new Uint8Array(64);
    const other = new Uint8Array(64);
    for (let i = 0; i + 1 < keys.length; i++) {
      const a = keys[i]!;
      const b = keys[i + 1]!;
      const ae = encodeKey(a, bytes, 0);
      const be = encodeKey(b, other, 0);
      expect(decodeKey(bytes, 0, ae)).toBe(a);
      expect(Math.sign(compareBytes(bytes, 0, ae, other, 0, be))).toBe(Math.sign(compareKeys(a, b)));
    }
  });
});

describe("KeyRuns", () => {
  for (const [seed, shape] of [
    [1, 0],
    [2, 1],
    [3, 2],
    [4, 0],
  ] as const) {
    test(`matches a sorted array through adds and removes (seed ${seed}, shape ${shape})`, () => {
      const next = seededRandom(seed);
      const present = new Set<string>();
      const index = new KeyRuns();
      let maxRuns = 0;
      for (let round = 0; round < 60; round++) {
        const adds: string[] = [];
        const removes: string[] = [];
        const batch = 1 + Math.floor(next() * (round % 7 === 0 ? 3000 : 400));
        const removing = next() < 0.4;
        const seen = new Set<string>();
        for (let i = 0; i < batch; i++) {
          if (removing && present.size > 0 && next() < 0.5) {
            // Some present key: from a scan at a random point.
            const from = randomKey(next, shape);
            const [key] = scanPage(index, from, false, 1);
            if (key === undefined || seen.has(key)) continue;
            seen.add(key);
            removes.push(key);
            continue;
          }
          const key = randomKey(next, shape);
          if (present.has(key) || seen.has(key)) continue;
          seen.add(key);
          adds.push(key);
        }
        index.insertBatch(adds, 0, adds.length);
        index.removeBatch(removes, 0, removes.length);
        for (const key of adds) present.add(key);
        for (const key of removes) present.delete(key);
        maxRuns = Math.max(maxRuns, index.runCount);
        const sorted = [...present].sort(compareKeys);
        expect(index.size).toBe(present.size);
        for (let probe = 0; probe < 20; probe++) {
          const from =
            next() < 0.5 && sorted.length > 0
              ? sorted[Math.floor(next() * sorted.length)]!
              : randomKey(next, shape);
          const exclusive = next() < 0.5;
          const max = Math.floor(next() * 50);
          expect(scanPage(index, from, exclusive, max)).toEqual(modelPage(sorted, from, exclusive, max));
          expect(index.has(from)).toBe(present.has(from));
        }
        for (const key of removes.slice(0, 10)) expect(index.has(key)).toBe(false);
        for (const key of adds.slice(0, 10)) expect(index.has(key)).toBe(true);
      }
      expect(index.keys()).toEqual([...present].sort(compareKeys));
      expect(maxRuns).toBeGreaterThan(2);
    });
  }

  test("fromSorted holds the keys in one run; a page out of many keys reads few entries", () => {
    const keys = Array.from({ length: 50000 }, (_, i) => `key/${String(i).padStart(6, "0")}`);
    const index = KeyRuns.fromSorted(keys);
    expect(index.runCount).toBe(1);
    const more = Array.from({ length: 20000 }, (_, i) => `key/${String(i).padStart(6, "0")}x`);
    index.insertBatch(more, 0, more.length);
    const before = index.work;
    expect(scanPage(index, "key/012345", true, 3)).toEqual(["key/012345x", "key/012346", "key/012346x"]);
    expect(index.work - before).toBeLessThan(3 * 2 + 2 * index.runCount);
  });
});

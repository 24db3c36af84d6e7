/**
 * Review of lsm30 (stop 30): merges that skip the bytes keys share (an LCP merge: each run
 * keeps the bytes a key shares with the one before it, capped at a byte's range, and a
 * merge compares two heads only past what they share with the last key written). What can
 * break it: a cap reached by both heads (keys sharing 254, 255, 256, 300+ bytes), keys
 * that prefix each other, dead entries between two live ones (the next head's shared
 * bytes are then the least of the two steps), removals landing while the job is between
 * two steps, and a job resumed after a step ended on either source.
 *
 * Keys: a few long stems (0 to 300 bytes, and 1-, 2- and 3-byte units and surrogates, so
 * a cap may fall inside a unit) each followed by short tails of two letters, so heads of
 * both sources share long prefixes all the time. Against a sorted model, with scans and
 * `has` between starved steps.
 */
import { expect, test } from "bun:test";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { soak } from "../support/soak.ts";
import { expectedPresent, scanned } from "../support/sorted-keys.ts";
import { insertGathering } from "./gather.ts";

function stems(): string[] {
  const out = new Set<string>([""]);
  for (const n of [1, 2, 100, 126, 127, 128, 253, 254, 255, 256, 257, 300, 600]) {
    out.add("s".repeat(n));
    out.add(`${"s".repeat(n - 1)}é`);
    out.add(`${"é".repeat(Math.floor(n / 2))}`);
    out.add(`${"中".repeat(Math.floor(n / 3))}x`);
    out.add(`${"s".repeat(n)}\ud800`);
    out.add(`${"s".repeat(Math.max(0, n - 2))}😀`);
  }
  return [...out];
}

function keyPool(next: () => number): string[] {
  const keys = new Set<string>();
  const all = stems();
  for (const stem of all) {
    keys.add(stem);
    for (let t = 0; t < 40; t++) {
      let tail = "";
      const n = 1 + Math.floor(next() * 4);
      for (let u = 0; u < n; u++) tail += "ab\uffff"[Math.floor(next() * 3)]!;
      keys.add(stem + tail);
    }
  }
  return [...keys].sort(modelKeyOrder);
}

/** Steps of each history (6000 under DKV_SOAK). */
const STEPS = soak(2000, 6000);

for (const seed of [31, 32, 33, 34]) {
  test(`LCP-heavy keys: KeyRuns = the model through starved merges, dead heads, removals mid-job (seed ${seed})`, () => {
    const next = seededRandom(seed);
    const keys = keyPool(next);
    const present = new Uint8Array(keys.length);
    const index = new KeyRuns();
    let size = 0;
    let checks = 0;
    const pick = (want: number, n: number): number[] => {
      const out: number[] = [];
      const taken = new Set<number>();
      for (let tries = 0; tries < 4 * n && out.length < n; tries++) {
        const at = Math.floor(next() * keys.length);
        const stretch = next() < 0.4 ? 1 : 1 + Math.floor(next() * 30);
        for (let k = at; k < Math.min(keys.length, at + stretch) && out.length < n; k++) {
          // Every other neighbour, now and then: dead entries between live ones.
          if (present[k] === want && !taken.has(k) && (stretch < 8 || k % 2 === 0)) {
            taken.add(k);
            out.push(k);
          }
        }
      }
      return out;
    };
    for (let step = 0; step < STEPS; step++) {
      const r = next();
      const budget = next() < 0.5 ? 0 : next() < 0.6 ? 1 + Math.floor(next() * 6) : undefined;
      if (r < 0.38) {
        const batch = pick(0, 1 + Math.floor(next() * (next() < 0.15 ? 900 : 60)));
        for (const k of batch) present[k] = 1;
        size += batch.length;
        const strings = batch.map((k) => keys[k]!);
        insertGathering(index, strings, 0, strings.length, budget, next() < 0.5);
      } else if (r < 0.66) {
        const batch = pick(1, 1 + Math.floor(next() * (next() < 0.15 ? 500 : 40)));
        for (const k of batch) present[k] = 0;
        size -= batch.length;
        const strings = batch.map((k) => keys[k]!);
        index.removeBatch(strings, 0, strings.length, budget);
      } else if (r < 0.86) {
        index.advance(next() < 0.5 ? 1 + Math.floor(next() * 3) : Math.floor(next() * 200));
      } else if (r < 0.995) {
        checks++;
        const from = next() < 0.7 ? keys[Math.floor(next() * keys.length)]! : "";
        const exclusive = next() < 0.5;
        const max = 1 + Math.floor(next() * 200);
        const want = expectedPresent(keys, present, from, exclusive, max);
        const got = scanned(index, from, exclusive, max);
        if (got.length !== want.length || got.some((key, i) => key !== want[i])) {
          const i = got.findIndex((key, k) => key !== want[k]);
          throw new Error(
            `seed ${seed} step ${step}: scan at ${i}: got ${JSON.stringify(got[i])} want ${JSON.stringify(want[i])} (${got.length}/${want.length})`,
          );
        }
        for (let t = 0; t < 10; t++) {
          const k = Math.floor(next() * keys.length);
          expect(index.has(keys[k]!)).toBe(present[k] === 1);
        }
      } else {
        index.advance(Number.POSITIVE_INFINITY);
        expect(index.keys()).toEqual(keys.filter((_, k) => present[k] === 1));
      }
      expect(index.size).toBe(size);
    }
    index.advance(Number.POSITIVE_INFINITY);
    expect(index.keys()).toEqual(keys.filter((_, k) => present[k] === 1));
    expect(checks).toBeGreaterThan(STEPS / 10);
  });
}

test("a merge's output keeps working as a source: keys sharing 250-260 bytes merged over many levels", () => {
  // Every key added alone (a run each) in shuffled order, budgets 1: each key passes
  // through many merges, each reading the lcp entries an earlier merge wrote.
  const next = seededRandom(99);
  const keys: string[] = [];
  for (let n = 250; n <= 260; n++)
    for (const tail of ["", "a", "aa", "ab", "b", "ba", "\uffff", "é", "😀"])
      keys.push(`${"p".repeat(n)}${tail}`);
  for (let n = 250; n <= 260; n++) keys.push(`${"p".repeat(n - 1)}q`);
  const shuffled = keys.slice();
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const index = new KeyRuns();
  for (let i = 0; i < shuffled.length; i++) {
    insertGathering(index, shuffled, i, i + 1, 1 + (i % 3), i % 5 !== 0);
    if (i % 17 === 5) index.removeBatch(shuffled, i - 3, i - 2, 1);
    if (i % 17 === 9) index.insertBatch(shuffled, i - 7, i - 6, 1);
  }
  index.advance(Number.POSITIVE_INFINITY);
  const want = new Set(shuffled);
  for (let i = 0; i < shuffled.length; i++) if (i % 17 === 5 && i >= 3) want.delete(shuffled[i - 3]!);
  for (let i = 0; i < shuffled.length; i++) if (i % 17 === 9 && i >= 7) want.add(shuffled[i - 7]!);
  expect(index.keys()).toEqual([...want].sort(modelKeyOrder));
});

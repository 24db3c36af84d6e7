/**
 * Review of lsm29's KeyRuns (daf9d30): merges and rewrites as jobs moved on in bounded
 * steps, removals marking the live entry dead (in a job's source, and in its copy when the
 * job copied it already). Random histories against a set of the keys present, with the
 * jobs' budgets starved (0, 1, a few entries) or default, so removals and re-adds of the
 * same keys land while jobs are at every point of their sources, and scans (exclusive or
 * not, from keys present, removed or never added) run between the steps.
 *
 * After every job is done (advance with an unbounded budget): no two idle runs share a
 * level and no run is more than a quarter dead, so the runs are at most ~log2(n) and a scan
 * of every key reads at most 4/3 of the keys plus a seek per run.
 */
import { expect, test } from "bun:test";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { soak } from "../support/soak.ts";
import { expectedPresent, scanned } from "../support/sorted-keys.ts";

const UNITS = [
  "a",
  "b",
  "/",
  "\u0000",
  "\u007f",
  "é",
  "\u07ff",
  "\u0800",
  "\uffff",
  "😀",
  "\ud800",
  "\udfff",
  "\ue000",
];

function pool(next: () => number): string[] {
  const keys = new Set<string>(["", "a", "aa", "aaa", "aaaa", "ab", "b", "\u0000", "\uffff", "\ud800", "😀"]);
  for (let i = 0; i < 2500; i++) keys.add(`k/${String(Math.floor(next() * 100000)).padStart(6, "0")}`);
  for (let i = 0; i < 1500; i++) {
    let key = ["", "k/", "k/0", "a", "é"][Math.floor(next() * 5)]!;
    const n = 1 + Math.floor(next() * 4);
    for (let u = 0; u < n; u++) key += UNITS[Math.floor(next() * UNITS.length)]!;
    keys.add(key);
  }
  for (let i = 0; i < 20; i++) keys.add(`long/${"y".repeat(300 + i * 40)}`);
  return [...keys].sort(modelKeyOrder);
}

function history(seed: number, steps: number): { jobsSeen: number; checks: number } {
  const next = seededRandom(seed);
  const keys = pool(next);
  const present = new Uint8Array(keys.length);
  const index = new KeyRuns();
  let size = 0;
  let jobsSeen = 0;
  let checks = 0;
  const budget = (): number | undefined => {
    const r = next();
    if (r < 0.3) return 0;
    if (r < 0.5) return 1 + Math.floor(next() * 8);
    if (r < 0.7) return Math.floor(next() * 200);
    return undefined;
  };
  const pickWhere = (want: number, n: number): string[] => {
    const out: string[] = [];
    const taken = new Set<number>();
    for (let tries = 0; tries < 4 * n && out.length < n; tries++) {
      // Runs of neighbours (a stretch of one run), or scattered keys.
      const at = Math.floor(next() * keys.length);
      const stretch = next() < 0.5 ? 1 : 1 + Math.floor(next() * 60);
      for (let k = at; k < Math.min(keys.length, at + stretch) && out.length < n; k++) {
        if (present[k] === want && !taken.has(k)) {
          taken.add(k);
          out.push(keys[k]!);
        }
      }
    }
    return out;
  };
  const check = (step: number): void => {
    checks++;
    const where = `seed ${seed} step ${step}`;
    expect(index.size, where).toBe(size);
    const r = next();
    const from =
      r < 0.6
        ? keys[Math.floor(next() * keys.length)]!
        : ["", "a", "k/", "k/05", "é", "\ud83d", "\uffff", "z"][Math.floor(next() * 8)]!;
    const exclusive = next() < 0.5;
    const max = 1 + Math.floor(next() * 120);
    const want = expectedPresent(keys, present, from, exclusive, max);
    expect(
      scanned(index, from, exclusive, max),
      `${where} scan ${JSON.stringify(from)} ${exclusive}`,
    ).toEqual(want);
    for (let t = 0; t < 20; t++) {
      const k = Math.floor(next() * keys.length);
      expect(index.has(keys[k]!), `${where} has ${JSON.stringify(keys[k])}`).toBe(present[k] === 1);
    }
  };
  const rank = new Map(keys.map((key, k) => [key, k]));
  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.35) {
      const batch = pickWhere(0, 1 + Math.floor(next() * (next() < 0.2 ? 1024 : 40)));
      for (const key of batch) present[rank.get(key)!] = 1;
      size += batch.length;
      index.insertBatch(batch, 0, batch.length, budget());
    } else if (r < 0.65) {
      const batch = pickWhere(1, 1 + Math.floor(next() * (next() < 0.2 ? 600 : 40)));
      for (const key of batch) present[rank.get(key)!] = 0;
      size -= batch.length;
      index.removeBatch(batch, 0, batch.length, budget());
    } else if (r < 0.8) {
      if (index.pending) jobsSeen++;
      index.advance(1 + Math.floor(next() * 300));
    } else if (r < 0.98) check(step);
    else {
      index.advance(Number.POSITIVE_INFINITY);
      expect(index.pending).toBe(false);
      // Idle: at most one run a level, none over a quarter dead.
      expect(index.runCount).toBeLessThanOrEqual(Math.log2(Math.max(1, size)) + 3);
      const before = index.work;
      expect(index.keys().length).toBe(size);
      expect(index.work - before).toBeLessThanOrEqual(Math.ceil((4 / 3) * size) + 2 * index.runCount + 2);
    }
  }
  index.advance(Number.POSITIVE_INFINITY);
  check(steps);
  expect(index.keys()).toEqual(keys.filter((_, k) => present[k] === 1));
  return { jobsSeen, checks };
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`KeyRuns matches the set of keys present through starved and default job budgets (seed ${seed})`, () => {
    const steps = soak(2500, 8000);
    const done = history(seed, steps);
    expect(done.jobsSeen).toBeGreaterThan(steps / 160);
    expect(done.checks).toBeGreaterThan(steps / 27);
  });
}

test("KeyRuns: both sources of a merge removed entirely while it is half done; re-added keys survive the swap", () => {
  const index = new KeyRuns();
  const a = Array.from({ length: 1024 }, (_, i) => `m/${String(2 * i).padStart(5, "0")}`);
  const b = Array.from({ length: 1024 }, (_, i) => `m/${String(2 * i + 1).padStart(5, "0")}`);
  index.insertBatch(a, 0, a.length, 0);
  index.insertBatch(b, 0, b.length, 0);
  expect(index.pending).toBe(true);
  // Half of the merge done: the first ~1000 entries copied.
  index.advance(1000);
  expect(index.pending).toBe(true);
  const all = [...a, ...b];
  index.removeBatch(all, 0, all.length, 0);
  expect(index.size).toBe(0);
  expect(index.keys()).toEqual([]);
  // Some come back (a new run) before the swap, one of them copied already, one not.
  const back = [a[3]!, b[1000]!, "m/"];
  index.insertBatch(back, 0, back.length, 0);
  index.advance(Number.POSITIVE_INFINITY);
  expect(index.pending).toBe(false);
  expect(index.keys()).toEqual(["m/", a[3]!, b[1000]!]);
  expect(index.has(a[3]!)).toBe(true);
  expect(index.has(a[4]!)).toBe(false);
  // Nothing all dead is kept: the merged run of dead entries is dropped.
  expect(index.runCount).toBeLessThanOrEqual(2);
  const before = index.work;
  expect(index.keys().length).toBe(3);
  expect(index.work - before).toBeLessThanOrEqual(3 + 2 * index.runCount + 2);
});

/**
 * Review of lsm30 (stop 30: a new key made cheaper — k-way / tiered merges, longer first
 * runs). KeyRuns against a sorted model of the keys present, through random histories
 * whose job budgets are starved (0, a few entries) or default, so removals, re-adds and
 * scans land while merges of 2..k runs are at every point of their sources; keys from 0
 * to 32K code units (shared long prefixes, so comparisons go deep), and non-ASCII units
 * (U+FFFF, lone and paired surrogates, U+10000+).
 *
 * Invariants checked, each in work units (the cost KeyRuns reports), not wall time:
 * - a step is bounded: `advance(b)` moves at most b plus one entry's cost (the entry that
 *   crosses the budget: 1 + bytes / 64 for the longest key);
 * - cost is counted by bytes: draining a merge of long keys costs at least what its
 *   entries' bytes cost (batchCost), so a budget bounds the bytes copied;
 * - the runs stay at most RUNS_MAX (48) after every write;
 * - idle (every job done): a full scan reads at most 4/3 of the keys (no run over a
 *   quarter dead) plus a seek per run, and the runs are at most ~log2(n) + a few.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { encodedLength } from "../../src/db/maple/key-bytes.ts";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { soak } from "../support/soak.ts";
import { expectedPresent, scanned } from "../support/sorted-keys.ts";
import { insertGathering } from "./gather.ts";

setDefaultTimeout(60_000);

const RUNS_MAX = 48;
const UNITS = [
  "a",
  "z",
  "/",
  "\u0000",
  "\u007f",
  "é",
  "\u0800",
  "\uffff",
  "😀",
  "𝄞",
  "\ud800",
  "\udfff",
  "\ue000",
  "\u{10ffff}",
];

function cost(bytes: number): number {
  return 1 + Math.floor(bytes / 64);
}

function pool(next: () => number, longKeys: number): string[] {
  const keys = new Set<string>([
    "",
    "a",
    "aa",
    "ab",
    "b",
    "\u0000",
    "\uffff",
    "\ud800",
    "\udbff\udfff",
    "😀",
    "\u{10000}",
  ]);
  for (let i = 0; i < 2000; i++) keys.add(`k/${String(Math.floor(next() * 100000)).padStart(6, "0")}`);
  for (let i = 0; i < 1200; i++) {
    let key = ["", "k/", "k/0", "a", "é", "\uffff"][Math.floor(next() * 6)]!;
    const n = 1 + Math.floor(next() * 5);
    for (let u = 0; u < n; u++) key += UNITS[Math.floor(next() * UNITS.length)]!;
    keys.add(key);
  }
  // Long keys: some share a 20K prefix (a comparison reads it all), some end in odd units.
  const shared = "P".repeat(20_000);
  for (let i = 0; i < longKeys; i++) {
    const r = next();
    const len = Math.floor(64 + next() * (32_768 - 64));
    if (r < 0.4) keys.add(`L/${shared}${UNITS[i % UNITS.length]}${i}`);
    else if (r < 0.7) keys.add(`L/${"é".repeat(Math.min(len, 32_000))}${i}`);
    else keys.add(`k/0${"x".repeat(len)}${UNITS[i % UNITS.length]}`);
  }
  // Past lsm30's CHUNK_BYTES (256 KiB) alone: 100K units of 3 bytes, 300K of 1.
  if (longKeys > 0) {
    keys.add(`L/${"中".repeat(100_000)}`);
    keys.add(`L/${"中".repeat(100_000)}a`);
    keys.add(`k/0${"x".repeat(300_000)}`);
  }
  return [...keys].sort(modelKeyOrder);
}

function history(
  seed: number,
  steps: number,
  longKeys: number,
): { jobsSeen: number; checks: number; advances: number } {
  const next = seededRandom(seed);
  const keys = pool(next, longKeys);
  let maxCost = 1;
  for (const key of keys) maxCost = Math.max(maxCost, cost(encodedLength(key)));
  const present = new Uint8Array(keys.length);
  const rank = new Map(keys.map((key, k) => [key, k]));
  const index = new KeyRuns();
  let size = 0;
  let jobsSeen = 0;
  let checks = 0;
  let advances = 0;
  let lastAdded: string[] = [];
  const budget = (): number | undefined => {
    const r = next();
    if (r < 0.35) return 0;
    if (r < 0.55) return 1 + Math.floor(next() * 8);
    if (r < 0.7) return Math.floor(next() * 300);
    return undefined;
  };
  const pickWhere = (want: number, n: number): string[] => {
    const out: string[] = [];
    const taken = new Set<number>();
    for (let tries = 0; tries < 4 * n && out.length < n; tries++) {
      const at = Math.floor(next() * keys.length);
      const stretch = next() < 0.5 ? 1 : 1 + Math.floor(next() * 80);
      for (let k = at; k < Math.min(keys.length, at + stretch) && out.length < n; k++) {
        if (present[k] === want && !taken.has(k)) {
          taken.add(k);
          out.push(keys[k]!);
        }
      }
    }
    return out;
  };
  const hasChecks = (where: string): void => {
    for (let t = 0; t < 20; t++) {
      const k = Math.floor(next() * keys.length);
      expect(index.has(keys[k]!), `${where} has ${JSON.stringify(keys[k]!.slice(0, 40))}`).toBe(
        present[k] === 1,
      );
    }
    // The last keys added (often still gathered).
    for (const key of lastAdded)
      expect(index.has(key), `${where} has a last added key`).toBe(present[rank.get(key)!] === 1);
  };
  const check = (step: number): void => {
    checks++;
    const where = `seed ${seed} step ${step}`;
    expect(index.size, where).toBe(size);
    // `has` first now and then: keys still gathered (lsm30) must be found before any scan.
    if (next() < 0.5) hasChecks(where);
    const r = next();
    const from =
      r < 0.6
        ? keys[Math.floor(next() * keys.length)]!
        : ["", "a", "k/", "k/05", "L/", "é", "\ud83d", "\uffff", "\udbff", "z"][Math.floor(next() * 10)]!;
    const exclusive = next() < 0.5;
    const max = 1 + Math.floor(next() * 150);
    const want = expectedPresent(keys, present, from, exclusive, max);
    const got = scanned(index, from, exclusive, max);
    if (got.length !== want.length || got.some((key, i) => key !== want[i])) {
      const i = got.findIndex((key, k) => key !== want[k]);
      throw new Error(
        `${where} scan ${JSON.stringify(from.slice(0, 40))} ${exclusive} at ${i}: got ${JSON.stringify(got[i]?.slice(0, 60))} want ${JSON.stringify(want[i]?.slice(0, 60))} (${got.length}/${want.length})`,
      );
    }
    hasChecks(where);
  };
  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.35) {
      const batch = pickWhere(0, 1 + Math.floor(next() * (next() < 0.2 ? 2000 : 40)));
      for (const key of batch) present[rank.get(key)!] = 1;
      size += batch.length;
      insertGathering(index, batch, 0, batch.length, budget(), next() < 0.5);
      lastAdded = batch.slice(-5);
      expect(index.runCount, `seed ${seed} step ${step}: runs after an add`).toBeLessThanOrEqual(RUNS_MAX);
    } else if (r < 0.63) {
      const batch = pickWhere(1, 1 + Math.floor(next() * (next() < 0.2 ? 900 : 40)));
      for (const key of batch) present[rank.get(key)!] = 0;
      size -= batch.length;
      index.removeBatch(batch, 0, batch.length, budget());
      expect(index.runCount, `seed ${seed} step ${step}: runs after a removal`).toBeLessThanOrEqual(RUNS_MAX);
    } else if (r < 0.8) {
      if (index.pending) jobsSeen++;
      const b = next() < 0.3 ? 1 + Math.floor(next() * 4) : Math.floor(next() * 400);
      const before = index.merged;
      const moved = index.advance(b);
      advances++;
      // One step: at most the budget and the one entry that crosses it.
      expect(moved, `seed ${seed} step ${step}: advance(${b})`).toBeLessThanOrEqual(b + maxCost);
      expect(index.merged - before).toBe(moved);
    } else if (r < 0.98) check(step);
    else {
      index.advance(Number.POSITIVE_INFINITY);
      expect(index.pending).toBe(false);
      expect(index.runCount).toBeLessThanOrEqual(Math.log2(Math.max(1, size)) + 4);
      const before = index.work;
      expect(index.keys().length).toBe(size);
      expect(index.work - before).toBeLessThanOrEqual(Math.ceil((4 / 3) * size) + 2 * index.runCount + 2);
    }
  }
  index.advance(Number.POSITIVE_INFINITY);
  check(steps);
  expect(index.keys()).toEqual(keys.filter((_, k) => present[k] === 1));
  return { jobsSeen, checks, advances };
}

for (const [seed, longKeys] of [
  [11, 0],
  [12, 0],
  [13, 40],
  [14, 40],
  [15, 80],
] as const) {
  test(`KeyRuns = the model, steps bounded in cost, runs ≤ ${RUNS_MAX} (seed ${seed}, ${longKeys} long keys)`, () => {
    const steps = soak(1500, 5000);
    const done = history(seed, steps, longKeys);
    expect(done.jobsSeen).toBeGreaterThan(steps / 100);
    expect(done.checks).toBeGreaterThan(steps / 25);
  });
}

test("a merge of long keys costs their bytes: a budget bounds the bytes a step copies", () => {
  const index = new KeyRuns();
  // Runs of long keys at one level (budget 0: nothing merged while they come) until a
  // merge of them starts (2 runs for a two-way merge, k for a tiered one).
  const runs: string[][] = [];
  for (let r = 0; r < 16 && !index.pending; r++) {
    const run: string[] = [];
    for (let i = 0; i < 16; i++)
      run.push(`L/${"q".repeat(8000 + 97 * i)}/${String(i * 16 + r).padStart(4, "0")}`);
    runs.push(run);
    index.insertBatch(run, 0, run.length, 0);
  }
  expect(index.pending).toBe(true);
  let owed = 0;
  let maxCost = 1;
  for (const run of runs)
    for (const key of run) {
      owed += cost(encodedLength(key));
      maxCost = Math.max(maxCost, cost(encodedLength(key)));
    }
  let total = 0;
  let steps = 0;
  while (index.pending && steps < 1_000_000) {
    const moved = index.advance(50);
    expect(moved).toBeLessThanOrEqual(50 + maxCost);
    total += moved;
    steps++;
  }
  expect(index.pending).toBe(false);
  expect(index.runCount).toBe(1);
  // Every key was copied once (into the merged run), and every copy's bytes were paid for.
  expect(total).toBeGreaterThanOrEqual(owed);
  expect(index.keys()).toEqual(runs.flat().sort(modelKeyOrder));
});

test("the runs stay at most RUNS_MAX however starved the writes' budgets", () => {
  const index = new KeyRuns();
  const keys = Array.from({ length: 60_000 }, (_, i) => `s/${((i * 2654435761) >>> 0).toString(36)}/${i}`);
  // Small batches, each a run, none paying for the merges.
  for (let at = 0; at < keys.length; at += 60) {
    index.insertBatch(keys, at, at + 60, 0);
    expect(index.runCount).toBeLessThanOrEqual(RUNS_MAX);
  }
  for (let at = 0; at < keys.length; at += 240) {
    index.removeBatch(keys, at, at + 120, 0);
    expect(index.runCount).toBeLessThanOrEqual(RUNS_MAX);
  }
  expect(index.size).toBe(30_000);
  const before = index.work;
  const page = scanned(index, "s/m", false, 100);
  expect(page.length).toBe(100);
  // Half of the keys dead (no budget to rewrite): about as many dead entries stepped over as live read.
  expect(index.work - before).toBeLessThanOrEqual(3 * 100 + 2 * RUNS_MAX);
});

test("removals of keys a merge already copied, and of keys it has not reached, while runs sit at every level", () => {
  const next = seededRandom(77);
  const index = new KeyRuns();
  const all: string[] = [];
  for (let i = 0; i < 40_000; i++) all.push(`m/${String(i).padStart(6, "0")}`);
  // Shuffled into batches of different sizes: runs of many levels, every job starved.
  const shuffled = all.slice();
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const present = new Set<string>();
  let at = 0;
  while (at < shuffled.length) {
    const n = Math.min(shuffled.length - at, 1 + Math.floor(next() * 3000));
    index.insertBatch(shuffled, at, at + n, 0);
    for (let k = at; k < at + n; k++) present.add(shuffled[k]!);
    at += n;
    index.advance(Math.floor(next() * 3000));
    expect(index.runCount).toBeLessThanOrEqual(RUNS_MAX);
  }
  // Jobs half done: remove every third key (some copied, some not), list between steps.
  let round = 0;
  while (index.pending && round < 400) {
    round++;
    const k = Math.floor(next() * all.length);
    for (let d = 0; d < 30; d++) {
      const key = all[(k + 3 * d) % all.length]!;
      if (present.delete(key)) index.removeBatch([key], 0, 1, 0);
    }
    index.advance(1 + Math.floor(next() * 500));
    if (round % 7 === 0) {
      const from = all[Math.floor(next() * all.length)]!;
      const want: string[] = [];
      for (let k = all.indexOf(from); k < all.length && want.length < 50; k++)
        if (present.has(all[k]!)) want.push(all[k]!);
      expect(scanned(index, from, false, 50)).toEqual(want);
    }
  }
  expect(round).toBeGreaterThan(100);
  index.advance(Number.POSITIVE_INFINITY);
  expect(index.pending).toBe(false);
  expect(index.keys()).toEqual(all.filter((key) => present.has(key)));
  expect(index.size).toBe(present.size);
});

test("all-dead runs: every key removed while jobs run, then re-added, leaves nothing stale", () => {
  const index = new KeyRuns();
  const keys = Array.from(
    { length: 20_000 },
    (_, i) => `d/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}`,
  );
  for (let at = 0; at < keys.length; at += 500) index.insertBatch(keys, at, at + 500, 37);
  expect(index.pending).toBe(true);
  for (let at = 0; at < keys.length; at += 250) index.removeBatch(keys, at, at + 250, 11);
  expect(index.size).toBe(0);
  expect(index.keys()).toEqual([]);
  // Half of them back before the jobs finish.
  const back = keys.filter((_, i) => i % 2 === 0);
  index.insertBatch(back, 0, back.length, 5);
  expect(index.keys()).toEqual(back.slice().sort(modelKeyOrder));
  index.advance(Number.POSITIVE_INFINITY);
  expect(index.keys()).toEqual(back.slice().sort(modelKeyOrder));
  expect(keys.every((key, i) => index.has(key) === (i % 2 === 0))).toBe(true);
  const before = index.work;
  index.keys();
  expect(index.work - before).toBeLessThanOrEqual(Math.ceil((4 / 3) * back.length) + 2 * index.runCount + 2);
});

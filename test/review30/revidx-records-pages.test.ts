/**
 * Review of lsm30 (stop 30): the lstore (RecordDB) through its ordered index — notes
 * folded into runs, merges of 2..k runs in slices — against a plain sorted model of the
 * keys present. Slices are run by hand between writes (ManualScheduler), a few at a time,
 * so pages, counts and continuations are read while folds and merges are half done.
 *
 * Pages: prefix, [from, to), from only, everything; limit and `after` continuation
 * resumed many writes and slices later; keysOnly or with values; counts. Keys: "" and
 * prefix chains, NUL, U+FFFF, lone and paired surrogates, U+10000+, and long keys up to
 * 32K code units (some 3 bytes a unit). Snapshots saved and loaded (into the same store,
 * slices of its old order still queued, or a fresh one), and dropOrder.
 *
 * And the slice bound (work units, OrderStats.maxSliceUnits): with keys under 64 code
 * units no slice does more than twice its sliceUnits.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KeyRange, ListPage } from "../../src/db/kvdb.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import {
  applyWrite,
  type Cursor,
  loadChunks,
  randomRange,
  resumeCursor,
  saveChunks,
} from "../support/kvdb-ops.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";

setDefaultTimeout(60_000);

const T0 = 1_700_000_000_000;
const UNITS = [
  "a",
  "b",
  "/",
  "\u0000",
  "\u007f",
  "é",
  "\u0800",
  "中",
  "\uffff",
  "😀",
  "\u{10000}",
  "\ud800",
  "\udbff",
  "\udfff",
  "\ue000",
];
const BOUNDS = [
  "",
  "\u0000",
  "a",
  "aa",
  "k/",
  "k/1",
  "k/5",
  "k/9",
  "L/",
  "L0",
  "t/",
  "t/b/",
  "é",
  "😀",
  "\ud83d",
  "\ud800",
  "\ue000",
  "\uffff",
  "z",
];
const PREFIXES = [
  "",
  "a",
  "aa",
  "k/",
  "k/1",
  "k/00",
  "L/",
  "t/",
  "t/a/",
  "é",
  "😀",
  "\ud83d",
  "\u0000",
  "\uffff",
];

function keyPool(next: () => number, longKeys: number): string[] {
  const pool = new Set<string>([
    "",
    "a",
    "aa",
    "aaa",
    "k",
    "k/",
    "\u0000",
    "\uffff",
    "\uffff\uffff",
    "\u{10000}",
    "\ud800",
  ]);
  for (let i = 0; i < 6000; i++) pool.add(`k/${String(Math.floor(next() * 100_000)).padStart(5, "0")}`);
  for (const t of ["a", "b", "c"])
    for (let i = 0; i < 1500; i++) pool.add(`t/${t}/${String(i).padStart(4, "0")}`);
  for (let i = 0; i < 1500; i++) {
    let key = ["", "a", "é", "😀", "\uffff", "k/1"][Math.floor(next() * 6)]!;
    const n = 1 + Math.floor(next() * 4);
    for (let u = 0; u < n; u++) key += UNITS[Math.floor(next() * UNITS.length)]!;
    pool.add(key);
  }
  for (let i = 0; i < longKeys; i++) {
    const len = 64 + Math.floor(next() * (32_768 - 64));
    const unit = ["x", "é", "中", "😀"][i % 4]!;
    pool.add(`L/${unit.repeat(Math.floor(len / unit.length))}/${i}`);
  }
  return [...pool].sort(modelKeyOrder);
}

function lowerRank(pool: readonly string[], bound: string): number {
  let lo = 0;
  let hi = pool.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (modelKeyOrder(pool[mid]!, bound) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface Done {
  lists: number;
  counts: number;
  loads: number;
  maxSliceUnits: number;
}

async function history(
  seed: number,
  sliceUnits: number | undefined,
  steps: number,
  longKeys: number,
): Promise<Done> {
  const next = seededRandom(seed);
  const pool = keyPool(next, longKeys);
  const rank = new Map<string, number>();
  for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
  const boundRank = new Map(BOUNDS.map((bound) => [bound, lowerRank(pool, bound)]));
  const scheduler = new ManualScheduler();
  const order =
    sliceUnits === undefined
      ? { schedule: scheduler.schedule }
      : { schedule: scheduler.schedule, sliceUnits };
  let db = new RecordDB({ order });
  /** The value byte of each present pool key (0: absent). */
  let present = new Uint8Array(pool.length);
  const cursors: Cursor[] = [];
  let lists = 0;
  let counts = 0;
  let loads = 0;
  let maxSliceUnits = 0;

  const expected = (
    range: KeyRange,
    after: string | undefined,
    limit: number,
  ): { keys: string[]; more: boolean } => {
    let lo = 0;
    let hi = pool.length;
    if (range.prefix === undefined) {
      if (range.from !== undefined) lo = boundRank.get(range.from)!;
      if (range.to !== undefined) hi = boundRank.get(range.to)!;
    } else {
      lo = lowerRank(pool, range.prefix);
    }
    if (after !== undefined) lo = Math.max(lo, rank.get(after)! + 1);
    const keys: string[] = [];
    for (let i = lo; i < hi; i++) {
      const key = pool[i]!;
      if (range.prefix !== undefined && !key.startsWith(range.prefix)) {
        if (modelKeyOrder(key, range.prefix) > 0) break;
        continue;
      }
      if (present[i] === 0) continue;
      if (keys.length === limit) return { keys, more: true };
      keys.push(key);
    }
    return { keys, more: false };
  };

  const comparePage = (step: number, range: KeyRange, after: string | undefined, limit: number): ListPage => {
    const keysOnly = next() < 0.5;
    const got = db.list({ ...range, after, limit, keysOnly }, T0);
    const want = expected(range, after, limit);
    const gotKeys = got.items.map((item) => item.key);
    const same =
      gotKeys.length === want.keys.length &&
      gotKeys.every((key, i) => key === want.keys[i]) &&
      got.more === want.more &&
      got.next === (want.more ? want.keys[want.keys.length - 1] : undefined);
    if (!same) {
      const i = gotKeys.findIndex((key, k) => key !== want.keys[k]);
      const short = (key: string | undefined): string | undefined =>
        key === undefined ? key : JSON.stringify(key.slice(0, 50));
      throw new Error(
        `seed ${seed} slice ${sliceUnits} step ${step}: list ${JSON.stringify(range)} after ${short(after)} limit ${limit}: at ${i} got ${short(gotKeys[i])} want ${short(want.keys[i])}; n ${gotKeys.length}/${want.keys.length} more ${got.more}/${want.more}`,
      );
    }
    if (!keysOnly) {
      for (const item of got.items) {
        const v = present[rank.get(item.key)!]!;
        if (item.value === undefined || item.value.length !== 1 || item.value[0] !== v)
          throw new Error(`seed ${seed} step ${step}: value of ${JSON.stringify(item.key.slice(0, 40))}`);
      }
    }
    lists++;
    return got;
  };

  const runSlices = (n: number): void => {
    for (let i = 0; i < n && scheduler.runOne(); i++);
  };
  /** A write to the engine and to `present` (the model: the value byte of each pool key). */
  const write = (k: number): void => {
    const v = 1 + Math.floor(next() * 200);
    applyWrite(db, { kind: "set", key: pool[k]!, value: v }, T0, (n) => Uint8Array.of(n));
    present[k] = v;
  };
  const remove = (k: number): void => {
    applyWrite(db, { kind: "delete", key: pool[k]! }, T0, (n) => Uint8Array.of(n));
    present[k] = 0;
  };
  const sliceStat = (): void => {
    maxSliceUnits = Math.max(maxSliceUnits, db.orderStats.maxSliceUnits);
  };

  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.4) write(Math.floor(next() * pool.length));
    else if (r < 0.52) remove(Math.floor(next() * pool.length));
    else if (r < 0.58) {
      // A burst: a stretch of neighbours written or removed, slices now and then.
      const start = Math.floor(next() * pool.length);
      const n = Math.floor(next() * 1500);
      const add = next() < 0.6;
      const every = 1 + Math.floor(next() * 300);
      for (let k = start; k < Math.min(pool.length, start + n); k++) {
        if (add) write(k);
        else remove(k);
        if (k % every === 0) runSlices(1 + Math.floor(next() * 3));
      }
    } else if (r < 0.66) runSlices(1 + Math.floor(next() * 20));
    else if (r < 0.662) runSlices(5000);
    else if (r < 0.7) {
      const range = randomRange(next, PREFIXES, BOUNDS);
      const page = comparePage(step, range, undefined, 1 + Math.floor(next() * 120));
      if (page.more && cursors.length < 40) cursors.push({ range, after: page.next! });
    } else if (r < 0.73 && cursors.length > 0) {
      resumeCursor(next, cursors, 120, (range, after, limit) => comparePage(step, range, after, limit));
    } else if (r < 0.74) {
      const range = randomRange(next, PREFIXES, BOUNDS);
      const a = db.count(range, T0);
      const b = expected(range, undefined, Number.MAX_SAFE_INTEGER).keys.length;
      if (a !== b) throw new Error(`seed ${seed} step ${step}: count ${JSON.stringify(range)} ${a} vs ${b}`);
      counts++;
    } else if (r < 0.75) {
      // The same key removed and re-added around slices.
      const k = Math.floor(next() * pool.length);
      for (let t = 1 + Math.floor(next() * 5); t > 0; t--) {
        remove(k);
        if (next() < 0.4) runSlices(1);
        write(k);
        if (next() < 0.4) runSlices(1);
      }
      if (next() < 0.5) remove(k);
    } else if (r < 0.7515) {
      sliceStat();
      const { chunks, saving } = saveChunks(db, T0);
      await saving;
      const atSave = present.slice();
      for (let i = Math.floor(next() * 100); i > 0; i--) write(Math.floor(next() * pool.length));
      runSlices(Math.floor(next() * 6));
      const target = next() < 0.5 ? db : new RecordDB({ order });
      await loadChunks(target, chunks);
      db = target;
      present = atSave;
      loads++;
      runSlices(Math.floor(next() * 6));
    } else if (r < 0.752) {
      sliceStat();
      db.dropOrder();
      runSlices(Math.floor(next() * 40));
    }
  }
  runSlices(Math.floor(next() * 10));
  comparePage(steps, {}, undefined, pool.length + 1);
  for (const prefix of PREFIXES) comparePage(steps, { prefix }, undefined, pool.length + 1);
  scheduler.drain();
  comparePage(steps, {}, undefined, pool.length + 1);
  sliceStat();
  return { lists, counts, loads, maxSliceUnits };
}

for (const [seed, sliceUnits, longKeys] of [
  [21, 16, 0],
  [22, 64, 30],
  [23, undefined, 0],
  [24, undefined, 60],
  [25, 256, 0],
] as const) {
  test(`lstore pages, continuations, counts = the model through folds and merges (seed ${seed}, sliceUnits ${sliceUnits ?? "default"}, ${longKeys} long keys)`, async () => {
    const done = await history(seed, sliceUnits, 14_000, longKeys);
    expect(done.lists).toBeGreaterThan(400);
    expect(done.counts).toBeGreaterThan(40);
    expect(done.loads).toBeGreaterThan(2);
    if (longKeys === 0 && sliceUnits === undefined) expect(done.maxSliceUnits).toBeLessThanOrEqual(2 * 4096);
  });
}

test("slices of an ingest of short keys stay within twice sliceUnits (work units), and the runs few", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  // Unbuilt until a reader comes: a reader now (the empty index built in a slice).
  void db.prepareOrder();
  scheduler.drain();
  expect(db.orderReady()).toBe(true);
  const value = Uint8Array.of(1);
  let pageWork = 0;
  let pages = 0;
  for (let i = 0; i < 200_000; i++) {
    db.set(`w/${((i * 2654435761) >>> 0).toString(36)}/${i}`, value, T0);
    if (i % 700 === 699) {
      scheduler.runOne();
      if (i % 14_000 === 13_999) {
        // A page of 100 mid-ingest (merges under way): a seek per run and the page.
        const before = db.orderWork;
        const got = db.list({ from: "w/m", to: "w/n", limit: 100, keysOnly: true }, T0);
        pages++;
        expect(got.items.length).toBe(100);
        pageWork = Math.max(pageWork, db.orderWork - before);
      }
    }
  }
  scheduler.drain();
  expect(db.orderStats.maxSliceUnits).toBeLessThanOrEqual(2 * 4096);
  expect(pages).toBe(14);
  expect(pageWork).toBeLessThanOrEqual(100 + 48 + 10);
  expect(db.orderStats.folded).toBeGreaterThanOrEqual(200_000);
  expect(db.orderStats.maxSliceUnits).toBeGreaterThan(1000);
  // A page of 100 from the middle reads about 100 keys and a seek per run.
  const before = db.orderWork;
  const page = db.list({ from: "w/m", to: "w/n", limit: 100, keysOnly: true }, T0);
  expect(page.items.length).toBe(100);
  expect(db.orderWork - before).toBeLessThanOrEqual(100 + 2 * 48 + 10);
});

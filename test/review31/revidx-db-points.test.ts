/**
 * Review of order31: MapleDB (blocks of strings) and RecordDB (runs of key bytes) through
 * their ordered index, against the plain model (test/support/model-kvdb.ts), with pages,
 * continuations and counts read at every point of a fold: slices run one at a time by hand
 * (ManualScheduler) and a read may follow any of them.
 *
 * Keys: 32 KB ones (sharing 32 KB, prefixes of each other, 3- and 4-byte units) mixed with
 * short ones, "", NUL, U+00FF, U+FFFF runs, surrogates. Ranges: prefix (long prefixes
 * too), [from, to) with bounds inside the long keys' shared bytes, from only, all; `after`
 * continuations resumed many writes and slices later. Writes: sets, deletes and re-sets of
 * one key between slices, setE with expiries and delete deadlines as time moves, purges,
 * bursts of long keys; snapshots saved while notes wait (writes during the save) and loaded
 * into the same store (its old order's slices still queued) or a fresh one; dropOrder.
 *
 * Pages already returned are kept with deep copies of their keys: a later fold or merge
 * (order31 reuses merge buffers) must not change them.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KeyRange, KVDB, ListPage } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import {
  applyWriteToEach,
  type Cursor,
  loadChunks,
  purgeEach,
  randomRange,
  randomSetE,
  resumeCursor,
  saveChunks,
  type WriteOp,
} from "../support/kvdb-ops.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { brief, LONG, longKeys, lowerBoundModel, ODD, shortKeys, sortedPool } from "./keys.ts";

setDefaultTimeout(240_000);

const T0 = 1_700_000_000_000;
type Engine = "maple" | "records";

async function history(engine: Engine, seed: number, sliceUnits: number | undefined, steps: number) {
  const next = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const longs = longKeys(36);
  const pool = sortedPool([...ODD, ...longs, ...shortKeys(500, next)]);
  const rank = new Map<string, number>();
  for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
  const x = "x".repeat(LONG - 16);
  const bounds = [
    "",
    "\u0000",
    "\u0001",
    "L/",
    `L/${x.slice(0, 1000)}`,
    `L/${x.slice(0, x.length - 50)}`,
    `L/${x}`,
    `L/${x}000010`,
    "M/",
    "M/0010/",
    "N/",
    "N/😀😀",
    "N/\ud83d",
    "k/",
    "k/00020",
    "u/",
    "é",
    "\u00ff",
    "\uffff",
    `\uffff${x}`,
    "\ud800",
    "\udfff",
    "P/",
    "P/\udc00",
    `P/${x}`,
    "y".repeat(64),
  ];
  const prefixes = [
    "",
    "\u0000",
    "L/",
    `L/${x.slice(0, 2000)}`,
    `L/${x}`,
    `L/${x}00001`,
    "M/00",
    "N/😀",
    "N/\ud83d",
    "k/000",
    "\uffff",
    `\uffff${x.slice(0, 100)}`,
    "é/",
    "a",
    "P/",
    `P/${x.slice(0, 4000)}`,
    "y".repeat(63),
  ];
  const boundRank = new Map<string, number>();
  for (const bound of bounds) boundRank.set(bound, lowerBoundModel(pool, bound));
  const scheduler = new ManualScheduler();
  const order =
    sliceUnits === undefined
      ? { schedule: scheduler.schedule }
      : { schedule: scheduler.schedule, sliceUnits };
  const make = (): KVDB =>
    engine === "records" ? new RecordDB({ order }) : new MapleDB({ shards: 4, order });
  let db = make();
  let model = new ModelKVDB();
  let now = T0;
  const values = [Uint8Array.of(1), Uint8Array.of(2, 2), new Uint8Array(40).fill(3)];
  const cursors: Cursor[] = [];
  const kept: { keys: string[]; copy: string[] }[] = [];
  let lists = 0;
  let counts = 0;
  let loads = 0;

  const expected = (range: KeyRange, after: string | undefined, limit: number): ListPage => {
    let lo = 0;
    let hi = pool.length;
    if (range.prefix === undefined) {
      if (range.from !== undefined) lo = boundRank.get(range.from)!;
      if (range.to !== undefined) hi = boundRank.get(range.to)!;
    } else lo = lowerBoundModel(pool, range.prefix);
    if (after !== undefined) lo = Math.max(lo, rank.get(after)! + 1);
    const items = [];
    let more = false;
    for (let i = lo; i < hi; i++) {
      const key = pool[i]!;
      if (range.prefix !== undefined && !key.startsWith(range.prefix)) {
        if (i > lo && pool[i - 1]!.startsWith(range.prefix)) break;
        continue;
      }
      const entry = model.getEntry(key, now);
      if (entry === undefined) continue;
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(entry);
    }
    return more ? { items, more, next: items[items.length - 1]!.key } : { items, more };
  };
  const where = (step: number, what: string, extra: unknown): string =>
    `${engine} seed ${seed} slice ${sliceUnits} step ${step}: ${what} ${JSON.stringify(extra).slice(0, 1500)}`;

  const comparePage = (step: number, range: KeyRange, after: string | undefined, limit: number): ListPage => {
    const keysOnly = next() < 0.5;
    const got = db.list({ ...range, after, limit, keysOnly }, now);
    const want = expected(range, after, limit);
    const gotKeys = got.items.map((item) => item.key);
    const wantKeys = want.items.map((item) => item.key);
    if (
      gotKeys.length !== wantKeys.length ||
      gotKeys.some((key, i) => key !== wantKeys[i]) ||
      got.more !== want.more ||
      got.next !== want.next
    )
      throw new Error(
        where(step, "list", {
          range: brief(Object.values(range)),
          after: after === undefined ? undefined : brief([after]),
          limit,
          got: brief(gotKeys),
          want: brief(wantKeys),
          more: [got.more, want.more],
        }),
      );
    if (!keysOnly)
      for (let k = 0; k < got.items.length; k++) {
        const a = got.items[k]!;
        const b = want.items[k]!;
        if (
          a.version !== b.version ||
          a.modRevision !== b.modRevision ||
          Buffer.compare(Buffer.from(a.value!), Buffer.from(b.value!)) !== 0
        )
          throw new Error(where(step, "entry", { key: brief([a.key]) }));
      }
    if (next() < 0.05 && kept.length < 64) kept.push({ keys: gotKeys, copy: gotKeys.map((key) => `${key}`) });
    lists++;
    return got;
  };
  const read = (step: number): void => {
    const r = next();
    if (r < 0.55) {
      const range = randomRange(next, prefixes, bounds, 0.4);
      const page = comparePage(step, range, undefined, 1 + Math.floor(next() * 30));
      if (page.more && cursors.length < 30) cursors.push({ range, after: page.next! });
    } else if (r < 0.8 && cursors.length > 0) {
      resumeCursor(next, cursors, 30, (range, after, limit) => comparePage(step, range, after, limit));
    } else {
      const range = randomRange(next, prefixes, bounds, 0.4);
      const a = db.count(range, now);
      const b = expected(range, undefined, Number.MAX_SAFE_INTEGER).items.length;
      if (a !== b) throw new Error(where(step, "count", { range: brief(Object.values(range)), a, b }));
      counts++;
    }
  };
  const runSlices = (n: number, step: number, readEach: number): void => {
    for (let i = 0; i < n && scheduler.runOne(); i++) if (next() < readEach) read(step);
  };
  const valueAt = (n: number): Uint8Array => values[n]!;
  const apply = (step: WriteOp): void => applyWriteToEach([db, model], step, now, valueAt);
  const write = (key: string): void => apply({ kind: "set", key, value: Math.floor(next() * values.length) });
  const remove = (key: string): void => apply({ kind: "delete", key });

  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.3) write(pick(pool));
    else if (r < 0.4) remove(pick(pool));
    else if (r < 0.44) {
      apply(randomSetE(next, pick(pool), values.length));
    } else if (r < 0.46) now += Math.floor(next() * 25);
    else if (r < 0.465) {
      const max = Math.floor(next() * 50);
      purgeEach([db, model], now, max, (counts) => where(step, "purge", counts));
    } else if (r < 0.5) {
      // A burst of long keys (set, some deleted, some with deadlines), no slice between.
      const n = 1 + Math.floor(next() * 30);
      for (let i = 0; i < n; i++) {
        const key = pick(longs);
        const q = next();
        if (q < 0.65) write(key);
        else if (q < 0.9) remove(key);
        else apply({ kind: "setE", key, value: 0, expireIn: 5, deleteIn: 10 });
      }
    } else if (r < 0.54) {
      // One key deleted and set again around slices (long half the time).
      const key = next() < 0.5 ? pick(longs) : pick(pool);
      const times = 1 + Math.floor(next() * 5);
      for (let i = 0; i < times; i++) {
        remove(key);
        if (next() < 0.4) runSlices(1, step, 0.3);
        write(key);
        if (next() < 0.4) runSlices(1, step, 0.3);
      }
      if (next() < 0.5) remove(key);
    } else if (r < 0.78) runSlices(1 + Math.floor(next() * 6), step, 0.3);
    else if (r < 0.79) runSlices(100_000, step, 0.01);
    else if (r < 0.9) read(step);
    else if (r < 0.902) {
      const { chunks, saving } = saveChunks(db, now);
      const modelAtSave = model.copy();
      const during: [string, boolean][] = [];
      for (let i = Math.floor(next() * 60); i > 0; i--) during.push([pick(pool), next() < 0.6]);
      for (const [key, add] of during) {
        if (add) write(key);
        else remove(key);
      }
      runSlices(Math.floor(next() * 6), step, 0.3);
      await saving;
      const target = next() < 0.5 ? db : make();
      runSlices(Math.floor(next() * 6), step, 0.3);
      await loadChunks(target, chunks);
      db = target;
      model = modelAtSave;
      loads++;
      cursors.length = 0;
      if (next() < 0.5)
        for (const [key, add] of during) {
          if (add) write(key);
          else remove(key);
        }
      runSlices(Math.floor(next() * 6), step, 0.3);
    } else if (r < 0.903) {
      db.dropOrder();
      runSlices(Math.floor(next() * 20), step, 0.2);
    }
  }
  runSlices(Math.floor(next() * 10), steps, 0.3);
  comparePage(steps, {}, undefined, pool.length + 1);
  scheduler.drain();
  comparePage(steps, {}, undefined, pool.length + 1);
  for (const prefix of prefixes) comparePage(steps, { prefix }, undefined, pool.length + 1);
  for (const { keys, copy } of kept) expect(keys).toEqual(copy);
  return { lists, counts, loads, kept: kept.length };
}

const CASES: [Engine, number, number | undefined][] = [
  ["records", 31_101, 64],
  ["records", 31_102, undefined],
  ["maple", 31_103, 64],
  ["maple", 31_104, undefined],
];

for (const [engine, seed, sliceUnits] of CASES) {
  test(`${engine} (sliceUnits ${sliceUnits ?? "default"}, seed ${seed}): pages, continuations and counts at every slice point match the model (32 KB keys, expiries, snapshots)`, async () => {
    const done = await history(engine, seed, sliceUnits, 5000);
    expect(done.lists).toBeGreaterThan(300);
    expect(done.counts).toBeGreaterThan(50);
    expect(done.loads).toBeGreaterThan(2);
    expect(done.kept).toBeGreaterThan(5);
  });
}

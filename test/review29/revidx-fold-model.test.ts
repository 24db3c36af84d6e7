/**
 * Review of lsm29 (issue 12: the lstore's ordered index as runs of key bytes, removals
 * marking entries dead, merges/rewrites/conversions in slices): long random histories
 * against the plain model (test/support/model-kvdb.ts), with the index's slices run by
 * hand between writes, as the event loop runs them between requests.
 *
 * What the histories aim at:
 * - lists, counts and continuations taken while folds, merges and rewrites are half done
 *   (a small `sliceUnits` cuts every fold and merge into many slices; a page resumed
 *   across many slices and swaps);
 * - a whole tenant deleted (a long stretch of the oldest entries dead), some of it re-added
 *   while the slices that follow run, and removals and re-adds of the same keys before
 *   their notes are folded;
 * - keys that prefix each other, the empty key, NUL, 2- and 3-byte units, paired and lone
 *   surrogates, long keys;
 * - snapshots saved while notes wait to be folded, with writes during the save, loaded into
 *   the same database (its old order's slices still queued) or a fresh one;
 * - dropOrder with slices queued (a later list builds again).
 *
 * The expected list is the model's, computed the same way model.list does (every live key in
 * range, in modelKeyOrder) but over a key pool sorted once, so a history can be long.
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
import { ModelKVDB, modelKeyOrder } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { soak } from "../support/soak.ts";

setDefaultTimeout(240_000);

const T0 = 1_700_000_000_000;
const TENANTS = ["a", "b", "c", "d"];
const TENANT_KEYS = 2500;
const UNITS = [
  "a",
  "b",
  "/",
  "\u0000",
  "\u007f",
  "é",
  "\u07ff",
  "\u0800",
  "中",
  "\ud7ff",
  "\ue000",
  "\uffff",
  "😀",
  "𝄞",
  "\ud800",
  "\udbff",
  "\udc00",
  "\udfff",
];

function tenantKey(tenant: string, i: number): string {
  return `t/${tenant}/${String(i).padStart(5, "0")}`;
}

/** The keys a history writes: tenants' ranges, numbered keys, prefix chains and odd units. */
function keyPool(next: () => number): string[] {
  const pool = new Set<string>(["", "a", "aa", "aaa", "aaaa", "t", "t/", "t/a", "t/a/", "\u0000", "\uffff"]);
  for (const tenant of TENANTS) for (let i = 0; i < TENANT_KEYS; i++) pool.add(tenantKey(tenant, i));
  for (let i = 0; i < 6000; i++) pool.add(`u/${String(Math.floor(next() * 20000)).padStart(5, "0")}`);
  for (let i = 0; i < 60; i++) pool.add(`long/${"x".repeat(100 + Math.floor(next() * 400))}${i}`);
  for (let i = 0; i < 3000; i++) {
    let key = ["", "a", "é/", "😀/", "\ue000/", "t/a/0", "u/1"][Math.floor(next() * 7)]!;
    const n = 1 + Math.floor(next() * 4);
    for (let u = 0; u < n; u++) key += UNITS[Math.floor(next() * UNITS.length)]!;
    pool.add(key);
  }
  return [...pool].sort(modelKeyOrder);
}

const BOUNDS = [
  "",
  "\u0000",
  "\u0001",
  "a",
  "aa",
  "t/",
  "t/a/",
  "t/b/",
  "t/b/01000",
  "t/c/",
  "t/d/02499",
  "t/e",
  "u/",
  "u/1",
  "u/15000",
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
  "t/",
  "t/a/",
  "t/b/",
  "t/c/0",
  "t/d/024",
  "u/",
  "u/1",
  "long/",
  "é/",
  "😀",
  "\ud83d",
  "\u0000",
  "\ue000/",
];

type Engine = "records" | "maple";

async function history(
  engine: Engine,
  seed: number,
  sliceUnits: number | undefined,
  steps: number,
): Promise<{ lists: number; counts: number; loads: number }> {
  const next = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const pool = keyPool(next);
  const rank = new Map<string, number>();
  for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
  /** Pool keys before `bound` (modelKeyOrder). */
  const boundRank = new Map<string, number>();
  for (const bound of BOUNDS) {
    let lo = 0;
    let hi = pool.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (modelKeyOrder(pool[mid]!, bound) < 0) lo = mid + 1;
      else hi = mid;
    }
    boundRank.set(bound, lo);
  }
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
  const values = [Uint8Array.of(1), Uint8Array.of(2, 2), new Uint8Array(50).fill(3)];
  const cursors: Cursor[] = [];
  let lists = 0;
  let counts = 0;
  let loads = 0;

  const expected = (range: KeyRange, after: string | undefined, limit: number): ListPage => {
    let lo = 0;
    let hi = pool.length;
    if (range.prefix === undefined) {
      if (range.from !== undefined) lo = boundRank.get(range.from)!;
      if (range.to !== undefined) hi = boundRank.get(range.to)!;
    }
    if (after !== undefined) lo = Math.max(lo, rank.get(after)! + 1);
    const items = [];
    let more = false;
    for (let i = lo; i < hi; i++) {
      const key = pool[i]!;
      if (range.prefix !== undefined && !key.startsWith(range.prefix)) continue;
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
    `${engine} seed ${seed} slice ${sliceUnits} step ${step}: ${what} ${JSON.stringify(extra).slice(0, 600)}`;

  const comparePage = (step: number, range: KeyRange, after: string | undefined, limit: number): ListPage => {
    const keysOnly = next() < 0.5;
    const got = db.list({ ...range, after, limit, keysOnly }, now);
    const want = expected(range, after, limit);
    const gotKeys = got.items.map((item) => item.key);
    const wantKeys = want.items.map((item) => item.key);
    if (
      JSON.stringify(gotKeys) !== JSON.stringify(wantKeys) ||
      got.more !== want.more ||
      got.next !== want.next
    ) {
      const i = gotKeys.findIndex((key, k) => key !== wantKeys[k]);
      throw new Error(
        where(step, "list", {
          range,
          after,
          limit,
          at: i,
          got: gotKeys.slice(Math.max(0, i - 1), i + 3),
          want: wantKeys.slice(Math.max(0, i - 1), i + 3),
          n: [gotKeys.length, wantKeys.length],
          more: [got.more, want.more],
        }),
      );
    }
    if (!keysOnly) {
      for (let k = 0; k < got.items.length; k++) {
        const a = got.items[k]!;
        const b = want.items[k]!;
        if (
          a.version !== b.version ||
          a.createRevision !== b.createRevision ||
          a.modRevision !== b.modRevision ||
          a.value === undefined ||
          Buffer.compare(Buffer.from(a.value), Buffer.from(b.value!)) !== 0
        )
          throw new Error(where(step, "entry", { a, b }));
      }
    }
    lists++;
    return got;
  };

  const runSlices = (n: number): void => {
    for (let i = 0; i < n && scheduler.runOne(); i++);
  };

  const valueAt = (n: number): Uint8Array => values[n]!;
  const apply = (step: WriteOp): void => applyWriteToEach([db, model], step, now, valueAt);
  const write = (key: string): void => apply({ kind: "set", key, value: Math.floor(next() * values.length) });
  const remove = (key: string): void => apply({ kind: "delete", key });

  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.36) write(pick(pool));
    else if (r < 0.5) remove(pick(pool));
    else if (r < 0.54) {
      apply(randomSetE(next, pick(pool), values.length));
    } else if (r < 0.55) now += Math.floor(next() * 25);
    else if (r < 0.555) {
      const max = Math.floor(next() * 300);
      purgeEach([db, model], now, max, (counts) => where(step, "purge", counts));
    } else if (r < 0.62) runSlices(1 + Math.floor(next() * 24));
    else if (r < 0.625) runSlices(2000);
    else if (r < 0.64) {
      const range = randomRange(next, PREFIXES, BOUNDS);
      const page = comparePage(step, range, undefined, 1 + Math.floor(next() * 80));
      if (page.more && cursors.length < 40) cursors.push({ range, after: page.next! });
    } else if (r < 0.66 && cursors.length > 0) {
      // A page resumed many writes, slices and swaps after the one before it.
      resumeCursor(next, cursors, 80, (range, after, limit) => comparePage(step, range, after, limit));
    } else if (r < 0.665) {
      const range = randomRange(next, PREFIXES, BOUNDS);
      const a = db.count(range, now);
      const b = expected(range, undefined, Number.MAX_SAFE_INTEGER).items.length;
      if (a !== b) throw new Error(where(step, "count", { range, a, b }));
      counts++;
    } else if (r < 0.668) {
      // A tenant deleted key by key (its oldest entries dead), the slices running now and then.
      const tenant = pick(TENANTS);
      const every = 1 + Math.floor(next() * 600);
      for (let i = 0; i < TENANT_KEYS; i++) {
        remove(tenantKey(tenant, i));
        if (i % every === every - 1) runSlices(1 + Math.floor(next() * 4));
      }
      if (next() < 0.5) comparePage(step, { prefix: "t/" }, undefined, 1 + Math.floor(next() * 50));
    } else if (r < 0.674) {
      // A stretch of a tenant re-added (or deleted), slices in between: entries dead and
      // live again while merges and rewrites of the runs that hold them are half done.
      const tenant = pick(TENANTS);
      const start = Math.floor(next() * TENANT_KEYS);
      const n = Math.floor(next() * 800);
      const add = next() < 0.6;
      const every = 1 + Math.floor(next() * 200);
      for (let i = start; i < Math.min(TENANT_KEYS, start + n); i++) {
        if (add) write(tenantKey(tenant, i));
        else remove(tenantKey(tenant, i));
        if (i % every === 0) runSlices(1 + Math.floor(next() * 3));
      }
    } else if (r < 0.68) {
      // The same keys removed and written again before and after their notes are folded.
      const key = pick(pool);
      const times = 1 + Math.floor(next() * 6);
      for (let i = 0; i < times; i++) {
        remove(key);
        if (next() < 0.3) runSlices(1);
        write(key);
        if (next() < 0.3) runSlices(1);
      }
      if (next() < 0.5) remove(key);
    } else if (r < 0.6805) {
      // A snapshot of this instant, writes during the save, loaded into the same database
      // (its old order's slices still queued) or a fresh one.
      const { chunks, saving } = saveChunks(db, now);
      // The model has no snapshot format: a copy of it at this instant.
      const modelAtSave = model.copy();
      const during = Math.floor(next() * 200);
      const writesDuring: [string, boolean][] = [];
      for (let i = 0; i < during; i++) writesDuring.push([pick(pool), next() < 0.6]);
      for (const [key, add] of writesDuring) {
        if (add) write(key);
        else remove(key);
      }
      runSlices(Math.floor(next() * 8));
      await saving;
      const target = next() < 0.5 ? db : make();
      runSlices(Math.floor(next() * 8));
      await loadChunks(target, chunks);
      db = target;
      model = modelAtSave;
      loads++;
      // The writes made during the save are not in the snapshot: write them again.
      if (next() < 0.5) {
        for (const [key, add] of writesDuring) {
          if (add) write(key);
          else remove(key);
        }
      }
      runSlices(Math.floor(next() * 8));
    } else if (r < 0.6815) {
      db.dropOrder();
      runSlices(Math.floor(next() * 30));
    }
  }
  // Everything, and every prefix of the pool's ranges, at the end.
  runSlices(Math.floor(next() * 10));
  comparePage(steps, {}, undefined, pool.length + 1);
  for (const prefix of PREFIXES) comparePage(steps, { prefix }, undefined, pool.length + 1);
  scheduler.drain();
  comparePage(steps, {}, undefined, pool.length + 1);
  return { lists, counts, loads };
}

const CASES: [Engine, number, number | undefined][] = [
  ["records", 1, 16],
  ["records", 2, 64],
  ["records", 3, undefined],
  ["records", 4, 256],
  ["maple", 5, 16],
  ["maple", 6, 128],
  ["maple", 7, undefined],
];

for (const [engine, seed, sliceUnits] of CASES) {
  test(`${engine} (sliceUnits ${sliceUnits ?? "default"}, seed ${seed}): lists, counts and continuations match the model through folds, merges, tenant deletes, snapshots`, async () => {
    const steps = soak(10_000, 40_000);
    const done = await history(engine, seed, sliceUnits, steps);
    // The history did what it is for.
    expect(done.lists).toBeGreaterThan(steps / 80);
    expect(done.counts).toBeGreaterThan(steps / 800);
    expect(done.loads).toBeGreaterThan(soak(1, 3));
  });
}

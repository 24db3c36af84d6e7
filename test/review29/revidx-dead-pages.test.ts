/**
 * Review of lsm29: a page of N keys costs O(log n + N) (interfaces.md, Data API) after
 * removals of keys the oldest runs hold, wherever the removed stretch lies (before, inside,
 * after or across the page's range; the last keys of the index), however the removals were
 * interleaved with the slices, and whatever is re-added inside the stretch afterwards.
 * Work is counted (RecordDB.orderWork: entries read and runs sought), not timed.
 *
 * On lsm28 (8237e59, this branch's start) a removal of a key in the oldest run is a
 * tombstone in a newer run until a merge into the oldest run, so every page crossing the
 * removed stretch reads each tombstone and the entry it hides.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";

setDefaultTimeout(180_000);

const LIMIT = 100;
/**
 * Most entries a page of LIMIT keys may read: the keys it visits (LIMIT + 1), a seek per
 * run, and slack for a constant number of dead or hidden entries per visited key (as in
 * test/review28/revidx-tombstone-pages.test.ts). Independent of the keys in the store.
 */
const PAGE_WORK_MAX = 4 * (LIMIT + 1) + 64;
/** Most an empty page (or a count of an emptied range) may read: seeks and a boundary's worth. */
const EMPTY_WORK_MAX = 200;

const N = 40_000;
const value = bytes("v");

function key(tenant: string, i: number): string {
  return `t/${tenant}/${String(i).padStart(6, "0")}`;
}

/** A RecordDB holding tenants a, b and c (N keys each), listed once (the index is built and settled). */
function threeTenants(scheduler: ManualScheduler): RecordDB {
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  for (let i = 0; i < N; i++) for (const tenant of ["a", "b", "c"]) db.set(key(tenant, i), value, T0);
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  return db;
}

/** Deletes tenant `tenant` key by key, a slice every `every` deletes (as requests give turns), then lets the slices finish. */
function deleteTenant(db: RecordDB, scheduler: ManualScheduler, tenant: string, every: number): void {
  for (let i = 0; i < N; i++) {
    db.delete(key(tenant, i), T0);
    if (i % every === every - 1) scheduler.runOne();
  }
  scheduler.drain();
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
}

function pageWork(db: RecordDB, options: Parameters<RecordDB["list"]>[0]): { keys: string[]; work: number } {
  const before = db.orderWork;
  const page = db.list({ keysOnly: true, ...options }, T0);
  return { keys: page.items.map((item) => item.key), work: db.orderWork - before };
}

function countWork(db: RecordDB, range: Parameters<RecordDB["count"]>[0]): { count: number; work: number } {
  const before = db.orderWork;
  const count = db.count(range, T0);
  return { count, work: db.orderWork - before };
}

test("the middle tenant deleted: pages into, across and after its stretch read O(page) entries", () => {
  const scheduler = new ManualScheduler();
  const db = threeTenants(scheduler);
  deleteTenant(db, scheduler, "b", 700);
  // A page that starts in the dead stretch.
  const into = pageWork(db, { prefix: "t/", after: key("b", 10), limit: LIMIT });
  expect(into.keys[0]).toBe(key("c", 0));
  expect(into.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
  // A page that crosses it: the last 50 of a, then c.
  const across = pageWork(db, { prefix: "t/", after: key("a", N - 51), limit: LIMIT });
  expect(across.keys[49]).toBe(key("a", N - 1));
  expect(across.keys[50]).toBe(key("c", 0));
  expect(across.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
  // The dead tenant's own range: empty, and so is its count.
  const own = pageWork(db, { prefix: "t/b/", limit: LIMIT });
  expect(own.keys).toEqual([]);
  expect(own.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
  const counted = countWork(db, { prefix: "t/b/" });
  expect(counted.count).toBe(0);
  expect(counted.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
});

test("the last tenant deleted (the index's last keys dead): an empty page and a count past the live keys read O(log n)", () => {
  const scheduler = new ManualScheduler();
  const db = threeTenants(scheduler);
  deleteTenant(db, scheduler, "c", 1000);
  const own = pageWork(db, { prefix: "t/c/", limit: LIMIT });
  expect(own.keys).toEqual([]);
  expect(own.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
  const tail = pageWork(db, { from: key("b", N - 10), limit: LIMIT });
  expect(tail.keys.length).toBe(10);
  expect(tail.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
  const counted = countWork(db, { from: "t/c/" });
  expect(counted.count).toBe(0);
  expect(counted.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
});

test("a tenant deleted, then one key in every 500 re-added: pages through the stretch read O(page) entries each", () => {
  const scheduler = new ManualScheduler();
  const db = threeTenants(scheduler);
  deleteTenant(db, scheduler, "b", 300);
  for (let i = 0; i < N; i += 500) db.set(key("b", i), value, T0);
  scheduler.drain();
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  // N / 500 = 80 live keys in b: the page is them and 20 of c.
  const page = pageWork(db, { prefix: "t/b/", limit: LIMIT });
  expect(page.keys.length).toBe(N / 500);
  const through = pageWork(db, { from: "t/b/", limit: LIMIT });
  expect(through.keys[N / 500]).toBe(key("c", 0));
  // Every live key of b sits among 499 dead ones: a scan that skips no dead stretch reads ~N.
  expect(page.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
  expect(through.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
});

test("all but one key in 64 deleted everywhere, in random order with slices between: a page reads O(page) entries", () => {
  const scheduler = new ManualScheduler();
  const db = threeTenants(scheduler);
  const next = seededRandom(29);
  const doomed: string[] = [];
  for (const tenant of ["a", "b", "c"])
    for (let i = 0; i < N; i++) if (i % 64 !== 7) doomed.push(key(tenant, i));
  for (let i = doomed.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [doomed[i], doomed[j]] = [doomed[j]!, doomed[i]!];
  }
  for (let i = 0; i < doomed.length; i++) {
    db.delete(doomed[i]!, T0);
    if (i % 900 === 899) scheduler.runOne();
  }
  scheduler.drain();
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  expect(db.count({ prefix: "t/" }, T0)).toBe(3 * Math.ceil((N - 7) / 64));
  // 98% of the entries dead: past any sensible dead fraction, so the runs are rewritten.
  const page = pageWork(db, { prefix: "t/b/", limit: LIMIT });
  expect(page.keys[0]).toBe(key("b", 7));
  expect(page.keys[1]).toBe(key("b", 71));
  expect(page.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
});

test("a walk of pages over a store whose first half was deleted reads O(pages · page) entries in all", () => {
  const scheduler = new ManualScheduler();
  const db = threeTenants(scheduler);
  deleteTenant(db, scheduler, "a", 500);
  const half = N / 2;
  for (let i = 0; i < half; i++) db.delete(key("b", i), T0);
  scheduler.drain();
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  const before = db.orderWork;
  let after: string | undefined;
  let pages = 0;
  let seen = 0;
  for (; pages < 20; pages++) {
    const page = db.list({ prefix: "t/", after, limit: LIMIT, keysOnly: true }, T0);
    if (pages === 0) expect(page.items[0]!.key).toBe(key("b", half));
    seen += page.items.length;
    after = page.next;
  }
  expect(seen).toBe(20 * LIMIT);
  expect(db.orderWork - before).toBeLessThanOrEqual(20 * PAGE_WORK_MAX);
});

test("a fifth of the store deleted (under a rewrite's dead share): a page across the dead stretch reads O(page) entries", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const tenants = ["a", "b", "c", "d", "e"];
  for (let i = 0; i < N; i++) for (const tenant of tenants) db.set(key(tenant, i), value, T0);
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  deleteTenant(db, scheduler, "c", 800);
  // The run keeps its dead stretch (20% dead): the scan steps over it a group or block at a time.
  const across = pageWork(db, { prefix: "t/", after: key("b", N - 51), limit: LIMIT });
  expect(across.keys[49]).toBe(key("b", N - 1));
  expect(across.keys[50]).toBe(key("d", 0));
  expect(across.work).toBeLessThanOrEqual(PAGE_WORK_MAX);
  const own = countWork(db, { prefix: "t/c/" });
  expect(own.count).toBe(0);
  expect(own.work).toBeLessThanOrEqual(EMPTY_WORK_MAX);
});

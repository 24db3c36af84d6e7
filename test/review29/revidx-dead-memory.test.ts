/**
 * Review of lsm29: the memory of removed keys' entries is given back once the slices have
 * run (a run past its dead fraction is rewritten), and nothing of the runs merged or
 * rewritten away stays held.
 *
 * Measured as the heap the ordered index holds: the heap after a full collection with the
 * index, minus the heap after `dropOrder` (the index let go, the records kept) and another
 * full collection. Compared with the same store's index before the removals.
 *
 * On lsm28 (8237e59, this branch's start) the removed keys' entries stay in the oldest run
 * and their tombstones in newer runs: the index grows on removal.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(180_000);

const N = 100_000;
const TENANTS = ["a", "b", "c", "d"];
const value = bytes("v");

function key(tenant: string, i: number): string {
  return `tenant/${tenant}/user/${String(i).padStart(8, "0")}`;
}

function heapAfterCollection(): number {
  Bun.gc(true);
  Bun.gc(true);
  return process.memoryUsage().heapUsed;
}

/** Bytes of heap the order of `db` holds now (the order is dropped to measure it). */
function indexBytes(db: RecordDB): number {
  const withIndex = heapAfterCollection();
  db.dropOrder();
  return withIndex - heapAfterCollection();
}

function listed(scheduler: ManualScheduler): RecordDB {
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  for (let i = 0; i < N; i++) for (const tenant of TENANTS) db.set(key(tenant, i), value, T0);
  db.list({ prefix: "tenant/", limit: 1 }, T0);
  scheduler.drain();
  // A little churn, so the index is not one pristine run.
  for (let i = 0; i < 5000; i++) {
    db.delete(key("d", i), T0);
    db.set(key("d", i), value, T0);
    if (i % 1000 === 999) scheduler.runOne();
  }
  scheduler.drain();
  db.list({ prefix: "tenant/", limit: 1 }, T0);
  scheduler.drain();
  return db;
}

test("three tenants of four deleted: the index gives back most of their entries' memory once the slices ran", () => {
  const before = (() => {
    const scheduler = new ManualScheduler();
    const db = listed(scheduler);
    return indexBytes(db);
  })();
  const scheduler = new ManualScheduler();
  const db = listed(scheduler);
  for (const tenant of ["a", "b", "c"]) {
    for (let i = 0; i < N; i++) {
      db.delete(key(tenant, i), T0);
      if (i % 1000 === 999) scheduler.runOne();
    }
  }
  scheduler.drain();
  expect(db.list({ prefix: "tenant/", limit: 1 }, T0).items[0]!.key).toBe(key("d", 0));
  scheduler.drain();
  expect(db.count({ prefix: "tenant/" }, T0)).toBe(N);
  const after = indexBytes(db);
  // 400k keys of 28 bytes: several MiB of runs; a quarter of it left is the ideal.
  expect(before).toBeGreaterThan(4 * 2 ** 20);
  expect(after).toBeLessThan(0.5 * before);
});

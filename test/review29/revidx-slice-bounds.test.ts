/**
 * Review of lsm29: the index's upkeep after removals and during a long ingest stays in
 * slices of a few ms (deferred-order.ts, SLICE_UNITS), and a list taken when the store
 * says the order is ready (what LocalStore waits for) does not finish a merge or a rewrite
 * in its own turn.
 *
 * Timed, with wide margins as in test/review28/revidx-slice-stall.test.ts: the bounds are
 * 10-25x the design's few ms.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { drainTimed } from "../support/longest-turn.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(300_000);

const SLICE_MS_MAX = 50;
const value = bytes("v");

function key(tenant: string, i: number): string {
  return `t/${tenant}/${String((i * 2654435761) % 4294967296).padStart(10, "0")}/${i}`;
}

test("deleting half of a listed 1M-key store (a tenant) never takes a long slice, nor does a ready list after", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const N = 500_000;
  for (let i = 0; i < N; i++) {
    db.set(key("a", i), value, T0);
    db.set(key("b", i), value, T0);
  }
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  let longestSlice = 0;
  let longestList = 0;
  let lists = 0;
  for (let i = 0; i < N; i++) {
    db.delete(key("a", i), T0);
    if (i % 1000 === 999) {
      const t = performance.now();
      scheduler.runOne();
      longestSlice = Math.max(longestSlice, performance.now() - t);
    }
    if (i % 25_000 === 24_999 && db.orderReady()) {
      const t = performance.now();
      db.list({ prefix: "t/", limit: 100, keysOnly: true }, T0);
      longestList = Math.max(longestList, performance.now() - t);
      lists++;
    }
  }
  longestSlice = Math.max(longestSlice, drainTimed(scheduler));
  const t = performance.now();
  const page = db.list({ prefix: "t/", limit: 100, keysOnly: true }, T0);
  longestList = Math.max(longestList, performance.now() - t);
  expect(page.items[0]!.key.startsWith("t/b/")).toBe(true);
  expect(lists).toBeGreaterThan(5);
  expect(longestSlice).toBeLessThan(2 * SLICE_MS_MAX);
  expect(longestList).toBeLessThan(SLICE_MS_MAX);
});

test("lists taken whenever the order is ready during a 2M-key ingest into a listed 1M-key store stay short", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const N = 1_000_000;
  for (let i = 0; i < N; i++) db.set(key("a", i), value, T0);
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  let longestList = 0;
  let lists = 0;
  for (let i = 0; i < 2 * N; i++) {
    db.set(key("b", i), value, T0);
    // Every 1024 writes a list, when the store would let one through (it folds the notes
    // since the last slice: one slice's worth), then a turn (its slice).
    if (i % 1024 === 1023) {
      if (db.orderReady()) {
        const t = performance.now();
        db.list({ prefix: "t/b/", limit: 100, keysOnly: true }, T0);
        longestList = Math.max(longestList, performance.now() - t);
        lists++;
      }
      scheduler.runOne();
    }
  }
  drainTimed(scheduler);
  expect(db.count({ prefix: "t/b/" }, T0)).toBe(2 * N);
  expect(lists).toBeGreaterThan(1000);
  // lsm28: a ready list folds the last notes, and that fold's insertBatch may finish a
  // binary-counter cascade (a merge as large as the store) in the list's turn.
  expect(longestList).toBeLessThan(SLICE_MS_MAX);
});

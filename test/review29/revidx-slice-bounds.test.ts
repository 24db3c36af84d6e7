/**
 * Review of lsm29: the index's upkeep after removals and during a long ingest stays in
 * slices of a few ms (deferred-order.ts, SLICE_UNITS), and a list taken when the store
 * says the order is ready (what LocalStore waits for) does not finish a merge or a rewrite
 * in its own turn.
 *
 * Counted, not timed (timed until stop 31; the machine is shared): the entries merges and
 * rewrites move, the keys sorted into runs and the bytes copied in each slice and each
 * list call are counted (test/support/index-work.ts) and bounded by a slice's budget
 * (SLICE_UNITS units, a merge 6 entries a unit), which a merge or rewrite finished in one
 * call passes by orders of magnitude (a run of 500k-3M entries).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { SLICE_UNITS } from "../../src/db/maple/order-costs.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { drainCounted, IndexWorkMeter, MostPerStep } from "../support/index-work.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { soak } from "../support/soak.ts";

setDefaultTimeout(300_000);

/** Entries a slice's merges may move: SLICE_UNITS units of 6 entries (MERGE_ENTRIES_PER_UNIT), 4x. */
const SLICE_ENTRIES_MAX = 4 * 6 * SLICE_UNITS;
const value = bytes("v");

function key(tenant: string, i: number): string {
  return `t/${tenant}/${String((i * 2654435761) % 4294967296).padStart(10, "0")}/${i}`;
}

test(`deleting half of a listed ${soak("250k", "1M")}-key store (a tenant) never takes a long slice, nor does a ready list after`, () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  // 500k under DKV_SOAK; at 125k a rewrite done in one call still moves 250k entries (2.5x the bound).
  const N = soak(125_000, 500_000);
  const LIST_EVERY = soak(2500, 25_000);
  for (let i = 0; i < N; i++) {
    db.set(key("a", i), value, T0);
    db.set(key("b", i), value, T0);
  }
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  const meter = new IndexWorkMeter().start();
  try {
    const perSlice = new MostPerStep(meter);
    const perList = new MostPerStep(meter);
    let lists = 0;
    for (let i = 0; i < N; i++) {
      db.delete(key("a", i), T0);
      if (i % 1000 === 999) perSlice.measure(() => scheduler.runOne());
      if (i % LIST_EVERY === LIST_EVERY - 1 && db.orderReady()) {
        perList.measure(() => db.list({ prefix: "t/", limit: 100, keysOnly: true }, T0));
        lists++;
      }
    }
    drainCounted(scheduler, perSlice);
    const page = perList.measure(() => db.list({ prefix: "t/", limit: 100, keysOnly: true }, T0));
    expect(page.items[0]!.key.startsWith("t/b/")).toBe(true);
    expect(lists).toBeGreaterThan(5);
    // The rewrites were counted: the half-dead run (1M entries) was rewritten without them.
    expect(meter.total.entriesMoved).toBeGreaterThan(N);
    // A slice moves at most its budget; a rewrite (or merge) of the 1M-entry run done in
    // one slice or one list moves ~1M.
    expect(perSlice.most.entriesMoved).toBeLessThanOrEqual(SLICE_ENTRIES_MAX);
    expect(perSlice.most.keysSorted).toBeLessThanOrEqual(SLICE_UNITS);
    expect(perList.most.entriesMoved).toBeLessThanOrEqual(SLICE_ENTRIES_MAX);
    expect(perList.most.keysSorted).toBeLessThanOrEqual(SLICE_UNITS);
    expect(Math.max(perSlice.most.bytesCopied, perList.most.bytesCopied)).toBeLessThan(4 << 20);
  } finally {
    meter.stop();
  }
});

test(`lists taken whenever the order is ready during a ${soak("500k", "2M")}-key ingest into a listed ${soak("250k", "1M")}-key store stay short`, () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  // 1M under DKV_SOAK; at 250k a cascade finished in a list's turn still moves ~1M entries.
  const N = soak(250_000, 1_000_000);
  for (let i = 0; i < N; i++) db.set(key("a", i), value, T0);
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  const meter = new IndexWorkMeter().start();
  try {
    const perList = new MostPerStep(meter);
    let lists = 0;
    for (let i = 0; i < 2 * N; i++) {
      db.set(key("b", i), value, T0);
      // Every 1024 writes a list, when the store would let one through (it folds the notes
      // since the last slice: one slice's worth), then a turn (its slice).
      if (i % 1024 === 1023) {
        if (db.orderReady()) {
          perList.measure(() => db.list({ prefix: "t/b/", limit: 100, keysOnly: true }, T0));
          lists++;
        }
        scheduler.runOne();
      }
    }
    scheduler.drain();
    expect(db.count({ prefix: "t/b/" }, T0)).toBe(2 * N);
    expect(lists).toBeGreaterThan(N / 1024);
    // The merges were counted (2M keys merged into runs: each moved a few times).
    expect(meter.total.entriesMoved).toBeGreaterThan(2 * N);
    // lsm28: a ready list folds the last notes, and that fold's insertBatch may finish a
    // binary-counter cascade (a merge as large as the store: millions of entries) in the
    // list's turn. A list's fold pays KeyRuns' pace for at most a slice's notes (1024):
    // PACE_PER_LEVEL x (levels + 2) x their cost, ~40k entries at 3M keys.
    expect(perList.most.entriesMoved).toBeLessThanOrEqual(SLICE_ENTRIES_MAX);
    expect(perList.most.keysSorted).toBeLessThanOrEqual(SLICE_UNITS);
    expect(perList.most.bytesCopied).toBeLessThan(4 << 20);
  } finally {
    meter.stop();
  }
});

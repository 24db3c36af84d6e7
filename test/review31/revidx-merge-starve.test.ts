/**
 * Review of order31 (ba27707): a fold slice that takes the long keys noted since the slice
 * before spends its budget on notes and gives the merges what is left — nothing, once a
 * turn brings more than half a slice of long keys (`sliceUnits - cost · NOTE_UNITS` ≤ 0,
 * and KeyRuns.insertBatch with a budget of 0 moves no job). Under a steady writer of long
 * keys every slice is such a slice: new runs pile up to RUNS_MAX (48, "a fallback"), every
 * page then seeks 48 runs, and the merges run only in the fallback, whole jobs in one
 * slice, unbudgeted.
 *
 * RecordDB (runs), 50k short keys built, then 150 turns of a writer of P keys of 32 KB and
 * 20 short ones, one slice a turn (ManualScheduler). Counted: the work of a one-key page
 * (OrderStats-side: orderWork, one unit per run sought) must stay near log2(n / 4096) + a
 * few (≤ 24), and no slice may do more than 10 × SLICE_UNITS work units (the long-key
 * share of a slice is ~8.5 × by design: half a slice + 4 · sliceUnits of long cost, times
 * NOTE_UNITS).
 *
 * main (27b23a0): passes (page work ~7, slices ≤ ~4.2k units; but a backlog of notes: the
 * defect order31 fixes). ba27707: page work 51 (49 runs) at P = 8 and 20; slices of 11.6k
 * and 38.5k units (at P = 40, 300 turns: 83.7k units, 266 480 entries merged in one slice
 * by the RUNS_MAX fallback).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { SLICE_UNITS } from "../../src/db/maple/order-costs.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { LONG } from "./keys.ts";

setDefaultTimeout(180_000);

const T0 = 1_700_000_000_000;
const TURNS = 150;
const PAGE_WORK_MAX = 24;
const value = Uint8Array.of(1);

for (const perTurn of [8, 20]) {
  test(`records: a writer of ${perTurn} 32 KB keys a turn leaves the merges their share (runs stay few, no slice past 10 × SLICE_UNITS)`, () => {
    const scheduler = new ManualScheduler();
    const db = new RecordDB({ order: { schedule: scheduler.schedule } });
    for (let i = 0; i < 50_000; i++) db.set(`s/${(i * 2654435761) % 4294967296}/${i}`, value, T0);
    void db.prepareOrder();
    scheduler.drain();
    expect(db.count({ prefix: "s/" }, T0)).toBe(50_000);
    scheduler.drain();
    const pad = "p".repeat(LONG - 32);
    let n = 0;
    let mostPageWork = 0;
    for (let t = 0; t < TURNS; t++) {
      for (let i = 0; i < perTurn; i++) db.set(`L/${(n * 2654435761) % 4294967296}/${pad}/${n++}`, value, T0);
      for (let i = 0; i < 20; i++) db.set(`t/${n}/${i}`, value, T0);
      scheduler.runOne();
      if (t % 25 === 24) {
        // A one-key page: one unit per run sought, and the key.
        const w0 = db.orderWork;
        expect(db.list({ prefix: "s/", limit: 1, keysOnly: true }, T0).items.length).toBe(1);
        mostPageWork = Math.max(mostPageWork, db.orderWork - w0);
      }
    }
    const maxSliceUnits = db.orderStats.maxSliceUnits;
    scheduler.drain();
    expect(db.count({ prefix: "L/" }, T0)).toBe(n);
    expect({ mostPageWork, maxSliceUnits }).toEqual({
      mostPageWork: Math.min(mostPageWork, PAGE_WORK_MAX),
      maxSliceUnits: Math.min(maxSliceUnits, 10 * SLICE_UNITS),
    });
  });
}

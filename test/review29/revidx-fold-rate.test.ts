/**
 * Review of lsm29 (daf9d30): while merges are pending, a slice folds half its notes
 * (`share = sliceUnits / 2`: 512 notes instead of 1024), and during a steady ingest merges
 * are pending nearly always. So a write rate of 513-1024 new keys per event-loop turn,
 * which main's slices keep up with, now outruns the folds: the notes (JS strings) pile up
 * and the order is almost never ready, so a list or count (LocalStore.list awaits
 * orderReadied -> prepareOrder, which resolves only once ready) waits until the writes
 * stop.
 *
 * Measured (RecordDB, a slice per W writes, a listed store of N keys, M more written):
 * - N 1M, W 700: backlog up to 150,932 notes, ready in 86 of 1428 turns (main: 0, 1428).
 * - N 1M, W 1000: 368,752 notes, ready in 6 of 1000 turns; a reader from turn 100 is not
 *   served in the 900 turns left (main: backlog 0, ready every turn).
 * - N 200k, W 800 (this test): 75,744 notes, ready in 25 of 500 turns (main: 0, 500).
 *
 * Since 49af56c a fold waits for 1024 notes unless a reader waits, and folds and merges
 * take turns while merges pend: still 1024 notes every other slice, 512 a turn.
 *
 * Counted, not timed: when the waiting reader is let through, and the turns the order was
 * ready.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(120_000);

const value = bytes("v");

function key(tenant: string, i: number): string {
  return `t/${tenant}/${String((i * 2654435761) % 4294967296).padStart(10, "0")}/${i}`;
}

test("800 new keys a turn into a listed store: a reader waiting for the order is let through within a few turns", async () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const N = 200_000;
  const M = 400_000;
  const W = 800;
  for (let i = 0; i < N; i++) db.set(key("a", i), value, T0);
  db.list({ prefix: "t/", limit: 1 }, T0);
  scheduler.drain();
  let turns = 0;
  let readyTurns = 0;
  let servedAt = -1;
  for (let i = 0; i < M; i++) {
    db.set(key("b", i), value, T0);
    if (i % W === W - 1) {
      scheduler.runOne();
      turns++;
      // A reader arrives at turn 100 and waits for the order, as LocalStore.list does.
      if (turns === 100)
        void db.prepareOrder().then(() => {
          servedAt = turns;
        });
      await null;
      if (db.orderReady()) readyTurns++;
    }
  }
  expect(turns).toBe(M / W);
  // main (42387bd): served at once, and the order is ready after every one of the 500 turns.
  expect(servedAt).toBeGreaterThanOrEqual(100);
  expect(servedAt).toBeLessThanOrEqual(110);
  expect(readyTurns).toBeGreaterThanOrEqual(turns - 10);
});

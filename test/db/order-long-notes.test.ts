/**
 * The deferred order's ready-ness and a fold's due-ness count the noted keys' bytes, not
 * only the notes (stop 31). Before, `ready` meant "at most 1024 notes left", so while 32 KB
 * keys were being written a reader that found the order ready folded up to ~1024 of them
 * (~32 MB of keys, ~160 ms) inside its own list call. Now a reader's call folds at most
 * 1024 notes and ~512 KiB of long keys (a note costs 1, and 1 more per 64 code units: its
 * long part, at most 2 · sliceUnits of it).
 *
 * Counted, not timed: the notes a list folds inside its own call (OrderStats.folded before
 * and after it), times their keys' length.
 *
 * And a reader that waits (prepareOrder, as LocalStore.list does) while a writer of long
 * keys goes on is served at once: every fold slice also takes the long keys that came since
 * the slice before (up to ~512 KiB), so no backlog builds (with half a slice alone, two or
 * three 32 KB keys, a writer of six a turn outran the folds and the reader was never let
 * through: stop 29's R3 for long keys).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(120_000);

const PAD = "p".repeat(32_000);
const value = Uint8Array.of(1);

function longKey(i: number): string {
  return `k/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}/${PAD}/${i}`;
}

const KEY_UNITS = longKey(0).length;
/** What a reader's own call may fold: 1024 notes whose long parts (1 per 64 code units) sum to 2 · 4096 at most. */
const CALL_UNITS_MAX = 64 * (2 * 4096 + 1024);

async function builtOrder(): Promise<{ db: RecordDB; scheduler: ManualScheduler }> {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const built = db.prepareOrder();
  scheduler.drain();
  await built;
  expect(db.orderReady()).toBe(true);
  return { db, scheduler };
}

/** Lists every long key; returns the code units of the notes the list folded in its own call. */
function listedUnits(db: RecordDB): { units: number; keys: number } {
  const before = db.orderStats.folded;
  const keys = db.list({ prefix: "k/", limit: 100_000, keysOnly: true }, 0).items.length;
  return { units: (db.orderStats.folded - before) * KEY_UNITS, keys };
}

test("a list after a burst of 32 KB keys folds at most a slice's worth of their bytes in its own call", async () => {
  const { db, scheduler } = await builtOrder();
  const N = 1000;
  for (let i = 0; i < N; i++) db.set(longKey(i), value, 0);
  // A reader waits for the order (LocalStore.list), the slices run, then it lists.
  let served = false;
  void db.prepareOrder().then(() => {
    served = true;
  });
  let turns = 0;
  for (; turns < 100_000 && !served; turns++) {
    scheduler.runOne();
    await null;
  }
  expect(served).toBe(true);
  const { units, keys } = listedUnits(db);
  expect(keys).toBe(N);
  // Before: the 1000 notes were "ready" (<= 1024) and the list folded all 32 MB of them.
  expect(units).toBeGreaterThan(0);
  expect(units).toBeLessThanOrEqual(CALL_UNITS_MAX);
});

for (const perTurn of [3, 6, 12]) {
  test(`a reader waiting beside a writer of ${perTurn} 32 KB keys a turn is served, and its list folds little`, async () => {
    const { db, scheduler } = await builtOrder();
    const ARRIVES = 40;
    let served = -1;
    let next = 0;
    let listed: { units: number; keys: number } | null = null;
    // One counter for every turn (a `for` binding per iteration would pin the callback's).
    let now = 0;
    for (; now < 400 && listed === null; now++) {
      for (let w = 0; w < perTurn; w++) db.set(longKey(next++), value, 0);
      for (let s = scheduler.pending; s > 0; s--) scheduler.runOne();
      if (now === ARRIVES)
        void db.prepareOrder().then(() => {
          served = now;
        });
      await null;
      // Served: it lists in the same turn (before the next writes).
      if (served >= 0) listed = listedUnits(db);
    }
    expect(served).toBeGreaterThanOrEqual(ARRIVES);
    // No backlog: the slices keep up with the writer (up to ~16 such keys a turn).
    expect(served - ARRIVES).toBeLessThanOrEqual(1);
    expect(listed!.keys).toBe(next);
    expect(listed!.units).toBeLessThanOrEqual(CALL_UNITS_MAX);
  });
}

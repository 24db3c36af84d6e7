import { expect, setDefaultTimeout, test } from "bun:test";
import { KeyRuns } from "../../src/db/maple/key-runs.ts";
import { SLICE_UNITS } from "../../src/db/maple/order-costs.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { drainCounted, IndexWorkMeter, MostPerStep, mostPerTurnDuring } from "../support/index-work.ts";
import { yieldingChunks } from "../support/longest-turn.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { soak } from "../support/soak.ts";

/**
 * Review of lsm28 (KeyRuns): the ordered index's upkeep runs in slices of a few ms of JS
 * CPU between event-loop turns (deferred-order.ts, SLICE_UNITS: "a few ms of the JS
 * thread's CPU per slice"); a slice that takes tens or hundreds of ms stalls every request
 * the server holds meanwhile (issue 13: lstore p99 at c=50 within 2x Redis).
 *
 * Defects (both invisible to OrderStats.maxSliceUnits, which counts notes, not the work
 * KeyRuns does for them):
 * 1. finishBuild converts the whole built index (OrderedKeys: one JS string a key) into
 *    one run of bytes (KeyRuns.fromOrderedKeys) in the build's last slice: O(n) in one
 *    turn. Measured (flock -x, 1M keys, the first list of an lstore): 399 ms in one slice;
 *    main's longest slice in the same run 7.8–17.5 ms.
 * 2. A fold slice's insertBatch (at most 1024 keys) completes a binary-counter cascade in
 *    one call: when the newer runs reach the oldest run's size, every entry is rewritten
 *    in that slice. Measured: writing 2M new keys into a listed 1M-key lstore, one slice
 *    of 88 ms (the 1M + 1M merge); it grows linearly with the store.
 * 3. A snapshot load sorts its keys in steps with turns between them, then hands the
 *    built OrderedKeys to DeferredOrder, whose constructor converts it in one piece.
 *    Measured (flock -x, 1M keys, RecordDB save -> load): one turn of 340-444 ms at the
 *    end of the load, vs 8-10 ms on main. dstore's follower installs a snapshot this way
 *    (ReplicatedStateMachine: MapleDB.load) while it serves.
 *
 * Counted, not timed (these were timed until stop 31 and failed on a loaded machine: 698,
 * 126, 70 ms against 100/100/50): the work of each slice or turn is counted
 * (test/support/index-work.ts) and bounded by what the design allows a slice, which the
 * defects pass by orders of magnitude (see each test).
 */

setDefaultTimeout(180_000);

/** Load steps (snapshot-io.ts LOAD_SORT_UNITS): a turn converts or sorts at most this many units. */
const LOAD_STEP_UNITS = 4 * SLICE_UNITS;
/** Keys of the store (1M under DKV_SOAK; at 250k the defects' one-turn work is still 15-60x the bounds). */
const STORE_KEYS = soak(250_000, 1_000_000);

test(`the first list of a ${STORE_KEYS}-key store builds the index without one long slice (no whole-index conversion in one turn)`, () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const value = bytes("v");
  const N = STORE_KEYS;
  for (let i = 0; i < N; i++) db.set(`user/${(i * 2654435761) % 4294967296}/${i}`, value, T0);
  const meter = new IndexWorkMeter().start();
  try {
    void db.prepareOrder();
    const perSlice = new MostPerStep(meter);
    drainCounted(scheduler, perSlice);
    expect(db.orderReady()).toBe(true);
    expect(db.list({ prefix: "user/", limit: 1 }, T0).items.length).toBe(1);
    // The meter saw the build and the conversion (every key written into the run once).
    expect(meter.total.keysWritten).toBe(N);
    expect(meter.total.buildUnits).toBeGreaterThanOrEqual(N);
    // A slice writes at most SLICE_UNITS keys into the run (RunConverter's budget: a key
    // costs at least one unit) and builds at most a slice's units (and one leaf); lsm28's
    // last build slice wrote all 1M (KeyRuns.fromOrderedKeys), ~400 ms.
    expect(perSlice.most.keysWritten).toBeLessThanOrEqual(SLICE_UNITS);
    expect(perSlice.most.convertUnits).toBeLessThanOrEqual(2 * SLICE_UNITS);
    expect(perSlice.most.buildUnits).toBeLessThanOrEqual(2 * SLICE_UNITS);
    expect(perSlice.most.bytesCopied).toBeLessThan(1 << 20);
  } finally {
    meter.stop();
  }
});

test(`a ${STORE_KEYS}-key snapshot load yields the event loop: no turn converts the whole index`, async () => {
  const db = new RecordDB();
  const value = bytes("v");
  const N = STORE_KEYS;
  for (let i = 0; i < N; i++) db.set(`user/${(i * 2654435761) % 4294967296}/${i}`, value, T0);
  const chunks: Uint8Array[] = [];
  await db.save({ write: (chunk) => void chunks.push(chunk.slice()) }, T0);
  const fresh = new RecordDB();
  const meter = new IndexWorkMeter().start();
  try {
    const perTurn = new MostPerStep(meter);
    await mostPerTurnDuring(perTurn, () => fresh.load(yieldingChunks(chunks)));
    expect(fresh.list({ prefix: "user/", limit: 3 }, T0).items.length).toBe(3);
    // The meter saw the conversion (every key written once), and the turns.
    expect(meter.total.keysWritten).toBe(N);
    expect(perTurn.steps).toBeGreaterThan(N / LOAD_STEP_UNITS);
    // A load's turn converts (or sorts) one step of LOAD_STEP_UNITS; lsm28's last turn
    // converted all 1M keys (~340-440 ms).
    expect(perTurn.most.keysWritten).toBeLessThanOrEqual(LOAD_STEP_UNITS);
    expect(perTurn.most.convertUnits).toBeLessThanOrEqual(2 * LOAD_STEP_UNITS);
    expect(perTurn.most.buildUnits).toBeLessThanOrEqual(2 * LOAD_STEP_UNITS);
    expect(perTurn.most.bytesCopied).toBeLessThan(4 << 20);
  } finally {
    meter.stop();
  }
});

test("KeyRuns: adding one fold's worth of keys (1024) never rewrites the whole index in that call", () => {
  // 2M and 2^21 newer under DKV_SOAK; at a quarter the cascade's last call still moves ~1.5M.
  const N = soak(2 ** 19, 2_000_000);
  const NEWER = soak(2 ** 19, 2 ** 21);
  const CHUNK = 1024;
  const stable = Array.from({ length: N }, (_, i) => `item/${String(2 * i).padStart(9, "0")}`);
  const index = KeyRuns.fromSorted(stable);
  stable.length = 0;
  // Newer keys, interleaved with the oldest run's, until the newer runs are about to reach the oldest run's size.
  const more = Array.from(
    { length: NEWER },
    (_, i) => `item/${String(2 * ((i * 7919) % NEWER) + 1).padStart(9, "0")}`,
  );
  let most = 0;
  for (let at = 0; at < more.length; at += CHUNK) {
    // One fold slice inserts at most CHUNK keys (SLICE_UNITS / FOLD_UNITS_PER_NOTE).
    const before = index.merged;
    index.insertBatch(more, at, at + CHUNK);
    most = Math.max(most, index.merged - before);
  }
  expect(index.size).toBe(N + more.length);
  // Merges happened (the newer runs were merged among themselves at least).
  expect(index.merged).toBeGreaterThan(more.length);
  // A call moves its pace's worth: PACE_PER_LEVEL (2) x (levels + 2) x the keys' cost,
  // ~30k entries for 1024 short keys at 4M. lsm28: the last call merges 2^20 + 2^20 newer
  // entries, then those 2^21 with the 2M oldest (~6M entries).
  expect(most).toBeLessThanOrEqual(64 * CHUNK);
});

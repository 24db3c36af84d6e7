/**
 * Review of lsm29 (daf9d30): "no call does O(n) work" — a built or loaded index is
 * converted into key bytes in steps (RunConverter), but its RunWriter grows one byte
 * array by doubling (a copy of everything written so far, in the step that overflows it)
 * and trims it at the end (`bytes.slice(0, at)`: a copy of every key's bytes, in one
 * turn). Both are O(total key bytes) in one slice: invisible with 20-byte keys, hundreds of
 * ms with long ones (keys may be up to 64 KiB by default; 600 bytes here).
 *
 * Measured on daf9d30 (flock -s, load ~2.2): 600k keys of ~620 bytes,
 * - the first list: conversion slices of 132 and 796 ms (the build's own slices ≤ 26 ms);
 * - a snapshot load: a growth step of 153 ms and RunConverter.result 411 ms in the load's
 *   last turn.
 *
 * The same for merges: their budget is in entries (MERGE_ENTRIES_PER_UNIT = 4 a unit,
 * "11 ns an entry" — for short keys), and a merge copies each entry's bytes, so a slice of
 * 8192-16384 entries of 32 KB keys copies 256-512 MB. Measured (flock -x): 8000 keys of
 * 32 KB listed, 8000 more written with a slice every 250 writes: longest slice 359 ms
 * (first list 274 ms); main (42387bd) 28 ms (69 ms).
 *
 * Counted, not timed (timed until stop 31, 2x a 50 ms slice; the machine is shared): the
 * bytes each slice or turn copies in bulk and the keys it writes into runs are counted
 * (test/support/index-work.ts) and bounded by what a slice's budget allows, which the
 * defects pass by orders of magnitude (see each test).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { SLICE_UNITS } from "../../src/db/maple/order-costs.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { drainCounted, IndexWorkMeter, MostPerStep, mostPerTurnDuring } from "../support/index-work.ts";
import { yieldingChunks } from "../support/longest-turn.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { soak } from "../support/soak.ts";

setDefaultTimeout(300_000);

/** Load steps (snapshot-io.ts LOAD_SORT_UNITS): a turn converts or sorts at most this many units. */
const LOAD_STEP_UNITS = 4 * SLICE_UNITS;
/**
 * Bytes one slice may copy in bulk or write into runs here. A slice's budget counts an
 * entry and one more per 64 bytes (KeyRuns' entryCost), a merge 6 entries a unit, so a
 * slice of SLICE_UNITS copies about 1.5 MiB of keys; with 32 KB keys the runs pass
 * RUNS_MAX now and then and a write pays for the smallest job whole (measured on main
 * ea1dfb5: at most 4.7 MB a slice, 1 MB a load turn). The defects copy the whole index's
 * bytes (186-372 MB here) or a merge's (256-512 MB) in one slice.
 */
const SLICE_BYTES_MAX = 32 << 20;
/** Long keys (600k under DKV_SOAK; 150k still makes the defects copy ~93 MB in one slice). */
const N = soak(150_000, 600_000);
const PAD = "p".repeat(600);
const value = bytes("v");

function key(i: number): string {
  return `u/${PAD}/${(i * 2654435761) % 4294967296}/${i}`;
}

test("the first list of a store of long keys builds and converts its index without a long slice", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  for (let i = 0; i < N; i++) db.set(key(i), value, T0);
  const meter = new IndexWorkMeter().start();
  try {
    void db.prepareOrder();
    const perSlice = new MostPerStep(meter);
    drainCounted(scheduler, perSlice);
    expect(db.orderReady()).toBe(true);
    expect(db.list({ prefix: "u/", limit: 2, keysOnly: true }, T0).items.length).toBe(2);
    expect(meter.total.keysWritten).toBe(N);
    expect(meter.total.bytesWritten).toBeGreaterThan(600 * N);
    // daf9d30: the step that outgrew RunWriter's array copied everything written so far
    // (~186 MB), and the last one trimmed it (bytes.slice: ~372 MB).
    expect(perSlice.most.bytesCopied).toBeLessThan(SLICE_BYTES_MAX);
    expect(perSlice.most.bytesWritten).toBeLessThan(SLICE_BYTES_MAX);
    expect(perSlice.most.convertUnits).toBeLessThanOrEqual(2 * SLICE_UNITS);
  } finally {
    meter.stop();
  }
});

test("a snapshot load of long keys yields the event loop: no turn copies the whole index", async () => {
  let db: RecordDB | null = new RecordDB();
  for (let i = 0; i < N; i++) db.set(key(i), value, T0);
  const chunks: Uint8Array[] = [];
  await db.save({ write: (chunk) => void chunks.push(chunk.slice()) }, T0);
  db = null;
  Bun.gc(true);
  const fresh = new RecordDB();
  const meter = new IndexWorkMeter().start();
  try {
    const perTurn = new MostPerStep(meter);
    await mostPerTurnDuring(perTurn, () => fresh.load(yieldingChunks(chunks)));
    expect(fresh.list({ prefix: "u/", limit: 2, keysOnly: true }, T0).items.length).toBe(2);
    expect(meter.total.keysWritten).toBe(N);
    // daf9d30: a growth step copied ~186 MB and RunConverter.result ~372 MB in the load's
    // last turn. A turn here converts a step of LOAD_STEP_UNITS (4 slices' worth).
    expect(perTurn.most.bytesCopied).toBeLessThan(SLICE_BYTES_MAX);
    expect(perTurn.most.bytesWritten).toBeLessThan(SLICE_BYTES_MAX);
    expect(perTurn.most.convertUnits).toBeLessThanOrEqual(2 * LOAD_STEP_UNITS);
  } finally {
    meter.stop();
  }
});

test("merges of long keys stay in short slices while a listed store of them grows", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const M = soak(2000, 8000);
  const pad = "p".repeat(32_000);
  const long = (i: number): string =>
    `k/${((i * 2654435761) % 4294967296).toString(16).padStart(8, "0")}/${pad}/${i}`;
  for (let i = 0; i < M; i++) db.set(long(i), value, T0);
  const meter = new IndexWorkMeter().start();
  try {
    void db.prepareOrder();
    const firstList = new MostPerStep(meter);
    drainCounted(scheduler, firstList);
    const perSlice = new MostPerStep(meter);
    for (let i = M; i < 2 * M; i++) {
      db.set(long(i), value, T0);
      if (i % 250 === 249) perSlice.measure(() => scheduler.runOne());
    }
    drainCounted(scheduler, perSlice);
    expect(db.count({ prefix: "k/" }, T0)).toBe(2 * M);
    // The merges' copies were counted (the 8000 keys written after the list were merged
    // with the first 8000: each merge copies its keys' 32 KB with set).
    expect(meter.total.bytesCopied).toBeGreaterThan(2 * M * 32_000);
    // e0ef0f2's parent: a merge's budget counted entries, not bytes, so a slice of
    // 8192-16384 entries of 32 KB copied 256-512 MB (359 ms).
    expect(perSlice.most.bytesCopied).toBeLessThan(SLICE_BYTES_MAX);
    expect(perSlice.most.bytesSorted).toBeLessThan(SLICE_BYTES_MAX);
    // The first list (R1: conversion slices of 610-796 ms): as the first test, 32 KB keys.
    expect(firstList.most.bytesCopied).toBeLessThan(SLICE_BYTES_MAX);
    expect(firstList.most.bytesWritten).toBeLessThan(SLICE_BYTES_MAX);
  } finally {
    meter.stop();
  }
});

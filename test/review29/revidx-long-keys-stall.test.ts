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
 * Timed, with wide margins as test/review28/revidx-slice-stall.test.ts (2x SLICE_MS_MAX).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, T0 } from "../db/helpers.ts";
import { drainTimed, longestTurnDuring, yieldingChunks } from "../support/longest-turn.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(300_000);

const SLICE_MS_MAX = 50;
const N = 600_000;
const PAD = "p".repeat(600);
const value = bytes("v");

function key(i: number): string {
  return `u/${PAD}/${(i * 2654435761) % 4294967296}/${i}`;
}

test("the first list of a store of long keys builds and converts its index without a long slice", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  for (let i = 0; i < N; i++) db.set(key(i), value, T0);
  void db.prepareOrder();
  const longest = drainTimed(scheduler);
  expect(db.orderReady()).toBe(true);
  expect(db.list({ prefix: "u/", limit: 2, keysOnly: true }, T0).items.length).toBe(2);
  expect(longest).toBeLessThan(2 * SLICE_MS_MAX);
});

test("a snapshot load of long keys yields the event loop: no turn copies the whole index", async () => {
  let db: RecordDB | null = new RecordDB();
  for (let i = 0; i < N; i++) db.set(key(i), value, T0);
  const chunks: Uint8Array[] = [];
  await db.save({ write: (chunk) => void chunks.push(chunk.slice()) }, T0);
  db = null;
  Bun.gc(true);
  const fresh = new RecordDB();
  const longest = await longestTurnDuring(() => fresh.load(yieldingChunks(chunks)));
  expect(fresh.list({ prefix: "u/", limit: 2, keysOnly: true }, T0).items.length).toBe(2);
  expect(longest).toBeLessThan(2 * SLICE_MS_MAX);
});

test("merges of long keys stay in short slices while a listed store of them grows", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const M = 8000;
  const pad = "p".repeat(32_000);
  const long = (i: number): string =>
    `k/${((i * 2654435761) % 4294967296).toString(16).padStart(8, "0")}/${pad}/${i}`;
  for (let i = 0; i < M; i++) db.set(long(i), value, T0);
  // 256 MB of keys: a full collection left over from building them (or from the tests
  // before) must not land in a measured slice (the lead saw one of 461 ms in ~1 run of 6).
  Bun.gc(true);
  void db.prepareOrder();
  let firstList = 0;
  for (let s = 0; s < 1_000_000 && scheduler.pending > 0; s++) {
    const t = performance.now();
    scheduler.runOne();
    firstList = Math.max(firstList, performance.now() - t);
  }
  let longest = 0;
  for (let i = M; i < 2 * M; i++) {
    db.set(long(i), value, T0);
    if (i % 250 === 249) {
      const t = performance.now();
      scheduler.runOne();
      longest = Math.max(longest, performance.now() - t);
    }
  }
  for (let s = 0; s < 1_000_000 && scheduler.pending > 0; s++) {
    const t = performance.now();
    scheduler.runOne();
    longest = Math.max(longest, performance.now() - t);
  }
  expect(db.count({ prefix: "k/" }, T0)).toBe(2 * M);
  // main: 28 ms (first list 69 ms: its build compares the long strings).
  expect(longest).toBeLessThan(2 * SLICE_MS_MAX);
  // Typically 62-65 ms here; the defect it guards against took 610-796 ms (R1).
  expect(firstList).toBeLessThan(4 * SLICE_MS_MAX);
});

/**
 * Review of lsm30 f6e71e4 ("new keys gathered into runs of 4096"): background folds leave
 * up to CHUNK_KEYS new keys' bytes unsorted in KeyRuns' Batch, sorted into a run when it
 * is full or when a read or removal comes. The sort is charged SORT_COST a key, not by its
 * bytes, and the Batch grows by doubling and never shrinks. With long keys (the limit is
 * 64 KiB; 32,000 bytes here) a fold takes ~3 notes a slice, so ~4096 of them gather
 * (128 MiB) over ~1,400 slices and one slice (or a reader's list) sorts and copies them
 * all.
 *
 * Measured on f6e71e4 (flock -s, load ~2.7; /tmp/revidx30/gather-long.ts, 4300 keys, 3
 * writes a turn): longest slice 47.5 ms during the writes, 92.9 ms when the writes stop,
 * Batch 128 MiB kept; main (86a26ed): 4.8 ms, 5.7 ms, 0.3 MiB.
 *
 * Timed, with a wide margin as review29's long-key tests (main's slices are ~5 ms).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { IndexWorkMeter, MostPerStep } from "../support/index-work.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(120_000);

/** Bytes one slice may sort or copy: main sorts at most 256 KiB and a key (~290 KB) a slice; 16 MiB. */
const SLICE_BYTES_MAX = 16 << 20;

test("long keys written a few a turn: no slice sorts thousands of them at once", () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  void db.prepareOrder();
  scheduler.drain();
  expect(db.orderReady()).toBe(true);
  const pad = "p".repeat(32_000);
  const value = Uint8Array.of(1);
  const key = (i: number): string =>
    `k/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}/${pad}/${i}`;
  const N = 4300;
  const meter = new IndexWorkMeter().start();
  try {
    const perSlice = new MostPerStep(meter);
    let slices = 0;
    const runSlices = (): void => {
      for (let s = scheduler.pending; s > 0; s--) {
        perSlice.measure(() => scheduler.runOne());
        slices++;
      }
    };
    for (let i = 0; i < N; i++) {
      db.set(key(i), value, 0);
      // A turn of 3 writes, then the slice queued.
      if (i % 3 === 2) runSlices();
    }
    // The writes stop: the slices fold what is left (a reader that lists now folds up to
    // 1024 notes of 32 KB in its call, on main too — see the report: not measured here).
    for (let round = 0; round < 10_000 && scheduler.pending > 0; round++) runSlices();
    expect(db.list({ prefix: "k/", limit: 5000, keysOnly: true }, 0).items.length).toBe(N);
    expect(slices).toBeGreaterThan(1000);
    // Every key was sorted into a run once, and counted.
    expect(meter.total.keysSorted).toBe(N);
    expect(perSlice.most.bytesSorted).toBeLessThan(SLICE_BYTES_MAX);
    expect(perSlice.most.bytesCopied).toBeLessThan(SLICE_BYTES_MAX);
  } finally {
    meter.stop();
  }
});

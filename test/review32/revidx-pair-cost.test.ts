/**
 * Review of order32 (4a02afc): noteCost charges 1 + UTF-8 bytes / 64 (Buffer.byteLength).
 * KeyRuns does not write UTF-8: it writes each UTF-16 unit on its own (key-bytes.ts), a
 * surrogate as 3 bytes, so a surrogate pair (an emoji, any astral character) takes 6 bytes
 * in a run and is charged 4. A key of astral characters at the key limit (64 KiB of UTF-8:
 * 16 384 pairs, 96 KiB in a run) costs 1025; eight of them (8 · 1024 = 8192 of long part,
 * exactly what `ready` allows) leave the order "ready", and a list then sorts and folds
 * their 768 KiB inside its own call: 1.5× what a ready order may leave for the reader
 * (CALL_BYTES_MAX = 64 · (2 · 4096 + 1024) = 576 KiB, order-sustained-writer.test.ts).
 *
 * Counted (IndexWorkMeter: the bytes KeyRuns sorts and writes during the list call), no
 * clock. Fails on 4a02afc (786 432 bytes in the call). Low severity (1.5×, not the 3×
 * the commit fixed). Fix (suggested): charge an upper bound of KeyRuns' bytes that is exact
 * for ASCII and for pairs, min(3 · length, 2 · byteLength - length) (per unit: ASCII 1 → 1,
 * pair 2 → 6, a 3-byte unit 3 ≤ 5, a 2-byte unit 2 ≤ 3), still one native call.
 */
import { expect, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { IndexWorkMeter } from "../support/index-work.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

const value = Uint8Array.of(1);
const CALL_BYTES_MAX = 64 * (2 * 4096 + 1024);

test("astral-character long keys are charged what KeyRuns writes: a ready order's list folds at most a slice's bytes", async () => {
  const scheduler = new ManualScheduler();
  const db = new RecordDB({ order: { schedule: scheduler.schedule } });
  const built = db.prepareOrder();
  scheduler.drain();
  await built;
  expect(db.orderReady()).toBe(true);
  // 64 KiB of UTF-8 each (the default key limit): "k/" + a tag + pairs.
  const pairs = "😀".repeat(16_380);
  const keys = Array.from({ length: 8 }, (_, i) => `k/${i}/${pairs}`);
  for (const key of keys) expect(Buffer.byteLength(key, "utf8")).toBeLessThanOrEqual(64 * 1024);
  for (const key of keys) db.set(key, value, 0);
  // No slice runs: the reader comes now. If the order says ready, its list folds the notes.
  let served = false;
  void db.prepareOrder().then(() => {
    served = true;
  });
  await null;
  for (let s = 0; s < 1000 && !served; s++) {
    scheduler.runOne();
    await null;
  }
  expect(served).toBe(true);
  const meter = new IndexWorkMeter().start();
  let listed: number;
  try {
    listed = db.list({ prefix: "k/", limit: 100, keysOnly: true }, 0).items.length;
  } finally {
    meter.stop();
  }
  expect(listed).toBe(8);
  const inCall = meter.total.bytesSorted;
  // 4a02afc: 786 432 (all eight keys: ready at 8 · 1024 of long part).
  expect({ inCall, within: inCall <= CALL_BYTES_MAX }).toEqual({ inCall, within: true });
});

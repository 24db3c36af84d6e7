/**
 * Review of RecordDB (review23): memory after a burst. MapleDB holds a key as JS objects
 * that the collector takes back once the key is deleted or purged; RecordDB's arena
 * chunks and per-shard slot tables must give their bytes back too, or an lstore used as a
 * cache keeps the peak of its largest burst for the rest of its life.
 */
import { expect, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { T0 } from "./helpers.ts";

const MiB = 1024 * 1024;

test("a burst of keys with a delete deadline, purged: the arena and the slot tables shrink back", () => {
  const db = new RecordDB();
  const value = new Uint8Array(200);
  for (let i = 0; i < 200_000; i++) db.setE(`session:${i}`, value, 0, 1000, T0);
  const peak = db.footprint();
  expect(peak.arenaBytes).toBeGreaterThan(40 * MiB);
  while (db.purgeExpired(T0 + 1000, 4096) > 0) {}
  expect(db.size).toBe(0);
  for (let i = 0; i < 1000; i++) db.set(`small:${i}`, new Uint8Array(10), T0);
  const after = db.footprint();
  // 1000 small keys need well under 1 MiB; a few chunks of slack are fine, the burst's peak is not.
  expect(after.arenaBytes).toBeLessThanOrEqual(4 * MiB);
  expect(after.tableBytes).toBeLessThanOrEqual(1 * MiB);
});

/**
 * Review of order31, task 2 (notes encoded to bytes when noted, merge buffers reused): no
 * buffer sized by a burst stays held once the burst is gone. 1000 keys of 32 KB (32 MB) are
 * written, folded and merged, then deleted and folded again; after the slices ran, the
 * heap the ordered index holds (heap after a full collection, minus the heap once the
 * order is dropped: dropOrder lets it go, the records stay) must be small: under 4 MiB
 * (a reused note buffer, sort batch or merge output kept at the burst's size would hold
 * 32 MB or more).
 *
 * Measured in bytes of heap, not time. Passes on main (27b23a0): its batch buffer is let
 * go past 512 KB, its notes list past NOTES_KEPT_MAX, runs all dead are dropped.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { LONG } from "./keys.ts";

setDefaultTimeout(120_000);

const T0 = 1_700_000_000_000;
const BURST = 1000;
const RETAINED_MAX = 4 * 1024 * 1024;
const value = Uint8Array.of(1);

function heapAfterCollection(): number {
  Bun.gc(true);
  Bun.gc(true);
  return process.memoryUsage().heapUsed;
}

for (const kind of ["maple", "records"] as const) {
  test(`${kind}: after a burst of ${BURST} 32 KB keys is written, folded, deleted and folded, the order holds under 4 MiB`, () => {
    const scheduler = new ManualScheduler();
    const order = { schedule: scheduler.schedule };
    const db: KVDB = kind === "maple" ? new MapleDB({ shards: 4, order }) : new RecordDB({ order });
    for (let i = 0; i < 2000; i++) db.set(`s/${i}`, value, T0);
    void db.prepareOrder();
    scheduler.drain();
    expect(db.count({}, T0)).toBe(2000);
    const pad = "r".repeat(LONG - 16);
    const key = (i: number): string => `L/${(i * 2654435761) % 4294967296}/${pad}`;
    // In turns of 50 writes and a slice, then all at once; listed meanwhile.
    for (let i = 0; i < BURST; i++) {
      db.set(key(i), value, T0);
      if (i % 50 === 49) scheduler.runOne();
      if (i % 300 === 299)
        expect(db.list({ prefix: "L/", limit: 1, keysOnly: true }, T0).items.length).toBe(1);
    }
    scheduler.drain();
    expect(db.count({ prefix: "L/" }, T0)).toBe(BURST);
    for (let i = 0; i < BURST; i++) {
      db.delete(key(i), T0);
      if (i % 50 === 49) scheduler.runOne();
    }
    scheduler.drain();
    expect(db.count({}, T0)).toBe(2000);
    scheduler.drain();
    const withOrder = heapAfterCollection();
    db.dropOrder();
    const held = withOrder - heapAfterCollection();
    expect(held).toBeLessThan(RETAINED_MAX);
  });
}

/**
 * Review of RecordDB (review23): the ordered index built a slice at a time while keys are
 * added and removed between slices (RecordDB's sources decode a shard when the build first
 * reads it, so keys added or removed before that are both read and noted).
 */
import { expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { T0 } from "./helpers.ts";

test("an index build in slices with adds, re-adds and removes between every slice ends as the keys are", async () => {
  for (const seed of [1, 2, 3]) {
    const random = seededRandom(seed);
    const scheduler = new ManualScheduler();
    const mapleScheduler = new ManualScheduler();
    const db = new RecordDB({ order: { sliceUnits: 64, schedule: scheduler.schedule } });
    const maple = new MapleDB({
      indexFromStart: false,
      order: { sliceUnits: 64, schedule: mapleScheduler.schedule },
    });
    const key = (i: number) => (i % 3 === 0 ? `é/${i}` : i % 3 === 1 ? `😀${i}` : `k${i}`);
    const value = Uint8Array.of(1);
    for (let i = 0; i < 6000; i++) {
      db.set(key(i), value, T0);
      maple.set(key(i), value, T0);
    }
    for (let round = 0; round < 3; round++) {
      const ready = db.prepareOrder();
      void maple.prepareOrder();
      let done = false;
      void ready.then(() => {
        done = true;
      });
      let guard = 0;
      while (!done && guard++ < 100_000) {
        for (let w = 0; w < 5; w++) {
          const k = key(Math.floor(random() * 9000));
          if (random() < 0.5) {
            db.set(k, value, T0);
            maple.set(k, value, T0);
          } else {
            db.delete(k, T0);
            maple.delete(k, T0);
          }
        }
        scheduler.runOne();
        mapleScheduler.runOne();
        await Promise.resolve();
      }
      expect(db.orderedKeys()).toEqual(maple.orderedKeys());
      expect(db.list({ prefix: "é/" }, T0)).toEqual(maple.list({ prefix: "é/" }, T0));
      expect(db.count({}, T0)).toBe(db.size);
      db.dropOrder();
      maple.dropOrder();
    }
  }
});

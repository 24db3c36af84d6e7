/**
 * Review of order31, task 1: the recalibrated fold must keep every slice bounded — the
 * defect moved out of the list call must not land in one slice instead. A slice runs
 * between event-loop turns; the slice budget (sliceUnits) is what keeps a turn short.
 *
 * Here the notes of 32 KB keys come in one turn (a burst: a large transaction, a Raft
 * apply of a catch-up batch, many pipelined requests read in one turn) and a reader waits
 * (prepareOrder, as LocalStore.list does). The slices are run one at a time; the bytes of
 * the notes each folds are counted (OrderStats.folded before and after, weighed by the
 * keys' lengths: new keys only, folded oldest first). No slice may fold more than
 * SLICE_BYTES_MAX (4 MiB: 1/8 of the defect's 32 MB, 64 times a slice's 64 KB on main).
 *
 * Passes on main (27b23a0: a slice folds two 32 KB keys). Fails on order31's WIP
 * (a waiting reader's slice takes every note that came since the slice before: the whole
 * burst, 9.8 MB, in one slice).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { LONG } from "./keys.ts";

setDefaultTimeout(120_000);

const T0 = 1_700_000_000_000;
const SLICE_BYTES_MAX = 4 * 1024 * 1024;
const BURST = 300;
const value = Uint8Array.of(1);

for (const kind of ["maple", "records"] as const) {
  for (const waits of ["before", "after"] as const) {
    test(`${kind}: a burst of ${BURST} 32 KB keys in one turn, a reader waiting ${waits} it: no slice folds more than 4 MiB`, async () => {
      const scheduler = new ManualScheduler();
      const order = { schedule: scheduler.schedule };
      const db: KVDB & { orderStats: { folded: number } } =
        kind === "maple" ? new MapleDB({ shards: 4, order }) : new RecordDB({ order });
      db.set("a", value, T0);
      const built = db.prepareOrder();
      scheduler.drain();
      await built;
      expect(db.list({ prefix: "", limit: 1, keysOnly: true }, T0).items.length).toBe(1);
      const pad = "z".repeat(LONG - 20);
      const keys = Array.from({ length: BURST }, (_, i) => `L/${(i * 2654435761) % 4294967296}/${pad}`);
      let served = false;
      const wait = (): void => {
        void db.prepareOrder().then(() => {
          served = true;
        });
      };
      if (waits === "before") {
        db.set("b", value, T0);
        wait();
      }
      const base = db.orderStats.folded;
      for (const key of keys) db.set(key, value, T0);
      if (waits === "after") wait();
      const before = new Float64Array(keys.length + 2);
      const noted = waits === "before" ? ["b", ...keys] : keys;
      for (let i = 0; i < noted.length; i++) before[i + 1] = before[i]! + noted[i]!.length;
      let most = 0;
      let slices = 0;
      for (; slices < 100_000 && scheduler.pending > 0; slices++) {
        const at = Math.min(noted.length, db.orderStats.folded - base);
        scheduler.runOne();
        await null;
        const to = Math.min(noted.length, db.orderStats.folded - base);
        most = Math.max(most, before[to]! - before[at]!);
      }
      expect(served).toBe(true);
      expect(db.count({ prefix: "L/" }, T0)).toBe(BURST);
      expect({ most, slices, within: most <= SLICE_BYTES_MAX }).toEqual({ most, slices, within: true });
    });
  }
}

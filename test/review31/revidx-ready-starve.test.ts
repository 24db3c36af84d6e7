/**
 * Review of order31, task 1 (the risk of its fix): once `ready` weighs notes by their bytes,
 * a reader waiting in `prepareOrder()` behind a writer of 32 KB keys must still be served.
 * A slice folds about a slice's bytes of notes (two 32 KB keys on main); a writer adding
 * more than that every turn keeps a byte-bounded `ready` false for as long as it writes,
 * and `whenReady` resolves only at `ready`: the store's list (ordered-read.ts awaits
 * prepareOrder up to ORDER_WAITS_MAX times) would hang until the writer stops.
 *
 * On a real event loop (setImmediate turns, the engine's own scheduling): a writer adds
 * W long keys a turn for TURNS turns; listers start at a few turns and await
 * `prepareOrder()` (then list, and count the long keys: exact at that moment). Each must be
 * served within SERVED_TURNS of the writer's turns. Counted turns, no clock.
 *
 * Passes on main (its `ready` counts notes: at most 1024 ≥ what this writer leaves). A
 * mutant whose `ready` waits for every note (unsettled === 0) fails it: the listers are
 * served only after the writer stops.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { LONG } from "./keys.ts";

setDefaultTimeout(120_000);

const T0 = 1_700_000_000_000;
const TURNS = 240;
const SERVED_TURNS = 40;
const value = Uint8Array.of(1);

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

for (const kind of ["maple", "records"] as const) {
  for (const perTurn of [3, 8]) {
    test(`${kind}: listers waiting behind a writer of ${perTurn} 32 KB keys a turn are served within ${SERVED_TURNS} turns`, async () => {
      const db: KVDB = kind === "maple" ? new MapleDB({ shards: 4 }) : new RecordDB();
      // Built (RecordDB builds at its first list).
      db.set("a", value, T0);
      await db.prepareOrder();
      expect(db.list({ prefix: "", limit: 1, keysOnly: true }, T0).items.length).toBe(1);
      const pad = "q".repeat(LONG - 20);
      let written = 0;
      let writerTurn = 0;
      let writing = true;
      const served: { start: number; at: number; count: number; expected: number }[] = [];
      const writer = (async () => {
        for (; writerTurn < TURNS; writerTurn++) {
          for (let i = 0; i < perTurn; i++) db.set(`L/${pad}/${written++}`, value, T0);
          await turn();
        }
        writing = false;
      })();
      const lister = async (start: number): Promise<void> => {
        while (writerTurn < start) await turn();
        await db.prepareOrder();
        const at = writerTurn;
        const count = db.count({ prefix: "L/" }, T0);
        const page = db.list({ prefix: "L/", limit: 2, keysOnly: true }, T0);
        expect(page.items.length).toBe(2);
        served.push({ start, at, count, expected: written });
      };
      await Promise.all([writer, lister(5), lister(20), lister(60), lister(120)]);
      expect(writing).toBe(false);
      expect(served.length).toBe(4);
      for (const s of served) {
        expect(s.count).toBe(s.expected);
        expect({ ...s, late: s.at - s.start > SERVED_TURNS }).toEqual({ ...s, late: false });
      }
    });
  }
}

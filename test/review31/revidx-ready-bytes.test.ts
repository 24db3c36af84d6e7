/**
 * Review of order31, task 1 (the defect it fixes): DeferredOrder's `ready` ("scan now does
 * at most one slice of work") counted notes, not their bytes: 1024 notes of 32 KB keys
 * (32 MB) were "ready", so a list after `orderReady()` / `prepareOrder()` folded them all
 * inside its own call, while a background slice folds two such keys.
 *
 * Checked by counts only: the notes a list folds inside its call (OrderStats.folded before
 * and after), weighed by their keys' bytes (the test knows every note: new keys only, in
 * write order, and folds take the oldest first), against the most bytes one slice folded
 * (a waiting reader's slices included). Whenever `orderReady()` says yes, the list may
 * fold at most twice what a slice folded (and one key more), and never more than 4 MiB.
 *
 * Fails on main (27b23a0): 600 keys of 32 KB noted → orderReady() at once, the list folds
 * ~19 MiB in its call (no slice ran).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { LONG } from "./keys.ts";

setDefaultTimeout(120_000);

const T0 = 1_700_000_000_000;
const ABSOLUTE_MAX = 4 * 1024 * 1024;
const value = Uint8Array.of(7);

type Engine = "maple" | "records";
type Mix = "long" | "mixed" | "long-last";

interface Stats {
  readonly folded: number;
}

function engine(kind: Engine, scheduler: ManualScheduler): KVDB & { orderStats: Readonly<Stats> } {
  const order = { schedule: scheduler.schedule };
  return kind === "maple" ? new MapleDB({ shards: 4, order }) : new RecordDB({ order });
}

/** The keys written, in order: `mix` of 32 KB and short ones (distinct). */
function writes(mix: Mix, next: () => number): string[] {
  const pad = "p".repeat(LONG - 24);
  const long = (i: number): string => `L/${(i * 2654435761) % 4294967296}/${pad}/${i}`;
  const short = (i: number): string => `s/${Math.floor(next() * 1e9).toString(36)}/${i}`;
  const keys: string[] = [];
  if (mix === "long") for (let i = 0; i < 600; i++) keys.push(long(i));
  else if (mix === "mixed") for (let i = 0; i < 3000; i++) keys.push(i % 20 === 7 ? long(i) : short(i));
  else {
    for (let i = 0; i < 3000; i++) keys.push(short(i));
    for (let i = 0; i < 200; i++) keys.push(long(i));
  }
  return keys;
}

for (const kind of ["maple", "records"] as const) {
  for (const mix of ["long", "mixed", "long-last"] as const) {
    test(`${kind}, ${mix}: a list when orderReady() folds at most a slice's bytes inside its call`, () => {
      const next = seededRandom(mix.length * 31 + kind.length);
      const scheduler = new ManualScheduler();
      const db = engine(kind, scheduler);
      const keys = writes(mix, next);
      // Bytes of the first n notes (encoded as UTF-8: ASCII keys here, so their length).
      const before = new Float64Array(keys.length + 1);
      for (let i = 0; i < keys.length; i++) before[i + 1] = before[i]! + keys[i]!.length;
      const foldedBytes = (from: number, to: number): number => before[to]! - before[from]!;
      // Built first (RecordDB builds its index at the first list; MapleDB keeps it from the start).
      db.set("first", value, T0);
      void db.prepareOrder();
      scheduler.drain();
      expect(db.list({ prefix: "", limit: 1, keysOnly: true }, T0).items.length).toBe(1);
      for (const key of keys) db.set(key, value, T0);
      const base = db.orderStats.folded;
      // A reader waits (its slices count too), slices run one at a time until ready.
      void db.prepareOrder();
      let mostPerSlice = 0;
      let slices = 0;
      while (!db.orderReady() && scheduler.pending > 0 && slices < 100_000) {
        const at = db.orderStats.folded - base;
        scheduler.runOne();
        slices++;
        mostPerSlice = Math.max(mostPerSlice, foldedBytes(at, db.orderStats.folded - base));
      }
      expect(db.orderReady()).toBe(true);
      const at = db.orderStats.folded - base;
      const page = db.list({ prefix: "", limit: 3, keysOnly: true }, T0);
      const inCall = foldedBytes(at, db.orderStats.folded - base);
      const detail = { inCall, mostPerSlice, slices, notesLeft: keys.length - at };
      expect(page.items.length).toBe(3);
      expect(db.count({ prefix: "L/" }, T0)).toBe(keys.filter((key) => key.startsWith("L/")).length);
      expect(detail.inCall <= 2 * mostPerSlice + LONG + 64 ? "within" : detail).toBe("within");
      expect(inCall).toBeLessThanOrEqual(ABSOLUTE_MAX);
      scheduler.drain();
    });
  }
}

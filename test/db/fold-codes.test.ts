import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { BLOCK_KEYS_MAX, BLOCK_PENDING_MAX } from "../../src/db/maple/coded-run.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { expected, lowerBound, scanned } from "../support/sorted-keys.ts";
import { bytes, saveBytes, T0 } from "./helpers.ts";

/**
 * The merge of a block's pending keys by the codes noted with them (OrderedKeys.insert
 * computes a key's code at its block's prefix while the key's string is in cache; the
 * merge places keys by those codes, by strings only on ties or when no code was known),
 * against a sorted model: keys whose blocks share prefixes longer than a code reaches past
 * the index's (the range-prefix path), keys that need code point order (surrogates: no
 * code noted), keys beyond Latin-1 (wide codes), keys that are prefixes of others, many
 * adds bound for one place, removals while keys wait, and (through MapleDB) removals
 * racing the background folds and a snapshot load while notes wait to be folded.
 */

setDefaultTimeout(60_000);

const TAILS = ["", "a", "b", "~", "\u00e9", "\ue000", "\uffff", "😀", "\ud800", "\udfff", "0"];

/** Keys of a few shapes, most sharing long prefixes (etcd-like paths). */
function keyOf(next: () => number): string {
  const n = Math.floor(next() * 5000);
  const tail = TAILS[Math.floor(next() * TAILS.length)]!;
  const shape = next();
  if (shape < 0.45) return `/registry/pods/ns${n % 7}/deploy-${n}${tail}`;
  if (shape < 0.7) return `user:${n.toString(36)}:profile${tail}`;
  if (shape < 0.8) return `/registry/pods/ns${n % 7}${tail}`;
  if (shape < 0.9) return `\ue000${n}${tail}`;
  return `😀/${n % 50}${tail}`;
}

describe("pending keys merged by their noted codes", () => {
  for (const seed of [5, 6, 7]) {
    test(`bursts of inserts, removes and scans agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      const present = new Set<string>();
      let sorted: string[] = [];
      const insert = (key: string): void => {
        if (present.has(key)) return;
        present.add(key);
        index.insert(key);
        sorted.splice(lowerBound(sorted, key), 0, key);
      };
      for (let round = 0; round < 40; round++) {
        // A burst of new keys with no read between (blocks fill their pending lists and
        // merge by codes), then removals (a block with pending keys is merged first).
        const burst = Math.floor(next() * 3 * BLOCK_KEYS_MAX);
        for (let i = 0; i < burst; i++) insert(keyOf(next));
        const removals = Math.floor(next() * (round < 30 ? 40 : 400));
        for (let i = 0; i < removals && sorted.length > 0; i++) {
          const key = sorted[Math.floor(next() * sorted.length)]!;
          expect(index.remove(key)).toBe(true);
          present.delete(key);
          sorted.splice(lowerBound(sorted, key), 1);
        }
        for (let i = 0; i < 5; i++) {
          const from = next() < 0.5 ? keyOf(next) : (sorted[Math.floor(next() * sorted.length)] ?? "");
          const exclusive = next() < 0.5;
          expect(scanned(index, from, exclusive, 30)).toEqual(expected(sorted, from, exclusive, 30));
        }
        if (round % 8 === 7) {
          expect(index.keys()).toEqual(sorted);
          sorted = [...sorted];
        }
      }
      expect(index.size).toBe(sorted.length);
      expect(index.keys()).toEqual(sorted);
    });
  }

  for (const seed of [8, 9]) {
    test(`keys added a batch at a time (routed first, then placed) agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      const present = new Set<string>();
      let sorted: string[] = [];
      for (let round = 0; round < 60; round++) {
        // Batches of any size: chunks whose blocks split, or get a new first key, midway.
        const batch: string[] = [];
        const size = Math.floor(next() * 2 * BLOCK_KEYS_MAX);
        for (let i = 0; i < size; i++) {
          const key = next() < 0.02 ? `!${Math.floor(next() * 1e6)}` : keyOf(next);
          if (present.has(key)) continue;
          present.add(key);
          batch.push(key);
        }
        const from = Math.floor(next() * 3);
        const padded = [...Array.from({ length: from }, () => "ignored"), ...batch, "ignored"];
        index.insertBatch(padded, from, from + batch.length);
        sorted = [...sorted, ...batch].sort(compareKeys);
        expect(index.size).toBe(sorted.length);
        if (round % 10 === 9) expect(index.keys()).toEqual(sorted);
        const probe = keyOf(next);
        expect(scanned(index, probe, false, 20)).toEqual(expected(sorted, probe, false, 20));
      }
      expect(index.keys()).toEqual(sorted);
    });
  }

  test("adds bound for one place are ordered by their codes, then by their strings", () => {
    const next = seededRandom(11);
    // Two blocks' worth of keys far apart, so every add below lands in one gap.
    const base = Array.from({ length: 2 * BLOCK_KEYS_MAX }, (_, i) =>
      i < BLOCK_KEYS_MAX ? `p/a${String(i).padStart(4, "0")}` : `p/z${String(i).padStart(4, "0")}`,
    );
    const index = OrderedKeys.fromSorted(base);
    const adds = new Set<string>();
    while (adds.size < BLOCK_PENDING_MAX - 1) {
      // Same first units after the prefix (the same code) for many; some need code point order.
      const tail = TAILS[Math.floor(next() * TAILS.length)]!;
      adds.add(`p/m${next() < 0.5 ? "same" : ""}${Math.floor(next() * 1000)}${tail}`);
    }
    for (const key of adds) index.insert(key);
    const reference = [...base, ...adds].sort(compareKeys);
    expect(index.keys()).toEqual(reference);
    expect(scanned(index, "p/m", false, BLOCK_PENDING_MAX + 2)).toEqual(
      expected(reference, "p/m", false, BLOCK_PENDING_MAX + 2),
    );
  });

  for (const next of ["last block", "a block before others"]) {
    test(`keys past the last key of ${next} that do not share its prefix are placed by their strings`, () => {
      // Block prefixes grow long ("q/long/shared/prefix/0"); the keys added after leave that
      // prefix early and lie past the block's last key (in the last block, or before the
      // next block's first key, "s/...", when there is one).
      // Built whole (as a snapshot load builds it): each block coded at the prefix its keys share.
      // 2 × 192 (a built block's fill, 3/4 of BLOCK_KEYS_MAX): the q keys fill two blocks exactly.
      const built = Array.from(
        { length: 2 * ((3 * BLOCK_KEYS_MAX) / 4) },
        (_, i) => `q/long/shared/prefix/${String(i).padStart(5, "0")}`,
      );
      if (next !== "last block")
        for (let i = 0; i < 2 * BLOCK_KEYS_MAX; i++) built.push(`s/${String(i).padStart(4, "0")}`);
      const index = OrderedKeys.fromSorted(built);
      const reference = [...built];
      const add = (key: string): void => {
        index.insert(key);
        reference.splice(lowerBound(reference, key), 0, key);
      };
      expect(index.keys()).toEqual(reference);
      for (const key of [
        "q/long/shared/zz",
        "q/long/t",
        "q/m",
        "r",
        "q/long/shared/prefix/00100.5",
        "q/",
        "r/a",
      ])
        add(key);
      expect(index.keys()).toEqual(reference);
      for (const from of ["q/long/shared/prefix/00510", "q/long/shared/prefix/", "q/long/t", "r", ""]) {
        expect(scanned(index, from, false, 10)).toEqual(expected(reference, from, false, 10));
      }
    });
  }
});

describe("MapleDB: removals racing the folds, and a snapshot load while notes wait", () => {
  async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
    yield data;
  }

  for (const seed of [21, 22]) {
    test(`seed ${seed}`, async () => {
      const next = seededRandom(seed);
      const scheduler = new ManualScheduler();
      // Small slices: a fold takes many turns, and a few waiting notes make it not ready.
      const options = { order: { schedule: scheduler.schedule, sliceUnits: 64 } };
      let db = new MapleDB(options);
      const model = new Set<string>();
      /** The model's keys in an array too, for picking one at random (swap-removed). */
      const pickable: string[] = [];
      let loadsWithNotes = 0;
      const live = (): string[] => [...model].sort(compareKeys);
      const value = bytes("v");
      for (let step = 0; step < 80; step++) {
        // A burst of writes in one turn: new keys, deletes of keys maybe still noted.
        const burst = Math.floor(next() * 1500);
        for (let i = 0; i < burst; i++) {
          if (next() < 0.75 || pickable.length === 0) {
            const key = keyOf(next);
            db.set(key, value, T0);
            if (!model.has(key)) pickable.push(key);
            model.add(key);
          } else {
            const at = Math.floor(next() * pickable.length);
            const key = pickable[at]!;
            pickable[at] = pickable[pickable.length - 1]!;
            pickable.pop();
            db.delete(key, T0);
            model.delete(key);
          }
        }
        // Some turns run (partial folds); sometimes none.
        const turns = Math.floor(next() * 3);
        for (let t = 0; t < turns && scheduler.pending > 0; t++) scheduler.runOne();
        const roll = next();
        if (roll < 0.15) {
          // Saved and loaded while notes wait (the save reads the maps, not the index).
          if (!db.orderReady()) loadsWithNotes++;
          const data = await saveBytes(db, T0);
          db = new MapleDB(options);
          await db.load(once(data));
          expect(db.orderReady()).toBe(true);
        } else if (roll < 0.6) {
          const after = next() < 0.5 ? undefined : keyOf(next);
          const prefix = next() < 0.5 ? "/registry/pods/" : "";
          const limit = 1 + Math.floor(next() * 60);
          const want = live()
            .filter((k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0))
            .slice(0, limit);
          expect(db.list({ prefix, limit, after }, T0).items.map((item) => item.key)).toEqual(want);
        }
      }
      expect(loadsWithNotes).toBeGreaterThan(0);
      expect(db.orderedKeys()).toEqual(live());
      expect(db.count({ prefix: "" }, T0)).toBe(model.size);
    });
  }
});

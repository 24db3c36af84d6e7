import { describe, expect, test } from "bun:test";
import { BLOCK_KEYS_MAX } from "../../src/db/maple/coded-run.ts";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { CHECK_EVERY, type DeferredOrderOptions, NOTES_MIN } from "../../src/db/maple/order-costs.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { scanned } from "../support/sorted-keys.ts";

/**
 * DeferredOrder against a model: a Set of present keys (what the hash maps hold) and a
 * sorted array of them. Writes go to both; every scan and `keys` must match the sorted
 * array whatever adds and removes (of the same key, too) happened since the last one.
 */

const UNITS = ["a", "b", "z", "0", "~", "\u00e9", "\ue000", "\uffff", "😀", "\ud800"];
const PREFIXES = ["", "user:", "svc/registry/", "\ue000", "😀"];

function randomKey(next: () => number): string {
  let key = PREFIXES[Math.floor(next() * PREFIXES.length)]!;
  const length = 1 + Math.floor(next() * 4);
  for (let i = 0; i < length; i++) key += UNITS[Math.floor(next() * UNITS.length)]!;
  return key;
}

function expected(present: Set<string>, from: string, exclusive: boolean, max: number): string[] {
  return [...present]
    .sort(compareKeys)
    .filter((key) => (exclusive ? compareKeys(key, from) > 0 : compareKeys(key, from) >= 0))
    .slice(0, max);
}

/** The notes' bound (see DeferredOrder.note): checked every CHECK_EVERY notes, against the keys present then. */
function notesBound(present: number): number {
  return NOTES_MIN + 2 * present + 3 * CHECK_EVERY;
}

class Model {
  readonly present = new Set<string>();
  readonly order: DeferredOrder;

  /** `built`: false for an order that starts unbuilt (as one `dropped` is). */
  constructor(initial: string[] = [], options: DeferredOrderOptions = {}, built = true) {
    for (const key of initial) this.present.add(key);
    const sorted = OrderedKeys.sortKeys([...initial]);
    this.order = new DeferredOrder(
      (key) => this.present.has(key),
      () => [this.present.keys()],
      built ? OrderedKeys.fromSorted(sorted) : undefined,
      { keyCount: () => this.present.size, ...options },
    );
  }

  add(key: string): void {
    if (this.present.has(key)) return;
    this.present.add(key);
    this.order.added(key);
  }

  remove(key: string): void {
    if (!this.present.delete(key)) return;
    this.order.removed(key);
  }
}

describe("DeferredOrder", () => {
  // Seeds 3, 4 and 6 start from a built index of 1024 keys, 1, 2 and 5 from an empty one;
  // 5 and 6 are never scanned until the end and no turn runs, so the notes outgrow their
  // bound and are folded in one piece, the index staying built.
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    test(`random adds, removes and scans agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const initial: string[] = [];
      if (seed % 3 === 0 || seed === 4) {
        for (let i = 0; i < 4 * BLOCK_KEYS_MAX; i++) initial.push(`init/${i}`);
      }
      const model = new Model(initial);
      const pool: string[] = [...initial];
      // Seeds 5 and 6: built at the start, then no reader until the end.
      const scanAbove = seed >= 5 ? 1 : 0.98;
      if (seed >= 5) model.order.keys();
      const steps = (seed >= 5 ? 120 : 40) * BLOCK_KEYS_MAX;
      for (let step = 0; step < steps; step++) {
        expect(model.order.built).toBe(true);
        const roll = next();
        if (roll < 0.5) {
          const key = randomKey(next);
          pool.push(key);
          model.add(key);
        } else if (roll < 0.95) {
          // Often a key added since the last scan: add/remove/add of one key between settles.
          model.remove(pool[Math.floor(next() * pool.length)]!);
        } else if (roll < scanAbove) {
          if (pool.length > 0) model.add(pool[Math.floor(next() * pool.length)]!);
        } else {
          const from = next() < 0.2 ? "" : randomKey(next);
          const exclusive = next() < 0.5;
          const max = 1 + Math.floor(next() * 30);
          expect(scanned(model.order, from, exclusive, max)).toEqual(
            expected(model.present, from, exclusive, max),
          );
          expect(model.order.unsettled).toBe(0);
          expect(model.order.built).toBe(true);
        }
        expect(model.order.unsettled).toBeLessThanOrEqual(notesBound(model.present.size));
      }
      expect(model.order.keys()).toEqual([...model.present].sort(compareKeys));
      if (seed >= 5) expect(model.order.stats.boundFolds).toBeGreaterThan(0);
      expect(model.order.stats.builds).toBe(0);
    });
  }

  test("writes to an unbuilt (dropped) index note nothing; the first scan builds it from the maps", () => {
    const model = new Model([], {}, false);
    const keys = Array.from({ length: 10 * BLOCK_KEYS_MAX }, (_, i) => `k/${(i * 7919) % 100_003}`);
    for (const key of keys) model.add(key);
    model.remove(keys[7]!);
    expect(model.order.built).toBe(false);
    expect(model.order.unsettled).toBe(0);
    expect(scanned(model.order, "k/5", false, 3)).toEqual(expected(model.present, "k/5", false, 3));
    expect(model.order.built).toBe(true);
    // Built now: writes are noted until the next reader.
    model.add("k/new");
    expect(model.order.unsettled).toBe(1);
    expect(model.order.keys()).toEqual([...model.present].sort(compareKeys));
  });

  test("adds into a built index land between its keys", () => {
    const initial = Array.from(
      { length: 6 * BLOCK_KEYS_MAX },
      (_, i) => `k/${String(2 * i).padStart(6, "0")}`,
    );
    const model = new Model(initial);
    for (let i = 0; i < 3 * BLOCK_KEYS_MAX; i++) model.add(`k/${String(4 * i + 1).padStart(6, "0")}`);
    model.add("a");
    model.add("z");
    expect(model.order.keys()).toEqual([...model.present].sort(compareKeys));
  });

  test("writes without readers or turns fold the notes in one piece past their bound: bounded, and still built", () => {
    const model = new Model(["base"]);
    let peak = 0;
    // A lock table: keys come and go, nobody lists.
    for (let i = 0; i < 5 * NOTES_MIN; i++) {
      const key = `lock/${i % 100}`;
      model.add(key);
      model.remove(key);
      peak = Math.max(peak, model.order.unsettled);
    }
    expect(peak).toBeLessThanOrEqual(notesBound(101));
    expect(model.order.built).toBe(true);
    expect(model.order.stats.boundFolds).toBeGreaterThan(0);
    model.add("lock/kept");
    expect(model.order.keys()).toEqual(["base", "lock/kept"]);
  });

  test("growth and churn with folds keeping up but no reader keep the index built and folded", () => {
    const queue: (() => void)[] = [];
    const model = new Model(["base"], { schedule: (run) => queue.push(run) });
    const turn = (): void => {
      for (let n = queue.length; n > 0; n--) queue.shift()!();
    };
    // Turns with no writes: a fold of fewer notes than a slice takes waits for one.
    const idle = (): void => {
      for (let n = 0; n < 100 && queue.length > 0; n++) queue.shift()!();
    };
    // Growth with a turn every 100 writes: folded as it comes, never dropped.
    for (let i = 0; i < 3 * NOTES_MIN; i++) {
      model.add(`grow/${i}`);
      if (i % 100 === 0) turn();
    }
    idle();
    expect(model.order.built).toBe(true);
    expect(model.order.unsettled).toBe(0);
    // Churn on a few keys, folded as it comes, nobody listing: kept up, never in one piece
    // (twice the removals past which main's code dropped the index).
    for (let churned = 0; churned < 2 * (NOTES_MIN + 2 * model.present.size); churned++) {
      model.add(`lock/${churned % 10}`);
      model.remove(`lock/${churned % 10}`);
      if (churned % 100 === 0) turn();
    }
    idle();
    expect(model.order.built).toBe(true);
    expect(model.order.unsettled).toBe(0);
    expect(model.order.stats.boundFolds).toBe(0);
    expect(model.order.stats.syncSettles).toBe(0);
    const folded = model.order.stats.folded;
    expect(model.order.keys()).toEqual([...model.present].sort(compareKeys));
    expect(model.order.stats.folded).toBe(folded);
  }, 60_000);

  test("a key removed and added again between scans is listed once", () => {
    const model = new Model(["a", "b", "c"]);
    model.remove("b");
    model.add("b");
    model.remove("b");
    model.add("b");
    model.add("d");
    model.remove("d");
    expect(model.order.keys()).toEqual(["a", "b", "c"]);
    model.remove("a");
    expect(scanned(model.order, "", false, 10)).toEqual(["b", "c"]);
  });

  test("a fold with removals among its notes checks only the keys removed since the notes were last all folded", () => {
    const present = new Set<string>(["k0", "k1", "k2"]);
    let lookups = 0;
    const queue: (() => void)[] = [];
    const order = new DeferredOrder(
      (key) => {
        lookups++;
        return present.has(key);
      },
      () => [present.keys()],
      OrderedKeys.fromSorted(["k0", "k1", "k2"]),
      // Slices of 100 notes (4 units each): the notes below are folded in parts.
      { keyCount: () => present.size, sliceUnits: 400, schedule: (run) => queue.push(run) },
    );
    const add = (key: string) => {
      present.add(key);
      order.added(key);
    };
    const remove = (key: string) => {
      present.delete(key);
      order.removed(key);
    };
    remove("k1");
    for (let i = 0; i < 150; i++) add(`n${i}`);
    add("k1");
    // The first slice folds 100 notes: k1's removal and 99 adds; k1's add waits.
    queue.shift()!();
    expect(order.unsettled).toBe(52);
    // Removed again and added again after that slice; k2 removed and added back.
    remove("k1");
    add("k1");
    remove("k2");
    add("k2");
    while (queue.length > 0) queue.shift()!();
    expect(order.unsettled).toBe(0);
    // Looked up: k1 once per slice it was noted in (2) and k2 once; no new key.
    expect(lookups).toBe(3);
    expect(order.keys()).toEqual([...present].sort(compareKeys));
    // Once all folded, the removals are forgotten: new keys are not looked up.
    for (let i = 150; i < 200; i++) add(`n${i}`);
    while (queue.length > 0) queue.shift()!();
    expect(lookups).toBe(3);
    expect(order.keys()).toEqual([...present].sort(compareKeys));
  });
});

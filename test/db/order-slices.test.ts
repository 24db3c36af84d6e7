import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { LEAF_UNITS_MAX, OrderedKeysBuilder } from "../../src/db/maple/ordered-keys-builder.ts";
import { LocalStore } from "../../src/store/local.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { bytes, saveBytes, T0 } from "./helpers.ts";

/**
 * The ordered index built in slices between event-loop turns (OrderedKeysBuilder,
 * DeferredOrder): no slice does more than its budget of work units (counted, not timed),
 * and writes racing a build are reflected exactly (checked against a sorted model).
 * Slices run from an injected scheduler the tests step by hand: no sleeps, no timing.
 */

// 100k-key builds on a loaded 2-core machine take seconds; nothing here waits on time.
setDefaultTimeout(120_000);

/** Units that exercise every digit kind: Latin-1, wide BMP, E000+, surrogates (paired and lone). */
const UNITS = [
  "a",
  "b",
  "z",
  "0",
  "~",
  "\u00fe",
  "\u00ff",
  "\u0100",
  "\u4e2d",
  "\ue000",
  "\uffff",
  "😀",
  "\ud800",
  "\udfff",
];

function randomKey(next: () => number, prefix: string): string {
  let key = prefix;
  const length = 1 + Math.floor(next() * 6);
  for (let i = 0; i < length; i++) key += UNITS[Math.floor(next() * UNITS.length)]!;
  return key;
}

/** Lets pending promise reactions run (no timers involved). */
async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

function listAll(db: MapleDB, nowMs: number): string[] {
  return db.list({}, nowMs).items.map((item) => item.key);
}

/**
 * Random writes (a share `setShare` of plain sets), deletes and expiries against a model of
 * live keys (key -> delete deadline; Infinity: none).
 */
function churn(db: MapleDB, seed: number, setShare = 0.6) {
  const next = seededRandom(seed);
  const model = new Map<string, number>();
  const pool: string[] = [];
  const value = bytes("v");
  const state = { now: T0 };
  const write = (): void => {
    const roll = next();
    const key =
      roll < 0.5 || pool.length === 0
        ? randomKey(next, next() < 0.5 ? "p/" : "")
        : pool[Math.floor(next() * pool.length)]!;
    if (roll < setShare) {
      pool.push(key);
      db.set(key, value, state.now);
      model.set(key, Number.POSITIVE_INFINITY);
    } else if (roll < 0.75) {
      db.delete(key, state.now);
      model.delete(key);
    } else if (roll < 0.9) {
      pool.push(key);
      const deleteIn = 1 + Math.floor(next() * 50);
      db.setE(key, value, 0, deleteIn, state.now);
      model.set(key, state.now + deleteIn);
    } else {
      state.now += Math.floor(next() * 20);
      db.purgeExpired(state.now, 1000);
      for (const [k, deadline] of model) if (deadline <= state.now) model.delete(k);
    }
  };
  const live = (): string[] => [...model.keys()].filter((k) => model.get(k)! > state.now).sort(compareKeys);
  return { next, write, live, state };
}

describe("OrderedKeysBuilder", () => {
  for (const [seed, prefix, count] of [
    [1, "", 5_000],
    [2, "user:", 20_000],
    // Many keys agreeing on a long stretch, then only wide units: High/Low splits above a leaf.
    [3, "svc/registry/\u4e2d\u4e2d/", 20_000],
  ] as const) {
    test(`sorts by code point order, drops repeats, and no step passes its budget (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const keys = new Set<string>();
      while (keys.size < count)
        keys.add(randomKey(next, seed === 3 && next() < 0.9 ? `${prefix}\u4e2d` : prefix));
      const all = [...keys];
      // Two sources, one key in both (a live iterator may read a key twice).
      const builder = new OrderedKeysBuilder([
        all.slice(0, count >> 1).values(),
        [all[0]!, ...all.slice(count >> 1)].values(),
      ]);
      const budget = LEAF_UNITS_MAX;
      let steps = 0;
      while (!builder.done) {
        const units = builder.step(budget);
        expect(units).toBeGreaterThan(0);
        expect(units).toBeLessThanOrEqual(budget);
        steps++;
      }
      expect(steps).toBeGreaterThan(count / budget);
      expect(builder.result().keys()).toEqual(all.sort(compareKeys));
    });
  }

  test("an empty source builds an empty index; one key read many times is one key", () => {
    const empty = new OrderedKeysBuilder([[].values()]);
    empty.step(100);
    expect(empty.done).toBe(true);
    expect(empty.result().size).toBe(0);
    const repeated = new OrderedKeysBuilder([Array.from({ length: 5000 }, () => "same").values()]);
    while (!repeated.done) repeated.step(LEAF_UNITS_MAX);
    expect(repeated.result().keys()).toEqual(["same"]);
  });
});

describe("Maple: the first list after a bulk load in one turn folds it in slices", () => {
  const SLICE = 8192;
  const KEYS = 100_000;

  function bulkLoaded(scheduler: ManualScheduler): MapleDB {
    const db = new MapleDB({ order: { schedule: scheduler.schedule, sliceUnits: SLICE } });
    const value = bytes("v");
    for (let i = 0; i < KEYS; i++) db.set(`k/${(i * 7919) % 1_000_003}`, value, T0);
    return db;
  }

  test("prepareOrder folds 100k noted keys in many slices, none over its budget, with no one-piece fold", async () => {
    const scheduler = new ManualScheduler();
    const db = bulkLoaded(scheduler);
    expect(db.orderReady()).toBe(false);
    let ready = false;
    void db.prepareOrder().then(() => {
      ready = true;
    });
    const slices = scheduler.drain();
    await settleMicrotasks();
    expect(ready).toBe(true);
    expect(db.orderReady()).toBe(true);
    // 100k keys read, split and sorted: many slices, each within the budget.
    expect(slices).toBeGreaterThan(KEYS / SLICE);
    expect(db.orderStats.maxSliceUnits).toBeLessThanOrEqual(SLICE);
    expect(db.orderStats.syncSettles).toBe(0);
    const page = db.list({ prefix: "k/", limit: 100 }, T0);
    expect(page.items.length).toBe(100);
    expect(db.orderStats.syncSettles).toBe(0);
    // Kept from the first write: folded, never built from the maps.
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.folded).toBe(KEYS);
  });

  test("an lstore list waits for the slices instead of folding in its own turn; two first lists share the folds", async () => {
    const scheduler = new ManualScheduler();
    const db = bulkLoaded(scheduler);
    const store = new LocalStore({ clock: new ManualClock(T0), db });
    try {
      const first = store.list({ prefix: "k/", limit: 1001 });
      const second = store.list({ prefix: "k/1" });
      let answered = 0;
      void first.then(() => answered++);
      void second.then(() => answered++);
      await settleMicrotasks();
      // Nothing answered before the slices ran (the old engine built the index right away).
      expect(answered).toBe(0);
      expect(scheduler.pending).toBe(1);
      scheduler.drain();
      const [page, other] = await Promise.all([first, second]);
      const all = listAll(db, T0);
      expect(page.items.map((item) => item.key)).toEqual(all.slice(0, 1001));
      expect(other.items.map((item) => item.key)).toEqual(all.filter((key) => key.startsWith("k/1")));
      expect(db.orderStats.builds).toBe(0);
      expect(db.orderStats.syncSettles).toBe(0);
    } finally {
      await store.close();
    }
  });

  test("a list that cannot wait (a state machine step) still answers exactly, in one piece", () => {
    const scheduler = new ManualScheduler();
    const db = bulkLoaded(scheduler);
    void db.prepareOrder();
    for (let i = 0; i < 5; i++) scheduler.runOne();
    db.set("k/0-new", bytes("x"), T0);
    const keys = listAll(db, T0);
    expect(keys.length).toBe(KEYS + 1);
    expect(keys).toEqual([...keys].sort(compareKeys));
    expect(db.orderStats.syncSettles).toBe(1);
    // The slices left queued find the work done.
    scheduler.drain();
    expect(db.orderStats.builds).toBe(0);
  });

  for (const seed of [11, 12, 13, 14]) {
    test(`writes, deletes and expiries racing the build and the fold are listed exactly (seed ${seed})`, async () => {
      const scheduler = new ManualScheduler();
      // Small slices: many turns for writes to land between.
      const db = new MapleDB({ order: { schedule: scheduler.schedule, sliceUnits: LEAF_UNITS_MAX } });
      const { next, write, live, state } = churn(db, seed, 0.55);
      for (let i = 0; i < 10_000; i++) write();
      for (let round = 0; round < 4; round++) {
        // A first list (or one after many writes) waits; writes land between its slices.
        let answer: string[] | undefined;
        const listed = (async () => {
          while (!db.orderReady()) await db.prepareOrder();
          answer = listAll(db, state.now);
        })();
        let guard = 0;
        while (answer === undefined && guard++ < 100_000) {
          for (let w = Math.floor(next() * 40); w > 0; w--) write();
          if (next() < 0.005) {
            // A reader that cannot wait, mid-build.
            expect(listAll(db, state.now)).toEqual(live());
          }
          scheduler.runOne();
          await settleMicrotasks();
        }
        await listed;
        expect(answer).toEqual(live());
        expect(db.orderStats.maxSliceUnits).toBeLessThanOrEqual(LEAF_UNITS_MAX);
        // Then many writes with no reader: notes pile up (or the index is dropped) again.
        for (let i = 0; i < 2_000 + Math.floor(next() * 12_000); i++) write();
      }
      expect(listAll(db, state.now)).toEqual(live());
    }, 120_000);
  }

  test("a snapshot load mid-fold replaces the order: waiters resume and the loaded keys are listed at once", async () => {
    const scheduler = new ManualScheduler();
    const source = new MapleDB();
    for (let i = 0; i < 3000; i++) source.set(`s/${i}`, bytes("s"), T0);
    const snapshot = await saveBytes(source, T0);
    const db = bulkLoaded(scheduler);
    let resumed = false;
    void db.prepareOrder().then(() => {
      resumed = true;
    });
    for (let i = 0; i < 3; i++) scheduler.runOne();
    await db.load(
      (async function* () {
        yield snapshot;
      })(),
    );
    await settleMicrotasks();
    expect(resumed).toBe(true);
    // The load built its keys' index as it read them (saved in key order).
    expect(db.orderReady()).toBe(true);
    expect(listAll(db, T0)).toEqual(listAll(source, T0));
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.syncSettles).toBe(0);
  });

  test("a build (of a dropped index) whose notes outgrow their bound starts over, and still ends", async () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule, sliceUnits: LEAF_UNITS_MAX } });
    db.dropOrder();
    for (let i = 0; i < 20_000; i++) db.set(`a/${i}`, bytes("v"), T0);
    let ready = false;
    void db.prepareOrder().then(() => {
      ready = true;
    });
    let added = 0;
    for (let turn = 0; turn < 1000 && !ready; turn++) {
      // A burst far above the keys read so far.
      for (let i = 0; i < 5000; i++) db.set(`b/${added++}`, bytes("v"), T0);
      scheduler.runOne();
      await settleMicrotasks();
    }
    expect(ready).toBe(true);
    expect(db.orderStats.restarts).toBeGreaterThan(0);
    expect(listAll(db, T0).length).toBe(20_000 + added);
  }, 120_000);
});

describe("Maple: a built index is kept up in the background", () => {
  for (const seed of [21, 22, 23]) {
    test(`writes, deletes and expiries with no reader are folded between turns; the next list does no work (seed ${seed})`, async () => {
      const scheduler = new ManualScheduler();
      const db = new MapleDB({ order: { schedule: scheduler.schedule, sliceUnits: LEAF_UNITS_MAX } });
      const { next, write, live, state } = churn(db, seed);
      for (let i = 0; i < 5_000; i++) write();
      void db.prepareOrder();
      scheduler.drain();
      expect(db.orderReady()).toBe(true);
      for (let round = 0; round < 20; round++) {
        // Bursts of writes, more than one slice folds, with a turn between some of them.
        const turns = 1 + Math.floor(next() * 20);
        for (let turn = 0; turn < turns; turn++) {
          for (let w = Math.floor(next() * 800); w > 0; w--) write();
          if (next() < 0.7) scheduler.runOne();
        }
        // Idle: the folds catch up with no reader asking.
        scheduler.drain();
        expect(db.orderReady()).toBe(true);
        const slices = db.orderStats.slices;
        expect(listAll(db, state.now)).toEqual(live());
        // The list found the index ready: it ran no slice and built nothing in one piece.
        expect(db.orderStats.slices).toBe(slices);
        // Sometimes a reader mid-fold (notes left): it still answers exactly.
        if (next() < 0.3) {
          for (let w = 0; w < 3000; w++) write();
          scheduler.runOne();
          while (!db.orderReady()) {
            const waited = db.prepareOrder();
            scheduler.drain();
            await waited;
          }
          expect(listAll(db, state.now)).toEqual(live());
        }
      }
      expect(db.orderStats.builds).toBe(0);
      expect(db.orderStats.syncSettles).toBe(0);
      expect(db.orderStats.backgroundSlices).toBeGreaterThan(0);
      expect(db.orderStats.maxSliceUnits).toBeLessThanOrEqual(LEAF_UNITS_MAX);
    });
  }

  test("a bulk load, a batch per turn, keeps the index built and folded", async () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    db.set("first", bytes("v"), T0);
    void db.prepareOrder();
    scheduler.drain();
    expect(listAll(db, T0)).toEqual(["first"]);
    const value = bytes("v");
    for (let batch = 0; batch < 100; batch++) {
      for (let i = 0; i < 1000; i++) db.set(`k/${((batch * 1000 + i) * 7919) % 1_000_003}`, value, T0);
      scheduler.runOne();
    }
    scheduler.drain();
    // No reader since the first list: the notes were folded, not dropped.
    expect(db.orderReady()).toBe(true);
    const page = db.list({ prefix: "k/", limit: 100 }, T0);
    expect(page.items.length).toBe(100);
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.syncSettles).toBe(0);
    expect(listAll(db, T0).length).toBe(100_001);
  });

  test("a snapshot load during a fold replaces the order; the old one's queued slices do nothing", async () => {
    const scheduler = new ManualScheduler();
    const source = new MapleDB();
    for (let i = 0; i < 3000; i++) source.set(`s/${i}`, bytes("s"), T0);
    listAll(source, T0);
    const snapshot = await saveBytes(source, T0);
    const db = new MapleDB({ order: { schedule: scheduler.schedule, sliceUnits: LEAF_UNITS_MAX } });
    const { write } = churn(db, 31);
    for (let i = 0; i < 2000; i++) write();
    void db.prepareOrder();
    scheduler.drain();
    for (let i = 0; i < 20_000; i++) write();
    scheduler.runOne();
    expect(db.orderReady()).toBe(false);
    await db.load(
      (async function* () {
        yield snapshot;
      })(),
    );
    scheduler.drain();
    expect(db.orderReady()).toBe(true);
    expect(listAll(db, T0)).toEqual(listAll(source, T0));
    // Writes after the load are folded into the loaded index.
    db.set("t/after", bytes("v"), T0);
    db.delete("s/7", T0);
    scheduler.drain();
    expect(listAll(db, T0)).toEqual(
      [...listAll(source, T0).filter((k) => k !== "s/7"), "t/after"].sort(compareKeys),
    );
    expect(db.orderStats.syncSettles).toBe(0);
  });
});

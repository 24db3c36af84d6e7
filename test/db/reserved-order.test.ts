/**
 * The reserved keys' own index (keys starting with NUL: the lock queues), kept sorted on
 * every write in DeferredOrder so a range inside that space is listed without building
 * the full ordered index. Checked against a model (a Set and a sorted array) through
 * adds, removes, dropped indexes, builds, expiry, purges and snapshot loads; and by
 * counting that no such listing builds anything.
 */
import { describe, expect, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { inReservedSpace } from "../../src/db/maple/order-costs.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { bytes, pieces, saveBytes, T0 } from "./helpers.ts";

const NUL = "\u0000";
const QUEUES = [`${NUL}q1${NUL}a${NUL}`, `${NUL}q1${NUL}b${NUL}`, `${NUL}q2${NUL}ab${NUL}`, `${NUL}`];

function randomKey(next: () => number): string {
  const roll = next();
  if (roll < 0.5) return `user/${Math.floor(next() * 500)}`;
  if (roll < 0.55) return `${Math.floor(next() * 3)}`.repeat(Math.floor(next() * 2)); // "" too
  return (
    QUEUES[Math.floor(next() * QUEUES.length)]! +
    Math.floor(next() * 200)
      .toString(16)
      .padStart(4, "0")
  );
}

function scanRange(order: DeferredOrder, prefix: string, after: string | undefined): string[] {
  const out: string[] = [];
  order.scanRange({ prefix }, after ?? prefix, after !== undefined, (key) => {
    if (!key.startsWith(prefix)) return false;
    out.push(key);
    return true;
  });
  return out;
}

describe("inReservedSpace", () => {
  test("only ranges whose every key starts with NUL", () => {
    expect(inReservedSpace({ prefix: `${NUL}q` })).toBe(true);
    expect(inReservedSpace({ prefix: NUL })).toBe(true);
    expect(inReservedSpace({ prefix: "a" })).toBe(false);
    expect(inReservedSpace({ prefix: "" })).toBe(false);
    expect(inReservedSpace({})).toBe(false);
    expect(inReservedSpace({ from: NUL, to: "\u0001" })).toBe(true);
    expect(inReservedSpace({ from: `${NUL}a`, to: `${NUL}b` })).toBe(true);
    expect(inReservedSpace({ from: NUL })).toBe(false);
    expect(inReservedSpace({ from: NUL, to: "\u0001a" })).toBe(false);
    expect(inReservedSpace({ from: "", to: `${NUL}b` })).toBe(false);
  });
});

describe("DeferredOrder's reserved keys", () => {
  for (const seed of [21, 22, 23]) {
    test(`random adds, removes, drops and builds agree with a sorted array (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const present = new Set<string>();
      const make = (order?: DeferredOrder) =>
        order?.dropped() ??
        new DeferredOrder(
          (key) => present.has(key),
          () => [present.keys()],
        );
      let order = make();
      let scans = 0;
      for (let step = 0; step < 6_000; step++) {
        const roll = next();
        const key = randomKey(next);
        if (roll < 0.5) {
          if (!present.has(key)) {
            present.add(key);
            order.added(key);
          }
        } else if (roll < 0.9) {
          if (present.delete(key)) order.removed(key);
        } else if (roll < 0.97) {
          const prefix = next() < 0.3 ? NUL : QUEUES[Math.floor(next() * QUEUES.length)]!;
          const model = [...present].filter((k) => k.startsWith(prefix)).sort(compareKeys);
          const after =
            next() < 0.3 && model.length > 0 ? model[Math.floor(next() * model.length)] : undefined;
          const built = order.built;
          scans++;
          expect(scanRange(order, prefix, after)).toEqual(
            after === undefined ? model : model.filter((k) => compareKeys(k, after) > 0),
          );
          // Read from the reserved index: the full one stays as it was.
          expect(order.built).toBe(built);
        } else if (roll < 0.99) {
          order = make(order);
        } else {
          // A full read builds (or folds) the whole index; the reserved one is unchanged by it.
          expect(order.keys()).toEqual([...present].sort(compareKeys));
        }
      }
      expect(order.reservedKeys()).toEqual([...present].filter((k) => k.startsWith(NUL)).sort(compareKeys));
      expect(scans).toBeGreaterThan(100);
    });
  }

  test("an index settled at construction (a snapshot load) yields its reserved keys", () => {
    const present = new Set([`${NUL}q1${NUL}a${NUL}0001`, "", "a", `${NUL}`, `${NUL}q`, "\u0001"]);
    const settledFrom = new DeferredOrder(
      (key) => present.has(key),
      () => [present.keys()],
    );
    for (const key of present) settledFrom.added(key);
    const order = new DeferredOrder(
      (key) => present.has(key),
      () => [present.keys()],
      settledFrom.settle(),
    );
    expect(order.reservedKeys()).toEqual([NUL, `${NUL}q`, `${NUL}q1${NUL}a${NUL}0001`]);
  });
});

describe("MapleDB listing inside the reserved space", () => {
  test("expiry, purges, a dropped index and a snapshot load: exact, and never a build", async () => {
    const db = new MapleDB();
    const queue = `${NUL}q3${NUL}job${NUL}`;
    for (let i = 0; i < 3_000; i++) db.set(`user/${i}`, bytes("u"), T0);
    for (let i = 0; i < 40; i++)
      db.setE(`${queue}${i.toString(16).padStart(4, "0")}`, bytes("w"), 0, 1_000 + i * 100, T0);
    db.set(`${NUL}q3${NUL}jobs`, bytes("other"), T0); // not in the queue's prefix
    const listed = (nowMs: number, on: MapleDB = db) =>
      on.list({ prefix: queue, keysOnly: true }, nowMs).items.map((item) => item.key);
    const expected = (nowMs: number) =>
      Array.from({ length: 40 }, (_, i) => i)
        .filter((i) => nowMs < T0 + 1_000 + i * 100)
        .map((i) => `${queue}${i.toString(16).padStart(4, "0")}`);
    expect(listed(T0)).toEqual(expected(T0));
    // Past some delete deadlines: hidden before they are purged, gone after.
    expect(listed(T0 + 2_050)).toEqual(expected(T0 + 2_050));
    expect(db.count({ prefix: queue }, T0 + 2_050)).toBe(expected(T0 + 2_050).length);
    db.purgeExpired(T0 + 2_050, 1_000);
    expect(listed(T0 + 2_050)).toEqual(expected(T0 + 2_050));
    // Pages.
    const first = db.list({ prefix: queue, limit: 5, keysOnly: true }, T0 + 2_050);
    const second = db.list({ prefix: queue, limit: 5, after: first.next, keysOnly: true }, T0 + 2_050);
    expect([...first.items, ...second.items].map((item) => item.key)).toEqual(
      expected(T0 + 2_050).slice(0, 10),
    );
    db.dropOrder();
    db.delete(`${queue}0020`, T0 + 2_050);
    const afterDelete = expected(T0 + 2_050).filter((key) => !key.endsWith("0020"));
    expect(listed(T0 + 2_050)).toEqual(afterDelete);
    expect(db.orderStats.syncSettles).toBe(0);
    expect(db.orderStats.builds).toBe(0);
    // A snapshot load: the loaded engine lists the same, and its full index agrees.
    const loaded = new MapleDB();
    await loaded.load(pieces(await saveBytes(db, T0 + 2_050), 4096));
    expect(listed(T0 + 2_050, loaded)).toEqual(afterDelete);
    expect(loaded.orderStats.syncSettles).toBe(0);
    // The full index (built now) lists the reserved space the same way.
    const viaFull = loaded
      .list({ from: "", to: "\u0001", keysOnly: true }, T0 + 2_050)
      .items.map((item) => item.key)
      .filter((key) => key.startsWith(queue));
    expect(viaFull).toEqual(afterDelete);
  });
});

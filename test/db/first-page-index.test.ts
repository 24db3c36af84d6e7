import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { BLOCK_KEYS_MAX, BLOCK_PENDING_MAX } from "../../src/db/maple/coded-run.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { FLAG_LISTED, SnapshotEncoder } from "../../src/db/maple/snapshot-codec.ts";
import { Entry } from "../../src/db/maple/timed-entry.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { bytes, concat, saveBytes, T0 } from "./helpers.ts";

/**
 * The ordered index kept from the first write ("Ordered index from the first write" in
 * the README): the first page of any store (never listed, just bulk-loaded, just loaded
 * from a snapshot) is served by the index, and its work is counted (MapleDB.orderWork:
 * keys the index read or moved), not timed: O(log n + page), whatever n is.
 */

setDefaultTimeout(60_000);

const KEYS = 50_000;
const LIMIT = 100;
/**
 * Most work a page of LIMIT keys may do: the keys it visits (LIMIT + 1) plus the merges of
 * pending keys in the blocks it reads (a block and its pending keys each), at most
 * ceil(LIMIT / a block's least keys) + 2 blocks. Independent of the keys in the store;
 * a scan of the store (what main did for a never-listed store) reads all KEYS.
 */
const PAGE_WORK_MAX =
  LIMIT + 1 + (Math.ceil(LIMIT / (BLOCK_KEYS_MAX / 4)) + 2) * (BLOCK_KEYS_MAX + 2 * BLOCK_PENDING_MAX);

function keyOf(i: number): string {
  return `svc/${String((i * 7919) % 1_000_003).padStart(7, "0")}`;
}

function loadInBatches(db: MapleDB, scheduler: ManualScheduler, count: number, batch: number): void {
  const value = bytes("v");
  for (let i = 0; i < count; i++) {
    db.set(keyOf(i), value, T0);
    // A turn between batches, as requests arriving over a connection give.
    if (i % batch === batch - 1) scheduler.runOne();
  }
}

function pageKeys(db: MapleDB, after?: string): string[] {
  return db.list({ prefix: "svc/", limit: LIMIT, after }, T0).items.map((item) => item.key);
}

function sortedModel(count: number): string[] {
  return Array.from({ length: count }, (_, i) => keyOf(i)).sort(compareKeys);
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

async function loaded(data: Uint8Array, scheduler = new ManualScheduler()): Promise<MapleDB> {
  const db = new MapleDB({ order: { schedule: scheduler.schedule } });
  await db.load(once(data));
  return db;
}

/** The keys of a snapshot's records, in the order they were written. */
async function recordOrder(data: Uint8Array): Promise<string[]> {
  // The keys of this file's stores are ASCII "svc/" + 7 digits: found in the raw bytes.
  const keys: string[] = [];
  const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
  for (const match of text.matchAll(/svc\/\d{7}/g)) keys.push(match[0]);
  return keys;
}

describe("the first page of a store is served by the index: O(log n + page) work", () => {
  test("a never-listed store loaded a batch per turn: the first page reads a bounded number of keys", () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    loadInBatches(db, scheduler, KEYS, 1000);
    scheduler.drain();
    expect(db.orderReady()).toBe(true);
    const work = db.orderWork;
    const slices = db.orderStats.slices;
    expect(pageKeys(db)).toEqual(sortedModel(KEYS).slice(0, LIMIT));
    expect(db.orderWork - work).toBeLessThanOrEqual(PAGE_WORK_MAX);
    expect(db.orderWork - work).toBeLessThan(KEYS / 10);
    // No slice, no build, no fold in one piece for it.
    expect(db.orderStats.slices).toBe(slices);
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.syncSettles).toBe(0);
    // A page from the middle too.
    const model = sortedModel(KEYS);
    const before = db.orderWork;
    expect(pageKeys(db, model[KEYS / 2]!)).toEqual(model.slice(KEYS / 2 + 1, KEYS / 2 + 1 + LIMIT));
    expect(db.orderWork - before).toBeLessThanOrEqual(PAGE_WORK_MAX);
  });

  test("a page's work does not grow with the store: 5k and 50k keys cost the same bound", () => {
    const costs: number[] = [];
    for (const count of [5_000, KEYS]) {
      const scheduler = new ManualScheduler();
      const db = new MapleDB({ order: { schedule: scheduler.schedule } });
      loadInBatches(db, scheduler, count, 500);
      scheduler.drain();
      const work = db.orderWork;
      expect(pageKeys(db).length).toBe(LIMIT);
      costs.push(db.orderWork - work);
    }
    expect(costs[1]!).toBeLessThanOrEqual(PAGE_WORK_MAX);
    expect(costs[1]!).toBeLessThan(3 * costs[0]!);
  });

  test("a store restarted from its snapshot: the load builds the index (sorting the keys in steps), the first page reads a bounded number", async () => {
    const scheduler = new ManualScheduler();
    const source = new MapleDB({ order: { schedule: scheduler.schedule } });
    loadInBatches(source, scheduler, KEYS, 1000);
    // Rewritten with no turn after: more notes than one slice folds.
    for (let i = 0; i < 5000; i++) source.delete(keyOf(i), T0);
    for (let i = 0; i < 5000; i++) source.set(keyOf(i), bytes("v"), T0);
    source.setE("svc/timed", bytes("t"), 0, 60_000, T0);
    source.set("\u0000q/lock/1", bytes("w"), T0);
    // Notes left unfolded at the save: the save leaves them (no fold or copy of the whole
    // index in one turn: 0.5 s at 300k keys when saves were written in key order).
    expect(source.orderReady()).toBe(false);
    const foldedBefore = source.orderStats.folded;
    const data = await saveBytes(source, T0);
    expect(source.orderStats.folded).toBe(foldedBefore);
    // Version 2, flags 0: what every release since revisions reads (a rolling upgrade).
    expect(new DataView(data.buffer, data.byteOffset).getUint32(8, true)).toBe(2);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(12, true)).toBe(0);
    const written = await recordOrder(data);
    expect(written.length).toBeGreaterThan(KEYS / 2);
    expect(written).not.toEqual([...written].sort(compareKeys));

    const next = new ManualScheduler();
    const db = await loaded(data, next);
    // Built in the load: nothing queued, ready at once.
    expect(next.pending).toBe(0);
    expect(db.orderReady()).toBe(true);
    const work = db.orderWork;
    const model = [...sortedModel(KEYS), "svc/timed"].sort(compareKeys);
    expect(pageKeys(db)).toEqual(model.slice(0, LIMIT));
    expect(db.orderWork - work).toBeLessThanOrEqual(PAGE_WORK_MAX);
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.syncSettles).toBe(0);
    expect(db.orderedKeys()).toEqual(source.orderedKeys());
    expect(db.list({ prefix: "\u0000q/", limit: 5 }, T0).items.map((item) => item.key)).toEqual([
      "\u0000q/lock/1",
    ]);
  });
});

describe("older snapshots (keys in hash order) still load, sorted in the load", () => {
  function source(): MapleDB {
    const db = new MapleDB();
    for (let i = 0; i < 3000; i++) db.set(keyOf(i), bytes(`v${i}`), T0);
    db.set("\u0000q/lock/1", bytes("w"), T0);
    db.set("\ue000wide", bytes("w"), T0);
    db.set("😀emoji", bytes("w"), T0);
    return db;
  }

  /**
   * A snapshot written the way the releases before wrote it: records in hash-map order;
   * version 3 (a listed store's, from the release that built its index on a first list)
   * with FLAG_LISTED in its header (patched into a version 2 one: the encoder writes 2).
   */
  function inHashOrder(db: MapleDB, version: 2 | 3): Uint8Array {
    const encoder = new SnapshotEncoder(db.revision);
    const keys = db.orderedKeys();
    // Any order that is not sorted: reversed, then every other key first.
    const order = [...keys.filter((_, i) => i % 2 === 1).reverse(), ...keys.filter((_, i) => i % 2 === 0)];
    for (const key of order) {
      const info = db.getEntry(key, T0)!;
      encoder.add(
        key,
        new Entry(info.value!, info.version, info.createRevision, info.modRevision),
        Infinity,
        Infinity,
      );
    }
    const chunks: Uint8Array[] = [];
    for (const piece of encoder.takeReady()) chunks.push(piece);
    for (const piece of encoder.finish()) chunks.push(piece);
    const data = concat(chunks);
    if (version === 3) {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      view.setUint32(8, 3, true);
      view.setUint32(12, FLAG_LISTED, true);
      view.setUint32(data.length - 4, Bun.hash.crc32(data.subarray(0, data.length - 4)), true);
    }
    return data;
  }

  for (const version of [2, 3] as const) {
    test(`version ${version} in hash order: loads, lists exactly, index ready at once`, async () => {
      const from = source();
      const data = inHashOrder(from, version);
      expect(new DataView(data.buffer, data.byteOffset).getUint32(8, true)).toBe(version);
      const scheduler = new ManualScheduler();
      const db = await loaded(data, scheduler);
      expect(scheduler.pending).toBe(0);
      expect(db.orderReady()).toBe(true);
      expect(db.orderedKeys()).toEqual(from.orderedKeys());
      expect(db.list({ prefix: "svc/", limit: 7, after: keyOf(5) }, T0)).toEqual(
        from.list({ prefix: "svc/", limit: 7, after: keyOf(5) }, T0),
      );
      expect(db.list({ prefix: "\u0000q/" }, T0).items.length).toBe(1);
      expect(db.orderStats.syncSettles).toBe(0);
      // And saved again: every key, in hash order (the load sorts them).
      const again = await saveBytes(db, T0);
      const keys = await recordOrder(again);
      expect([...keys].sort(compareKeys)).toEqual(from.orderedKeys().filter((key) => key.startsWith("svc/")));
    });
  }

  test("flags it does not know are still refused", async () => {
    const data = inHashOrder(source(), 2).slice();
    const view = new DataView(data.buffer);
    view.setUint32(12, FLAG_LISTED, true);
    view.setUint32(data.length - 4, Bun.hash.crc32(data.subarray(0, data.length - 4)), true);
    await expect(loaded(data)).rejects.toThrow(/reserved header flags are 0x00000001/);
  });
});

describe("lists against a sorted model across writes, deletes, expiry, partial folds and loads", () => {
  for (const seed of [41, 42, 43]) {
    test(`seed ${seed}`, async () => {
      const next = seededRandom(seed);
      const scheduler = new ManualScheduler();
      let db = new MapleDB({ order: { schedule: scheduler.schedule } });
      const model = new Map<string, number>();
      let now = T0;
      const live = (): string[] => [...model.keys()].filter((k) => model.get(k)! > now).sort(compareKeys);
      for (let step = 0; step < 6000; step++) {
        const roll = next();
        const key = `k/${Math.floor(next() * 2000)}${next() < 0.1 ? "\ue000" : ""}`;
        if (roll < 0.5) {
          db.set(key, bytes("v"), now);
          model.set(key, Number.POSITIVE_INFINITY);
        } else if (roll < 0.7) {
          db.delete(key, now);
          model.delete(key);
        } else if (roll < 0.8) {
          const deleteIn = 1 + Math.floor(next() * 30);
          db.setE(key, bytes("t"), 0, deleteIn, now);
          model.set(key, now + deleteIn);
        } else if (roll < 0.9) {
          now += Math.floor(next() * 10);
          db.purgeExpired(now, 50);
          if (next() < 0.5) scheduler.runOne();
        } else if (roll < 0.995) {
          const after = next() < 0.5 ? undefined : `k/${Math.floor(next() * 2000)}`;
          const limit = 1 + Math.floor(next() * 40);
          const expected = live()
            .filter((k) => after === undefined || compareKeys(k, after) > 0)
            .slice(0, limit);
          expect(db.list({ prefix: "k/", limit, after }, now).items.map((item) => item.key)).toEqual(
            expected,
          );
        } else {
          const data = await saveBytes(db, now);
          db = await loaded(data, scheduler);
          expect(db.orderReady()).toBe(true);
          for (const [k, deadline] of model) if (deadline <= now && !db.has(k, now)) model.delete(k);
        }
      }
      expect(db.list({ prefix: "k/" }, now).items.map((item) => item.key)).toEqual(live());
    });
  }
});

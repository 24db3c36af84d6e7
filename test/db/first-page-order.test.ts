import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import type { ListOptions, ListPage } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/ordered-keys.ts";
import { SCAN_PAGE_MAX } from "../../src/db/maple/page-scan.ts";
import { FLAG_LISTED } from "../../src/db/maple/snapshot-codec.ts";
import { LocalStore } from "../../src/store/local.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { bytes, saveBytes, T0 } from "./helpers.ts";

/**
 * A page or count asked while Maple's ordered index is not built is served by one scan of
 * the hash maps (src/db/maple/page-scan.ts); it must equal what the built index gives.
 * Checked against a twin database whose index is built, and against a sorted model, for
 * random keys of every code unit kind, ranges, prefixes, cursors, limits, keys-only and
 * expiry at the read time. Slices run from a scheduler the test holds, so the scanned
 * database's index stays unbuilt (or mid-build) exactly as long as the test wants.
 */

/** Units of every kind that sorts differently: Latin-1, wide BMP, E000+, surrogates (paired and lone). */
const UNITS = [
  "a",
  "b",
  "z",
  "0",
  "/",
  "\u00ff",
  "\u0100",
  "\u4e2d",
  "\ue000",
  "\uffff",
  "😀",
  "\ud800",
  "\udfff",
];

function randomKey(next: () => number): string {
  let key = "";
  const length = 1 + Math.floor(next() * 5);
  for (let i = 0; i < length; i++) key += UNITS[Math.floor(next() * UNITS.length)]!;
  return key;
}

interface ModelEntry {
  value: string;
  expireAt: number;
  deleteAt: number;
}

/**
 * The same random writes into `dbs` (one revision counter each: they stay equal) and a
 * model of what is present: sets, setE with deadlines around T0, deletes, expires.
 */
function fill(
  dbs: MapleDB[],
  next: () => number,
  writes: number,
  model = new Map<string, ModelEntry>(),
): Map<string, ModelEntry> {
  for (let i = 0; i < writes; i++) {
    const key = randomKey(next);
    const r = next();
    if (r < 0.5) {
      const value = `v${i}`;
      for (const db of dbs) db.set(key, bytes(value), T0);
      model.set(key, { value, expireAt: Infinity, deleteAt: Infinity });
    } else if (r < 0.75) {
      const value = `e${i}`;
      const expireIn = next() < 0.5 ? 0 : 1 + Math.floor(next() * 100);
      const deleteIn = expireIn === 0 || next() < 0.5 ? 1 + Math.floor(next() * 100) : 0;
      for (const db of dbs) db.setE(key, bytes(value), expireIn, deleteIn, T0);
      model.set(key, {
        value,
        expireAt: expireIn === 0 ? Infinity : T0 + expireIn,
        deleteAt: deleteIn === 0 ? Infinity : T0 + deleteIn,
      });
    } else if (r < 0.9) {
      for (const db of dbs) db.delete(key, T0);
      model.delete(key);
    } else {
      for (const db of dbs) db.expire(key, T0);
      const entry = model.get(key);
      if (entry !== undefined) entry.expireAt = Math.min(entry.expireAt, T0);
    }
  }
  return model;
}

function randomBound(next: () => number, keys: string[]): string {
  // A present key, a prefix of one, or a random key: the edges of ranges matter most.
  const r = next();
  if (keys.length > 0 && r < 0.4) return keys[Math.floor(next() * keys.length)]!;
  if (keys.length > 0 && r < 0.6) {
    const key = keys[Math.floor(next() * keys.length)]!;
    const cut = key.slice(0, Math.floor(next() * key.length));
    // Not half a surrogate pair: the stores refuse such bounds.
    return cut.isWellFormed() ? cut : "";
  }
  const key = randomKey(next);
  return key.isWellFormed() ? key : "a";
}

function randomQuery(next: () => number, keys: string[]): ListOptions {
  const options: ListOptions = {};
  const shape = next();
  if (shape < 0.35) options.prefix = randomBound(next, keys).slice(0, 1 + Math.floor(next() * 2));
  else if (shape < 0.7) {
    if (next() < 0.8) options.from = randomBound(next, keys);
    if (next() < 0.8) options.to = randomBound(next, keys);
  }
  if (next() < 0.5) options.after = randomBound(next, keys);
  options.limit = next() < 0.1 ? SCAN_PAGE_MAX : 1 + Math.floor(next() * 12);
  if (next() < 0.3) options.keysOnly = true;
  return options;
}

/** What a page must hold, from the model: live keys of the range after the cursor, in byte order. */
function modelPage(
  model: Map<string, ModelEntry>,
  options: ListOptions,
  nowMs: number,
): { keys: string[]; more: boolean } {
  const keys = [...model.entries()]
    .filter(([, entry]) => nowMs < entry.expireAt && nowMs < entry.deleteAt)
    .map(([key]) => key)
    .filter((key) => {
      if (options.prefix !== undefined) {
        if (!key.startsWith(options.prefix)) return false;
      } else {
        if (options.from !== undefined && compareKeys(key, options.from) < 0) return false;
        if (options.to !== undefined && compareKeys(key, options.to) >= 0) return false;
      }
      return options.after === undefined || compareKeys(key, options.after) > 0;
    })
    .sort(compareKeys);
  const limit = options.limit ?? Infinity;
  return { keys: keys.slice(0, limit), more: keys.length > limit };
}

function check(
  scanned: MapleDB,
  built: MapleDB,
  model: Map<string, ModelEntry>,
  options: ListOptions,
  nowMs: number,
): void {
  const scansBefore = scanned.orderStats.scans;
  const page = scanned.list(options, nowMs);
  expect(scanned.orderStats.scans).toBe(scansBefore + 1);
  const want: ListPage = built.list(options, nowMs);
  expect(page).toEqual(want);
  const expected = modelPage(model, options, nowMs);
  expect(page.items.map((item) => item.key)).toEqual(expected.keys);
  expect(page.more).toBe(expected.more);
  const range = { prefix: options.prefix, from: options.from, to: options.to };
  expect(scanned.count(range, nowMs)).toBe(built.count(range, nowMs));
  expect(scanned.orderStats.scans).toBe(scansBefore + 2);
}

describe("a page before the index is built: a scan of the maps, the same page as the index", () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    test(`random keys, ranges, cursors, limits and expiry (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const scheduler = new ManualScheduler();
      const scanned = new MapleDB({ shards: 8, order: { schedule: scheduler.schedule } });
      const built = new MapleDB({ shards: 4 });
      const model = fill([scanned, built], next, 400 + Math.floor(next() * 1500));
      built.list({}, T0);
      const keys = [...model.keys()];
      for (let q = 0; q < 300; q++) {
        // Reads before, at and past the deadlines (none of which was purged).
        const nowMs = T0 - 1 + Math.floor(next() * 120);
        check(scanned, built, model, randomQuery(next, keys), nowMs);
        expect(scanned.orderStats.builds).toBe(0);
      }
      // Whole walks page by page, the cursor from each page's `next`.
      for (let walk = 0; walk < 10; walk++) {
        const nowMs = T0 + Math.floor(next() * 120);
        const options = randomQuery(next, keys);
        options.after = undefined;
        options.limit = 1 + Math.floor(next() * 7);
        let after: string | undefined;
        for (let page = 0; page < 2000; page++) {
          const got = scanned.list({ ...options, after }, nowMs);
          expect(got).toEqual(built.list({ ...options, after }, nowMs));
          if (!got.more) break;
          after = got.next;
        }
      }
      expect(scanned.orderStats.syncSettles).toBe(0);
      // The scans started the build, to run in the background; once run, the index serves.
      expect(scheduler.pending).toBe(1);
      scheduler.drain();
      expect(scanned.orderReady()).toBe(true);
      const scans = scanned.orderStats.scans;
      check2(scanned, built, randomQuery(next, keys));
      expect(scanned.orderStats.scans).toBe(scans);
    });
  }

  function check2(a: MapleDB, b: MapleDB, options: ListOptions): void {
    expect(a.list(options, T0)).toEqual(b.list(options, T0));
  }

  test("while the build runs, with writes between its slices, pages still match the model", () => {
    const next = seededRandom(77);
    const scheduler = new ManualScheduler();
    const scanned = new MapleDB({ shards: 16, order: { schedule: scheduler.schedule, sliceUnits: 64 } });
    const model = fill([scanned], next, 3000);
    const page = scanned.list({ limit: 5 }, T0);
    expect(page.items.map((item) => item.key)).toEqual(modelPage(model, { limit: 5 }, T0).keys);
    let guard = 0;
    let scannedPages = 0;
    while (scheduler.pending > 0 && guard++ < 100_000) {
      scheduler.runOne();
      // Writes land between slices; pages read the maps as they are now.
      fill([scanned], next, Math.floor(next() * 4), model);
      const options = randomQuery(next, [...model.keys()]);
      const nowMs = T0 - 1 + Math.floor(next() * 120);
      const scans = scanned.orderStats.scans;
      const got = scanned.list(options, nowMs);
      const expected = modelPage(model, options, nowMs);
      expect(got.items.map((item) => item.key)).toEqual(expected.keys);
      expect(got.more).toBe(expected.more);
      if (scanned.orderStats.scans > scans) scannedPages++;
    }
    // Most pages came from scans while the build ran; the build ended.
    expect(scannedPages).toBeGreaterThan(10);
    expect(scanned.orderStats.builds).toBeGreaterThanOrEqual(1);
  });

  test("a page longer than a scan serves, or an unlimited one, waits for the index (orderReady says so)", () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    for (let i = 0; i < 2000; i++) db.set(`k/${i}`, bytes("v"), T0);
    expect(db.orderReady()).toBe(false);
    expect(db.orderReady(SCAN_PAGE_MAX)).toBe(true);
    expect(db.orderReady(0)).toBe(true);
    expect(db.orderReady(SCAN_PAGE_MAX + 1)).toBe(false);
    expect(db.orderReady(Infinity)).toBe(false);
    // Above the keys a scan may read, a page waits for the index too.
    const big = new MapleDB({ order: { schedule: scheduler.schedule, scanKeysMax: 1999 } });
    for (let i = 0; i < 2000; i++) big.set(`k/${i}`, bytes("v"), T0);
    expect(big.orderReady(10)).toBe(false);
    big.delete("k/0", T0);
    expect(big.orderReady(10)).toBe(true);
    // A range in the reserved space has its own index: never a scan of the maps.
    db.list({ prefix: "\u0000q/", limit: 10 }, T0);
    expect(db.orderStats.scans).toBe(0);
    expect(db.orderStats.reservedScans).toBe(1);
  });

  test("an lstore first page is answered in the turn it is asked, and starts the build", async () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    for (let i = 0; i < 5000; i++) db.set(`k/${(i * 7919) % 10_007}`, bytes("v"), T0);
    const store = new LocalStore({ clock: new ManualClock(T0), db });
    try {
      const page = await store.list({ prefix: "k/", limit: 100 });
      expect(page.items.length).toBe(100);
      expect(await store.count({ prefix: "k/1" })).toBe(
        [...Array(5000).keys()].filter((i) => `${(i * 7919) % 10_007}`.startsWith("1")).length,
      );
      // Not one slice ran: the page came from a scan; the build waits in the scheduler.
      expect(db.orderStats.slices).toBe(0);
      expect(db.orderStats.scans).toBe(2);
      expect(scheduler.pending).toBe(1);
      scheduler.drain();
      expect(db.orderStats.builds).toBe(1);
      const again = await store.list({ prefix: "k/", limit: 100 });
      expect(again).toEqual(page);
      expect(db.orderStats.scans).toBe(2);
    } finally {
      await store.close();
    }
  });
});

describe("restart from a snapshot of a listed store", () => {
  function loaded(data: Uint8Array, scheduler: ManualScheduler): Promise<MapleDB> {
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    return db
      .load(
        (async function* () {
          yield data;
        })(),
      )
      .then(() => db);
  }

  function source(listed: boolean): MapleDB {
    const db = new MapleDB();
    for (let i = 0; i < 3000; i++) db.set(`s/${i}`, bytes(`v${i}`), T0);
    db.set("\u0000q/lock/1", bytes("w"), T0);
    if (listed) db.list({ prefix: "s/", limit: 10 }, T0);
    return db;
  }

  test("a listed store's snapshot says so; its load builds the index in the background at once", async () => {
    const from = source(true);
    // The page above started a build (setImmediate); its snapshot records the index in use.
    const data = await saveBytes(from, T0);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(8, true)).toBe(3);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(12, true)).toBe(FLAG_LISTED);
    const scheduler = new ManualScheduler();
    const db = await loaded(data, scheduler);
    expect(db.orderReady()).toBe(false);
    expect(scheduler.pending).toBe(1);
    // Pages meanwhile come from a scan, the same as the index will give.
    const early = db.list({ prefix: "s/", limit: 20, after: "s/1" }, T0);
    expect(db.orderStats.scans).toBe(1);
    scheduler.drain();
    expect(db.orderReady()).toBe(true);
    expect(db.orderStats.builds).toBe(1);
    expect(db.orderStats.syncSettles).toBe(0);
    expect(db.list({ prefix: "s/", limit: 20, after: "s/1" }, T0)).toEqual(early);
    expect(db.orderedKeys()).toEqual([...from.orderedKeys()]);
    // The lock queue's keys are in their own index, loaded too.
    expect(db.list({ prefix: "\u0000q/", limit: 5 }, T0).items.map((item) => item.key)).toEqual([
      "\u0000q/lock/1",
    ]);
  });

  test("a store nobody listed loads with no build; its first list starts one", async () => {
    const data = await saveBytes(source(false), T0);
    // Written as version 2 (flags 0): the release before reads it (a rolling upgrade).
    expect(new DataView(data.buffer, data.byteOffset).getUint32(8, true)).toBe(2);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(12, true)).toBe(0);
    const scheduler = new ManualScheduler();
    const db = await loaded(data, scheduler);
    expect(scheduler.pending).toBe(0);
    expect(db.orderStats.reservedScans).toBe(0);
    expect(db.list({ prefix: "\u0000q/", limit: 5 }, T0).items.length).toBe(1);
    expect(scheduler.pending).toBe(0);
    expect(db.list({ prefix: "s/", limit: 5 }, T0).items.length).toBe(5);
    expect(scheduler.pending).toBe(1);
  });

  test("a snapshot of format version 2 (no flag) still loads, unlisted; flags it does not know are refused", async () => {
    const data = (await saveBytes(source(true), T0)).slice();
    const asVersion = (version: number, flags: number): Uint8Array => {
      const copy = data.slice();
      const view = new DataView(copy.buffer);
      view.setUint32(8, version, true);
      view.setUint32(12, flags, true);
      view.setUint32(copy.length - 4, Bun.hash.crc32(copy.subarray(0, copy.length - 4)), true);
      return copy;
    };
    const scheduler = new ManualScheduler();
    const db = await loaded(asVersion(2, 0), scheduler);
    expect(scheduler.pending).toBe(0);
    expect(db.list({ prefix: "s/", limit: 3000 }, T0).items.length).toBe(3000);
    await expect(loaded(asVersion(2, FLAG_LISTED), new ManualScheduler())).rejects.toThrow(
      /reserved header flags are 0x00000001/,
    );
    await expect(loaded(asVersion(3, 0x2), new ManualScheduler())).rejects.toThrow(
      /reserved header flags are 0x00000002/,
    );
  });

  test("an index dropped for disuse is not in use: the snapshot says unlisted", async () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({ order: { schedule: scheduler.schedule } });
    for (let i = 0; i < 100; i++) db.set(`k/${i}`, bytes("v"), T0);
    db.list({ limit: 1 }, T0);
    scheduler.drain();
    expect(db.orderReady()).toBe(true);
    let data = await saveBytes(db, T0);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(12, true)).toBe(FLAG_LISTED);
    db.dropOrder();
    data = await saveBytes(db, T0);
    expect(new DataView(data.buffer, data.byteOffset).getUint32(12, true)).toBe(0);
  });
});

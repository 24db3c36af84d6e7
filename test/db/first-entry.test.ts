import { heapStats } from "bun:jsc";
import { describe, expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { bytes, pieces, saveBytes, T0 } from "./helpers.ts";

// Below the size at which a shard splits, so the engine holds one Map like the baseline.
const KEYS = 16_000;
const DATABASES = 6;

function heapBytesAfterCollection(): number {
  Bun.gc(true);
  return heapStats().heapSize;
}

describe("keys written once (FirstEntry)", () => {
  test("cost 32 bytes of slot per key, not an Entry's 48", () => {
    // One shard each, so an engine's Map and a baseline Map hold the same number of keys
    // and cost the same: what is left is the engine's object per key (and its fixed
    // overhead, spread over DATABASES × KEYS keys).
    const keys = Array.from({ length: KEYS }, (_, i) => `key:${String(i).padStart(7, "0")}`);
    const values = keys.map(() => new Uint8Array(16));
    const before = heapBytesAfterCollection();
    const maps = Array.from({ length: DATABASES }, () => {
      const map = new Map<string, Uint8Array>();
      for (let i = 0; i < KEYS; i++) map.set(keys[i]!, values[i]!);
      return map;
    });
    const withMaps = heapBytesAfterCollection();
    const dbs = Array.from({ length: DATABASES }, () => {
      const db = new MapleDB({ shards: 1, indexFromStart: false });
      for (let i = 0; i < KEYS; i++) db.set(keys[i]!, values[i]!, T0);
      return db;
    });
    const withDbs = heapBytesAfterCollection();
    const slotBytes = (withDbs - withMaps - (withMaps - before)) / (DATABASES * KEYS);
    // All still held (and so counted) when measured.
    expect(maps.every((map) => map.size === KEYS)).toBe(true);
    expect(dbs.every((db) => db.info(T0).keys === KEYS)).toBe(true);
    expect(slotBytes).toBeGreaterThan(24);
    expect(slotBytes).toBeLessThan(40);
  });

  test("revisions move on as before through the first overwrite, also while a save streams", async () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    expect(db.getEntry("a", T0)).toMatchObject({ version: 1, createRevision: 1, modRevision: 1 });
    db.set("a", bytes("2"), T0);
    expect(db.getEntry("a", T0)).toMatchObject({ version: 2, createRevision: 1, modRevision: 2 });
    db.set("b", bytes("1"), T0);
    // A save sees "b" as written once; the overwrite made while it streams does not.
    const saving = saveBytes(db, T0);
    db.set("b", bytes("2"), T0);
    const restored = new MapleDB();
    await restored.load(pieces(await saving, 7));
    expect(restored.getEntry("b", T0)).toMatchObject({ version: 1, createRevision: 3, modRevision: 3 });
    expect(db.getEntry("b", T0)).toMatchObject({ version: 2, createRevision: 3, modRevision: 4 });
    // Loaded keys written once overwrite from version 1; others keep counting.
    restored.set("b", bytes("3"), T0);
    restored.set("a", bytes("3"), T0);
    expect(restored.getEntry("b", T0)).toMatchObject({ version: 2, createRevision: 3, modRevision: 4 });
    expect(restored.getEntry("a", T0)).toMatchObject({ version: 3, createRevision: 1, modRevision: 5 });
  });

  test("a key past its delete deadline starts over at version 1 when set again", () => {
    const db = new MapleDB();
    db.set("k", bytes("1"), T0);
    db.setE("k", bytes("2"), 0, 10, T0);
    expect(db.getEntry("k", T0)).toMatchObject({ version: 2, createRevision: 1, modRevision: 2 });
    db.set("k", bytes("3"), T0 + 10);
    expect(db.getEntry("k", T0 + 10)).toMatchObject({ version: 1, createRevision: 3, modRevision: 3 });
    db.set("k", bytes("4"), T0 + 10);
    expect(db.getEntry("k", T0 + 10)).toMatchObject({ version: 2, createRevision: 3, modRevision: 4 });
    expect(db.list({}, T0 + 10).items.map((item) => [item.key, item.version])).toEqual([["k", 2]]);
  });
});

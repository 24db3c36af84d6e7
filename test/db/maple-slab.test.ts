import { describe, expect, test } from "bun:test";
import type { ByteSink } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { SLAB_VALUE_MAX, ValueSlab } from "../../src/db/maple/value-slab.ts";
import { bytes, fromChunks, saveBytes, T0, text } from "./helpers.ts";

function filled(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

describe("value slab", () => {
  test("records of every size keep their value and revisions, across many chunks", () => {
    const slab = new ValueSlab();
    // Every size from 0 to the limit, then enough 128 B records to fill several 64 KiB chunks.
    const sizes = [...Array.from({ length: SLAB_VALUE_MAX + 1 }, (_, i) => i), ...new Array(5000).fill(128)];
    const refs = sizes.map((size, i) => slab.alloc(filled(size, i), i + 1, 2 * i, 3 * i + 2 ** 40));
    expect(new Set(refs).size).toBe(refs.length);
    sizes.forEach((size, i) => {
      const ref = refs[i]!;
      expect(slab.length(ref)).toBe(size);
      expect(slab.copy(ref)).toEqual(filled(size, i));
      expect(slab.equals(ref, filled(size, i))).toBe(true);
      expect(slab.version(ref)).toBe(i + 1);
      expect(slab.createRevision(ref)).toBe(2 * i);
      expect(slab.modRevision(ref)).toBe(3 * i + 2 ** 40);
    });
    expect(slab.bytesHeld).toBeGreaterThan(5000 * 128);
  });

  test("a freed record is reused by the next value of its size class; others are untouched", () => {
    const slab = new ValueSlab();
    const a = slab.alloc(filled(100, 1), 1, 1, 1);
    const b = slab.alloc(filled(100, 2), 1, 2, 2);
    slab.free(a);
    const c = slab.alloc(filled(99, 3), 1, 3, 3);
    expect(c).toBe(a);
    expect(slab.copy(c)).toEqual(filled(99, 3));
    expect(slab.copy(b)).toEqual(filled(100, 2));
    const held = slab.bytesHeld;
    for (let i = 0; i < 1000; i++) slab.free(slab.alloc(filled(100, i), 1, 1, 1));
    expect(slab.bytesHeld).toBe(held);
  });

  test("overwrite stays in place within a class and moves across classes", () => {
    const slab = new ValueSlab();
    const ref = slab.alloc(filled(10, 1), 1, 1, 1);
    expect(slab.overwrite(ref, filled(12, 2), 5)).toBe(ref);
    expect(slab.copy(ref)).toEqual(filled(12, 2));
    expect([slab.version(ref), slab.createRevision(ref), slab.modRevision(ref)]).toEqual([2, 1, 5]);
    const moved = slab.overwrite(ref, filled(500, 3), 6);
    expect(moved).not.toBe(ref);
    expect(slab.copy(moved)).toEqual(filled(500, 3));
    expect([slab.version(moved), slab.createRevision(moved), slab.modRevision(moved)]).toEqual([3, 1, 6]);
  });

  test("a copy is the caller's: changing it leaves the record as it was", () => {
    const slab = new ValueSlab();
    const ref = slab.alloc(filled(64, 9), 1, 1, 1);
    const copy = slab.copy(ref);
    copy.fill(0);
    expect(slab.copy(ref)).toEqual(filled(64, 9));
  });
});

describe("Maple over the slab", () => {
  test("a key moves between slab record, Entry and TimedEntry with its revisions", () => {
    const db = new MapleDB({ shards: 1 });
    const big = filled(SLAB_VALUE_MAX + 1, 5);
    db.set("k", bytes("small"), T0); // rev 1, slab
    db.set("k", big, T0); // rev 2, Entry
    expect(db.get("k", T0)).toEqual(big);
    db.set("k", bytes("small again"), T0); // rev 3, slab
    db.setE("k", bytes("timed"), 100, 0, T0); // rev 4, TimedEntry
    db.set("k", bytes("plain"), T0); // rev 5, slab
    expect(db.getEntry("k", T0)).toEqual({
      key: "k",
      value: bytes("plain"),
      version: 5,
      createRevision: 1,
      modRevision: 5,
    });
    db.expire("k", T0); // rev 6: the slab value moves into a TimedEntry
    expect(db.get("k", T0)).toBeUndefined();
    expect(db.has("k", T0)).toBe(true);
    db.setE("k", bytes("reborn"), 0, 10, T0); // rev 7
    db.set("k", bytes("after delete deadline"), T0 + 10); // rev 8: a new key again
    expect(db.getEntry("k", T0 + 10)).toMatchObject({ version: 1, createRevision: 8, modRevision: 8 });
    expect(db.info(T0 + 10).approxBytes).toBe(1 + "after delete deadline".length);
    const got = db.get("k", T0 + 10)!;
    got.fill(0);
    expect(text(db.get("k", T0 + 10))).toBe("after delete deadline");
    expect(db.deleteIfEquals("k", bytes("other"), T0 + 10)).toBe(false);
    expect(db.renewIfEquals("k", bytes("after delete deadline"), 0, 0, T0 + 10)).toBe(true);
    expect(db.deleteIfEquals("k", bytes("after delete deadline"), T0 + 10)).toBe(true);
    expect(db.has("k", T0 + 10)).toBe(false);
    expect(db.info(T0 + 10).approxBytes).toBe(0);
  });

  test("records a running save may still read are neither rewritten in place nor reused", async () => {
    const db = new MapleDB({ shards: 1 });
    const count = 2000;
    for (let i = 0; i < count; i++) db.set(`k${i}`, filled(128, i), T0);
    const chunks: Uint8Array[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sink: ByteSink = {
      async write(chunk) {
        chunks.push(chunk);
        if (chunks.length === 1) await gate;
      },
    };
    const saving = db.save(sink, T0);
    // Same size (would fit in place), deletes, and new keys of the same class (would reuse
    // a freed record), before anything and while the save waits on its sink.
    for (let i = 0; i < count; i += 2) db.set(`k${i}`, filled(128, i + 7), T0);
    for (let i = 1; i < count; i += 4) db.delete(`k${i}`, T0);
    for (let i = 0; i < count; i += 4) db.set(`new${i}`, filled(128, i + 9), T0);
    release();
    await saving;
    const restored = new MapleDB();
    await restored.load(fromChunks(chunks));
    expect(restored.info(T0).keys).toBe(count);
    for (let i = 0; i < count; i++) expect(restored.get(`k${i}`, T0)).toEqual(filled(128, i));
    // The live db has the writes, and after the save its freed records are reused again.
    for (let i = 0; i < count; i++) {
      const expected = i % 2 === 0 ? filled(128, i + 7) : i % 4 === 1 ? undefined : filled(128, i);
      expect(db.get(`k${i}`, T0)).toEqual(expected);
    }
    for (let i = 0; i < count; i += 4) expect(db.get(`new${i}`, T0)).toEqual(filled(128, i + 9));
    const again = new MapleDB();
    await again.load(fromChunks([await saveBytes(db, T0)]));
    expect(again.info(T0).keys).toBe(db.info(T0).keys);
  });
});

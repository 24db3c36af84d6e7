import { describe, expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { DkvError } from "../../src/errors.ts";
import { bytes, concat, pieces, saveBytes, T0 } from "./helpers.ts";

describe("revisions", () => {
  test("each write stamps the next revision; version counts writes since creation", () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    db.set("b", bytes("1"), T0);
    db.set("a", bytes("2"), T0);
    expect(db.getEntry("a", T0)).toEqual({
      key: "a",
      value: bytes("2"),
      version: 2,
      createRevision: 1,
      modRevision: 3,
    });
    expect(db.getEntry("b", T0)).toMatchObject({ version: 1, createRevision: 2, modRevision: 2 });
    expect(db.revision).toBe(3);
  });

  test("no-op writes take no revision; a delete does; a deleted key starts over at version 1", () => {
    const db = new MapleDB();
    db.set("k", bytes("v"), T0);
    db.delete("missing", T0);
    expect(db.setEIfUnset("k", bytes("x"), 0, 0, T0)).toBe(false);
    expect(db.revision).toBe(1);
    db.delete("k", T0); // rev 2: a watcher sees the delete at a revision of its own
    expect(db.revision).toBe(2);
    db.set("k", bytes("again"), T0);
    expect(db.getEntry("k", T0)).toMatchObject({ version: 1, createRevision: 3, modRevision: 3 });
  });

  test("timed writes, expire and renew are revisions; a key past its delete deadline is reborn", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 100, T0); // rev 1
    expect(db.renewIfEquals("k", bytes("v"), 0, 50, T0)).toBe(true); // rev 2
    expect(db.getEntry("k", T0)).toMatchObject({ version: 2, createRevision: 1, modRevision: 2 });
    db.setE("k", bytes("w"), 0, 10, T0 + 1); // rev 3
    expect(db.getEntry("k", T0 + 1)).toMatchObject({ version: 3, createRevision: 1, modRevision: 3 });
    // Past its delete deadline (not purged): the next write creates the key anew.
    db.setE("k", bytes("x"), 0, 10, T0 + 20); // rev 4
    expect(db.getEntry("k", T0 + 20)).toMatchObject({ version: 1, createRevision: 4, modRevision: 4 });
    db.set("p", bytes("v"), T0 + 20); // rev 5
    db.expire("p", T0 + 20); // rev 6: gone for get, so getEntry misses too
    expect(db.getEntry("p", T0 + 20)).toBeUndefined();
    expect(db.revision).toBe(6);
  });

  test("a pinned revision is stamped by every write until the next pin; it never goes back", () => {
    const db = new MapleDB();
    db.pinRevision(10);
    db.set("a", bytes("1"), T0);
    db.set("b", bytes("1"), T0);
    expect(db.getEntry("a", T0)?.modRevision).toBe(10);
    expect(db.getEntry("b", T0)?.modRevision).toBe(10);
    db.pinRevision(12);
    db.set("a", bytes("2"), T0);
    expect(db.getEntry("a", T0)).toMatchObject({ version: 2, createRevision: 10, modRevision: 12 });
    expect(() => db.pinRevision(11)).toThrow(/only grow/);
  });

  test("writes during a save change the live entry, not the one the save streams", async () => {
    const db = new MapleDB({ shards: 1 });
    // Enough bytes ahead of "k" that the save waits on the sink before it reaches "k".
    for (let i = 0; i < 100; i++) db.set(`filler${i}`, new Uint8Array(1024), T0);
    db.set("k", bytes("before"), T0);
    const chunks: Uint8Array[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const saving = db.save(
      {
        write: (chunk) => {
          chunks.push(chunk.slice());
          return gate;
        },
      },
      T0,
    );
    db.set("k", bytes("after"), T0);
    release();
    await saving;
    const restored = new MapleDB();
    await restored.load(pieces(concat(chunks), 64));
    expect(restored.getEntry("k", T0)).toMatchObject({
      value: bytes("before"),
      version: 1,
      modRevision: 101,
    });
    expect(db.getEntry("k", T0)).toMatchObject({ value: bytes("after"), version: 2, modRevision: 102 });
  });

  test("snapshots keep every key's revisions and the store's revision", async () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    db.setE("b", bytes("1"), 500, 1000, T0);
    db.set("a", bytes("2"), T0);
    db.pinRevision(40);
    db.set("c", bytes("3"), T0);
    const restored = new MapleDB({ shards: 4 });
    await restored.load(pieces(await saveBytes(db, T0), 13));
    for (const key of ["a", "b", "c"]) expect(restored.getEntry(key, T0)).toEqual(db.getEntry(key, T0));
    expect(restored.revision).toBe(40);
    // Unpinned after a load: the counter continues from the snapshot's revision.
    restored.set("d", bytes("4"), T0);
    expect(restored.getEntry("d", T0)?.modRevision).toBe(41);
  });

  test("a version 1 snapshot (before revisions) still loads: version 1, revision 0", async () => {
    const db = new MapleDB();
    await db.load(
      pieces(
        versionOneSnapshot([
          ["k", "v", Infinity, Infinity],
          ["t", "w", T0 + 5, Infinity],
        ]),
        5,
      ),
    );
    expect(db.getEntry("k", T0)).toEqual({
      key: "k",
      value: bytes("v"),
      version: 1,
      createRevision: 0,
      modRevision: 0,
    });
    expect(db.get("t", T0 + 5)).toBeUndefined();
    expect(db.revision).toBe(0);
    expect(db.list({}, T0).items.map((item) => item.key)).toEqual(["k", "t"]);
  });

  test("a snapshot whose key revision exceeds the store revision is refused", async () => {
    const db = new MapleDB();
    db.set("k", bytes("v"), T0);
    const data = await saveBytes(db, T0);
    new DataView(data.buffer).setFloat64(16, 0, true); // store revision 0 < modRevision 1
    const target = new MapleDB();
    target.set("keep", bytes("me"), T0);
    const error = await target.load(pieces(withChecksum(data), 9)).catch((e: unknown) => e);
    expect(DkvError.is(error, "CORRUPT")).toBe(true);
    expect((error as DkvError).message).toMatch(/above the store revision/);
    expect(target.get("keep", T0)).toEqual(bytes("me"));
  });
});

/** The version 1 layout, written out by hand: header, 25-byte record heads, trailer, CRC-32. */
function versionOneSnapshot(entries: [string, string, number, number][]): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new Uint8Array(16);
  header.set(bytes("DKVMAPLE"), 0);
  new DataView(header.buffer).setUint32(8, 1, true);
  parts.push(header);
  for (const [key, value, expireAt, deleteAt] of entries) {
    const head = new Uint8Array(25);
    const view = new DataView(head.buffer);
    head[0] = 1;
    view.setUint32(1, bytes(key).length, true);
    view.setUint32(5, bytes(value).length, true);
    view.setFloat64(9, expireAt, true);
    view.setFloat64(17, deleteAt, true);
    parts.push(head, bytes(key), bytes(value));
  }
  const trailer = new Uint8Array(13);
  trailer[0] = 0xff;
  new DataView(trailer.buffer).setBigUint64(1, BigInt(entries.length), true);
  parts.push(trailer);
  return withChecksum(concat(parts));
}

/** Rewrites the last 4 bytes with the CRC-32 of everything before them. */
function withChecksum(data: Uint8Array): Uint8Array {
  const out = data.slice();
  const body = out.subarray(0, out.length - 4);
  new DataView(out.buffer).setUint32(out.length - 4, Bun.hash.crc32(body), true);
  return out;
}

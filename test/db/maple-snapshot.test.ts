import { describe, expect, test } from "bun:test";
import type { ByteSink } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { DkvError } from "../../src/errors.ts";
import { bytes, concat, fromChunks, pieces, saveBytes, saveChunks, T0, text } from "./helpers.ts";

const big = Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 131) & 0xff);
const longKey = `long-${"ü".repeat(70_000)}-key`;

/** One key of every kind the format must carry. */
function populate(db: MapleDB): void {
  db.set("plain", bytes("v"), T0);
  db.set("empty", new Uint8Array(0), T0);
  db.set("", bytes("empty key"), T0);
  db.set("\uFEFFbom", bytes("bom"), T0);
  db.set("lone\uD800surrogate", bytes("utf16"), T0);
  db.set("日本語🔑", Uint8Array.from([0, 255, 1, 254]), T0);
  db.set(longKey, bytes("long"), T0);
  db.setE("big", big, 5000, 0, T0);
  db.setE("expire-only", bytes("e"), 100, 0, T0);
  db.setE("delete-only", bytes("d"), 0, 200, T0);
  db.setE("both", bytes("b"), 100, 200, T0);
  db.set("expired-now", bytes("x"), T0);
  db.expire("expired-now", T0);
}

const probeKeys = [
  "plain",
  "empty",
  "",
  "\uFEFFbom",
  "lone\uD800surrogate",
  "\uFFFDsurrogate",
  "日本語🔑",
  longKey,
  "big",
  "expire-only",
  "delete-only",
  "both",
  "expired-now",
  "absent",
];

function observe(db: MapleDB): unknown[] {
  const seen: unknown[] = [];
  for (const nowMs of [T0, T0 + 99, T0 + 100, T0 + 199, T0 + 200, T0 + 10_000]) {
    for (const key of probeKeys) seen.push([nowMs, key.slice(0, 20), db.has(key, nowMs), db.get(key, nowMs)]);
    seen.push(db.info(nowMs));
  }
  return seen;
}

async function expectCorrupt(db: MapleDB, data: Uint8Array, message: RegExp): Promise<void> {
  const before = observe(db);
  let caught: unknown;
  try {
    await db.load(pieces(data, 7));
  } catch (error) {
    caught = error;
  }
  expect(DkvError.is(caught, "CORRUPT")).toBe(true);
  expect((caught as DkvError).message).toMatch(message);
  expect(observe(db)).toEqual(before);
}

function withValidChecksum(data: Uint8Array): Uint8Array {
  const fixed = data.slice();
  const crc = Bun.hash.crc32(fixed.subarray(0, fixed.length - 4));
  new DataView(fixed.buffer).setUint32(fixed.length - 4, crc, true);
  return fixed;
}

describe("snapshot round trip", () => {
  test("keeps values, keys of every shape and both deadlines exactly", async () => {
    const source = new MapleDB();
    populate(source);
    const restored = new MapleDB({ shards: 4 });
    await restored.load(fromChunks(await saveChunks(source, T0)));
    expect(observe(restored)).toEqual(observe(source).map(withShards(4)));
  });

  test("parses input split at every byte boundary", async () => {
    const source = new MapleDB();
    source.setE("a", bytes("1"), 10, 20, T0);
    source.set("b\uD800", bytes("22"), T0);
    const data = await saveBytes(source, T0);
    const restored = new MapleDB();
    await restored.load(pieces(data, 1));
    expect(text(restored.get("a", T0 + 9))).toBe("1");
    expect(restored.has("a", T0 + 19)).toBe(true);
    expect(restored.has("a", T0 + 20)).toBe(false);
    expect(text(restored.get("b\uD800", T0))).toBe("22");
  });

  test("keeps a key past its delete deadline that no purge removed yet: the restored copy purges it like the source", async () => {
    // A replica restored from a snapshot must hold what the others hold: if it lacked the
    // unpurged key, their later purge would take a revision (a watch event) it never takes.
    const source = new MapleDB();
    source.setE("gone", bytes("v"), 0, 10, T0);
    source.setE("expired", bytes("v"), 10, 0, T0);
    const restored = new MapleDB();
    await restored.load(pieces(await saveBytes(source, T0 + 10), 64));
    for (const db of [source, restored]) {
      expect(db.has("gone", T0 + 10)).toBe(false); // hidden, as on the source
      expect(db.has("expired", T0 + 10)).toBe(true);
    }
    expect(restored.revision).toBe(source.revision);
    expect(restored.purgeExpired(T0 + 10, 10)).toBe(source.purgeExpired(T0 + 10, 10));
    expect(restored.revision).toBe(source.revision);
    expect(restored.info(T0 + 10)).toEqual(source.info(T0 + 10));
  });

  test("an empty database round trips", async () => {
    const restored = new MapleDB();
    restored.set("stale", bytes("v"), T0);
    await restored.load(pieces(await saveBytes(new MapleDB(), T0), 5));
    expect(restored.info(T0).keys).toBe(0);
  });

  test("1M keys with mixed TTLs round trip", async () => {
    const source = new MapleDB();
    const count = 1_000_000;
    const value = new Uint8Array(16);
    for (let i = 0; i < count; i++) {
      value[0] = i & 0xff;
      const key = `key:${i}`;
      switch (i & 3) {
        case 0:
          source.set(key, value.slice(), T0);
          break;
        case 1:
          source.setE(key, value.slice(), 1000 + (i % 500), 0, T0);
          break;
        case 2:
          source.setE(key, value.slice(), 0, 2000 + (i % 500), T0);
          break;
        default:
          source.setE(key, value.slice(), 1000 + (i % 300), 3000 + (i % 700), T0);
      }
    }
    const chunks = await saveChunks(source, T0);
    expect(chunks.every((chunk) => chunk.byteLength <= 64 * 1024)).toBe(true);
    const restored = new MapleDB();
    await restored.load(fromChunks(chunks));
    for (const nowMs of [T0, T0 + 1200, T0 + 2300, T0 + 3500]) {
      expect(restored.info(nowMs)).toEqual(source.info(nowMs));
    }
    for (let i = 0; i < count; i += 997) {
      const key = `key:${i}`;
      for (const nowMs of [T0, T0 + 1100, T0 + 2250, T0 + 3400]) {
        expect(restored.has(key, nowMs)).toBe(source.has(key, nowMs));
        expect(restored.get(key, nowMs)).toEqual(source.get(key, nowMs));
      }
    }
    expect(restored.deadlineIndexSize).toBe(source.deadlineIndexSize);
    // Generous: a million inserts into the maps and the ordered index on a shared CI machine.
  }, 60_000);
});

describe("snapshot is a point in time", () => {
  test("writes made while a save streams are not in it, and are kept by the db", async () => {
    const db = new MapleDB({ shards: 4 });
    for (let i = 0; i < 20_000; i++) db.setE(`k${i}`, bytes(`v${i}`), 0, i % 2 === 0 ? 0 : 5000, T0);
    const chunks: Uint8Array[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let firstChunkOut: () => void = () => {};
    const firstChunk = new Promise<void>((resolve) => {
      firstChunkOut = resolve;
    });
    const sink: ByteSink = {
      async write(chunk) {
        chunks.push(chunk);
        if (chunks.length === 1) {
          firstChunkOut();
          await gate;
        }
      },
    };
    const mutate = (from: number, to: number): void => {
      for (let i = from; i < to; i += 100) {
        db.set(`k${i}`, bytes("changed"), T0);
        db.setE(`k${i + 1}`, bytes("changed-e"), 1, 1, T0);
        db.delete(`k${i + 2}`, T0);
        db.expire(`k${i + 3}`, T0);
        db.renewIfEquals(`k${i + 5}`, bytes(`v${i + 5}`), 7, 7, T0);
        db.set(`new${i}`, bytes("new"), T0);
      }
    };
    const saving = db.save(sink, T0);
    // Right after the call, before anything was streamed...
    mutate(0, 10_000);
    // ...and while the save is part way through and waiting on the sink.
    await firstChunk;
    mutate(10_000, 20_000);
    db.purgeExpired(T0 + 5000, 50);
    release();
    await saving;

    const restored = new MapleDB();
    await restored.load(fromChunks(chunks));
    expect(restored.info(T0).keys).toBe(20_000);
    for (let i = 0; i < 20_000; i += 100) {
      for (let j = i; j < i + 6; j++) expect(text(restored.get(`k${j}`, T0))).toBe(`v${j}`);
      expect(restored.has(`k${i + 1}`, T0 + 4999)).toBe(true);
      expect(restored.has(`new${i}`, T0)).toBe(false);
    }
    // The live db has the writes.
    expect(text(db.get("k10000", T0))).toBe("changed");
    expect(db.has("k2", T0)).toBe(false);
    expect(db.get("k10003", T0)).toBeUndefined();
    expect(db.has("k5", T0 + 7)).toBe(false);
    expect(text(db.get("new0", T0))).toBe("new");
    // 200 deleted, 200 re-set to die at T0+1, 200 renewed to die at T0+7, 200 new.
    expect(db.info(T0 + 4999).keys).toBe(20_000 - 200 - 200 - 200 + 200);
  });

  test("a second save while one is running is refused; the first completes", async () => {
    const db = new MapleDB();
    for (let i = 0; i < 10_000; i++) db.set(`k${i}`, bytes(`v${i}`), T0);
    const first = saveBytes(db, T0);
    await expect(saveBytes(db, T0)).rejects.toThrow(/already running/);
    const data = await first;
    const again = await saveBytes(db, T0);
    expect(again).toEqual(data);
  });

  test("a failing sink fails the save and leaves the db fully usable", async () => {
    const db = new MapleDB({ shards: 2 });
    for (let i = 0; i < 10_000; i++) db.setE(`k${i}`, bytes(`value-${i}`), 0, 1000, T0);
    const sink: ByteSink = {
      write() {
        throw new Error("disk full");
      },
    };
    await expect(db.save(sink, T0)).rejects.toThrow("disk full");
    db.setE("k1", bytes("after"), 0, 2000, T0);
    expect(text(db.get("k1", T0 + 1500))).toBe("after");
    const restored = new MapleDB();
    await restored.load(pieces(await saveBytes(db, T0), 4096));
    expect(restored.info(T0).keys).toBe(10_000);
  });
});

describe("snapshot rejection", () => {
  async function sample(): Promise<{ db: MapleDB; data: Uint8Array }> {
    const source = new MapleDB();
    source.set("alpha", bytes("one"), T0);
    source.setE("beta", bytes("two"), 100, 200, T0);
    source.set("gamma", new Uint8Array(300).fill(7), T0);
    const data = await saveBytes(source, T0);
    const db = new MapleDB();
    db.set("existing", bytes("keep me"), T0);
    db.setE("timed", bytes("t"), 50, 150, T0);
    return { db, data };
  }

  test("a snapshot cut at any of several offsets is rejected as truncated, db unchanged", async () => {
    const { db, data } = await sample();
    for (const cut of [
      0,
      1,
      7,
      8,
      15,
      16,
      17,
      40,
      41,
      100,
      data.length - 13,
      data.length - 5,
      data.length - 1,
    ]) {
      await expectCorrupt(db, data.subarray(0, cut), /truncated/);
    }
  });

  test("every single flipped bit is rejected, db unchanged", async () => {
    const { db, data } = await sample();
    for (let offset = 0; offset < data.length; offset++) {
      const damaged = data.slice();
      damaged[offset] = (damaged[offset] ?? 0) ^ (1 << (offset % 8));
      await expectCorrupt(db, damaged, /corrupt at byte offset \d+/);
    }
  });

  test("a wrong magic number is rejected", async () => {
    const { db, data } = await sample();
    const damaged = data.slice();
    damaged.set(bytes("NOTMAPLE"), 0);
    await expectCorrupt(db, damaged, /not a dkv Maple snapshot.*offset 0/);
    await expectCorrupt(db, bytes("hello, this is a text file and not a snapshot"), /magic/);
  });

  test("an unsupported version is rejected and names the version", async () => {
    const { db, data } = await sample();
    const damaged = data.slice();
    new DataView(damaged.buffer).setUint32(8, 4, true);
    await expectCorrupt(db, withValidChecksum(damaged), /version 4 is not supported.*reads versions 1 to 3/);
  });

  test("bytes after the trailer are rejected", async () => {
    const { db, data } = await sample();
    await expectCorrupt(db, concat([data, Uint8Array.of(0)]), /unexpected bytes after the trailer/);
  });

  test("a duplicated key is rejected even with a valid checksum", async () => {
    const source = new MapleDB();
    source.set("k", bytes("v"), T0);
    const data = await saveBytes(source, T0);
    const record = data.subarray(24, 24 + 49 + 1 + 1);
    const trailer = data.slice(24 + record.length);
    new DataView(trailer.buffer).setBigUint64(1, 2n, true);
    const doubled = withValidChecksum(concat([data.subarray(0, 24), record, record, trailer]));
    const db = new MapleDB();
    await expectCorrupt(db, doubled, /appears twice/);
  });

  test("a huge corrupted length does not allocate, it ends as truncated", async () => {
    const { db, data } = await sample();
    const damaged = data.slice();
    new DataView(damaged.buffer).setUint32(24 + 5, 0xffffffff, true);
    await expectCorrupt(db, damaged, /truncated/);
  });
});

/** `observe` of a db with another shard count differs only in the reported shard count. */
function withShards(shards: number): (item: unknown) => unknown {
  return (item) =>
    item !== null && typeof item === "object" && "shards" in item ? { ...(item as object), shards } : item;
}

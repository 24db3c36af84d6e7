import { describe, expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { shardHash } from "../../src/db/maple/shard-hash.ts";
import { bytes, fromChunks, saveChunks, T0, text } from "./helpers.ts";

const SHARDS = 64;
const KEYS_PER_SHAPE = 64_000;

/** Largest and smallest shard as a multiple of the mean shard size. */
function imbalance(keys: string[]): { max: number; min: number } {
  const counts = new Array<number>(SHARDS).fill(0);
  for (const key of keys) {
    const shard = shardHash(key) & (SHARDS - 1);
    counts[shard] = (counts[shard] ?? 0) + 1;
  }
  const mean = keys.length / SHARDS;
  return { max: Math.max(...counts) / mean, min: Math.min(...counts) / mean };
}

/** A deterministic stand-in for random uuids (the test must not depend on luck). */
function pseudoUuid(i: number): string {
  const hex = (n: number): string => (Math.imul(n, 0x9e3779b1) >>> 0).toString(16).padStart(8, "0");
  const a = hex(i);
  const b = hex(i ^ 0x5bd1e995);
  const c = hex(i + 0x27d4eb2d);
  const d = hex(~i);
  return `${a}-${b.slice(0, 4)}-4${b.slice(5)}-a${c.slice(1, 4)}-${c.slice(4)}${d}`;
}

/**
 * Key shapes real users write. The sampled shard hash reads a few fixed positions; these
 * pin that the positions catch the varying part of each shape well enough to keep the
 * shards (and so the copy-on-write and rehash work per shard) near the mean size.
 */
const COMMON_SHAPES: Record<string, (i: number) => string> = {
  "counter with zero padding (key-000123)": (i) => `key-${String(i).padStart(6, "0")}`,
  "counter (key-123)": (i) => `key-${i}`,
  "bare number": (i) => String(i),
  "id between prefix and suffix (user:123:profile)": (i) => `user:${i}:profile`,
  "base-36 id between prefix and suffix": (i) => `user:${i.toString(36)}:profile`,
  uuid: pseudoUuid,
  "prefixed uuid (session:<uuid>)": (i) => `session:${pseudoUuid(i)}`,
  "lock name with id (lock:orders:123)": (i) => `lock:orders:${i}`,
  "two ids (t:12:u:345)": (i) => `t:${i % 97}:u:${Math.floor(i / 97)}`,
  "hex id": (i) => (Math.imul(i, 0x9e3779b1) >>> 0).toString(16).padStart(8, "0"),
};

/**
 * Shapes where only one or two sampled units vary: coarser, but no shard holds more than
 * a few times its share.
 */
const COARSER_SHAPES: Record<string, (i: number) => string> = {
  "id in front of a fixed suffix (123.example.com)": (i) => `${i}.example.com`,
  "id after a long prefix (cache:/products/123?lang=en)": (i) => `cache:page:/products/${i}?lang=en`,
  "id between a prefix and a short suffix (order/123/items)": (i) => `order/${i}/items`,
};

describe("shard spread", () => {
  for (const [shape, makeKey] of Object.entries(COMMON_SHAPES)) {
    test(`${shape}: no shard is far from the mean size`, () => {
      const keys = Array.from({ length: KEYS_PER_SHAPE }, (_, i) => makeKey(i));
      const { max, min } = imbalance(keys);
      expect(max).toBeLessThan(2);
      expect(min).toBeGreaterThan(0.3);
    });
  }

  for (const [shape, makeKey] of Object.entries(COARSER_SHAPES)) {
    test(`${shape}: no shard holds more than 4 times its share`, () => {
      const keys = Array.from({ length: KEYS_PER_SHAPE }, (_, i) => makeKey(i));
      expect(imbalance(keys).max).toBeLessThan(4);
    });
  }

  test("the hash reads a bounded number of units, however long the key", () => {
    for (const length of [8, 100, 1_000_000]) {
      const read = new Set<number>();
      // Stands in for a string and records which units the hash reads.
      const key = {
        length,
        charCodeAt: (index: number): number => {
          read.add(index);
          return 0x61;
        },
      };
      shardHash(key as unknown as string);
      expect(read.size).toBeLessThanOrEqual(11);
      // The units just before the middle are sampled, so a key's middle half is not ignored.
      expect([...read].some((index) => index > length / 4 && index < (length * 3) / 4)).toBe(true);
    }
  });
});

describe("plain-shard fast path", () => {
  test("a shard whose only timed key became plain again serves reads as plain", () => {
    const db = new MapleDB({ shards: 1 });
    db.set("plain", bytes("p"), T0);
    db.setE("timed", bytes("t"), 10, 20, T0);
    db.set("timed", bytes("t2"), T0);
    expect(db.info(T0).keysWithDeadline).toBe(0);
    expect(text(db.get("timed", T0 + 1_000))).toBe("t2");
    expect(db.has("timed", T0 + 1_000)).toBe(true);
    expect(db.deadlineIndexSize).toBe(0);
  });

  test("expired and deleted keys stay hidden beside plain keys in the same shard", () => {
    const db = new MapleDB({ shards: 1 });
    db.set("plain", bytes("p"), T0);
    db.setE("expiring", bytes("e"), 10, 0, T0);
    db.setE("deleting", bytes("d"), 0, 10, T0);
    expect(text(db.get("plain", T0 + 10))).toBe("p");
    expect(db.get("expiring", T0 + 10)).toBeUndefined();
    expect(db.has("expiring", T0 + 10)).toBe(true);
    expect(db.get("deleting", T0 + 10)).toBeUndefined();
    expect(db.has("deleting", T0 + 10)).toBe(false);
  });

  test("timed keys loaded from a snapshot are still checked against their deadlines", async () => {
    const db = new MapleDB({ shards: 1 });
    db.setE("timed", bytes("t"), 10, 20, T0);
    const restored = new MapleDB({ shards: 1 });
    await restored.load(fromChunks(await saveChunks(db, T0)));
    expect(text(restored.get("timed", T0 + 9))).toBe("t");
    expect(restored.get("timed", T0 + 10)).toBeUndefined();
    expect(restored.has("timed", T0 + 20)).toBe(false);
  });

  test("deleting the last timed key of a shard keeps deadline counts right", () => {
    const db = new MapleDB({ shards: 1 });
    db.setE("timed", bytes("t"), 10, 20, T0);
    db.delete("timed", T0);
    db.set("timed", bytes("again"), T0);
    expect(text(db.get("timed", T0 + 100))).toBe("again");
    expect(db.info(T0 + 100)).toMatchObject({ keys: 1, keysWithDeadline: 0 });
  });
});

/** A shape whose varying part sits where the sampled hash does not read. */
function hiddenIdKey(i: number): string {
  return `ab${String(i).padStart(6, "0")}/then/a/long/fixed/suffix/that/hides/it.json`;
}

function largestShareOfMean(db: MapleDB): number {
  const sizes = db.shardSizes();
  const total = sizes.reduce((sum, size) => sum + size, 0);
  return Math.max(...sizes) / (total / sizes.length);
}

describe("re-routing when the sampled hash piles keys up", () => {
  test("the sampled hash piles this shape into one shard (why the fallback exists)", () => {
    const shards = new Set<number>();
    for (let i = 0; i < 10_000; i++) shards.add(shardHash(hiddenIdKey(i)) & (SHARDS - 1));
    expect(shards.size).toBe(1);
  });

  test("a database of such keys switches to the wide hash and spreads them", () => {
    const db = new MapleDB({ shards: SHARDS });
    for (let i = 0; i < 20_000; i++) {
      if (i % 2 === 0) db.set(hiddenIdKey(i), bytes(`v${i}`), T0);
      else db.setE(hiddenIdKey(i), bytes(`v${i}`), 0, 100 + i, T0);
    }
    expect(db.routesByWideHash).toBe(true);
    expect(largestShareOfMean(db)).toBeLessThan(2);
    for (let i = 0; i < 20_000; i++) expect(text(db.get(hiddenIdKey(i), T0))).toBe(`v${i}`);
    expect(db.info(T0)).toMatchObject({ keys: 20_000, keysWithDeadline: 10_000 });
    // Timed entries moved with their deadline index intact: purge finds each in its new shard.
    expect(db.purgeExpired(T0 + 1_000_000, 20_000)).toBe(10_000);
    expect(db.info(T0 + 1_000_000)).toMatchObject({ keys: 10_000, keysWithDeadline: 0 });
    expect(db.has(hiddenIdKey(1), T0 + 1_000_000)).toBe(false);
    expect(text(db.get(hiddenIdKey(2), T0 + 1_000_000))).toBe("v2");
  });

  test("common key shapes keep the fast sampled routing", () => {
    const db = new MapleDB({ shards: SHARDS });
    for (let i = 0; i < 64_000; i++) db.set(`user:${i}:profile`, bytes("v"), T0);
    expect(db.routesByWideHash).toBe(false);
  });

  test("no re-routing while a save streams; a later insert retries", async () => {
    const db = new MapleDB({ shards: SHARDS });
    db.set("before-save", bytes("b"), T0);
    const saving = saveChunks(db, T0);
    for (let i = 0; i < 5_000; i++) db.set(hiddenIdKey(i), bytes("v"), T0);
    expect(db.routesByWideHash).toBe(false);
    const chunks = await saving;
    for (let i = 5_000; i < 10_000; i++) db.set(hiddenIdKey(i), bytes("v"), T0);
    expect(db.routesByWideHash).toBe(true);
    // The save still holds the state at its start.
    const restored = new MapleDB({ shards: SHARDS });
    await restored.load(fromChunks(chunks));
    expect(restored.info(T0).keys).toBe(1);
  });

  test("loading a snapshot of such keys routes them by the wide hash", async () => {
    const source = new MapleDB({ shards: SHARDS });
    for (let i = 0; i < 10_000; i++) source.setE(hiddenIdKey(i), bytes(`v${i}`), 50, 0, T0);
    const restored = new MapleDB({ shards: SHARDS });
    await restored.load(fromChunks(await saveChunks(source, T0)));
    expect(restored.routesByWideHash).toBe(true);
    expect(largestShareOfMean(restored)).toBeLessThan(2);
    expect(text(restored.get(hiddenIdKey(7), T0 + 49))).toBe("v7");
    expect(restored.get(hiddenIdKey(7), T0 + 50)).toBeUndefined();
    expect(restored.has(hiddenIdKey(7), T0 + 50)).toBe(true);
  });
});

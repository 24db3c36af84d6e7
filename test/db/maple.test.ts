import { describe, expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { shardHash } from "../../src/db/maple/shard-hash.ts";
import { DkvError } from "../../src/errors.ts";
import { bytes, T0, text } from "./helpers.ts";

describe("MapleDB basics", () => {
  test("set then get returns the value and has is true", () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    expect(text(db.get("a", T0))).toBe("1");
    expect(db.has("a", T0)).toBe(true);
  });

  test("a missing key: get is undefined, has is false", () => {
    const db = new MapleDB();
    expect(db.get("nope", T0)).toBeUndefined();
    expect(db.has("nope", T0)).toBe(false);
  });

  test("set overwrites the previous value", () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    db.set("a", bytes("2"), T0);
    expect(text(db.get("a", T0))).toBe("2");
    expect(db.info(T0).keys).toBe(1);
  });

  test("delete removes the key; delete of a missing key is a no-op", () => {
    const db = new MapleDB();
    db.set("a", bytes("1"), T0);
    db.delete("a", T0);
    db.delete("never-there", T0);
    expect(db.get("a", T0)).toBeUndefined();
    expect(db.has("a", T0)).toBe(false);
    expect(db.info(T0).keys).toBe(0);
  });

  test("the shard count must be a power of two from 1 to 4096", () => {
    for (const shards of [0, 3, 100, 8192, 1.5]) {
      expect(() => new MapleDB({ shards })).toThrow(/power of two/);
    }
    expect(new MapleDB({ shards: 1 }).info(T0).shards).toBe(1);
    expect(new MapleDB().info(T0).shards).toBe(64);
  });
});

describe("expiry and deletion deadlines", () => {
  test("before the expire deadline get returns the value", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 100, 0, T0);
    expect(text(db.get("k", T0 + 99))).toBe("v");
  });

  test("exactly at the expire deadline get misses but has stays true", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 100, 0, T0);
    expect(db.get("k", T0 + 100)).toBeUndefined();
    expect(db.has("k", T0 + 100)).toBe(true);
    expect(db.has("k", T0 + 1_000_000)).toBe(true);
  });

  test("exactly at the delete deadline the key is gone", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 100, 200, T0);
    expect(db.has("k", T0 + 199)).toBe(true);
    expect(db.get("k", T0 + 199)).toBeUndefined();
    expect(db.has("k", T0 + 200)).toBe(false);
    expect(db.info(T0 + 200).keys).toBe(0);
  });

  test("deleteIn without expireIn also expires the value at the delete deadline", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 50, T0);
    expect(text(db.get("k", T0 + 49))).toBe("v");
    expect(db.get("k", T0 + 50)).toBeUndefined();
    expect(db.has("k", T0 + 50)).toBe(false);
  });

  test("a delete deadline before the expire deadline wins", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 500, 100, T0);
    expect(db.get("k", T0 + 100)).toBeUndefined();
    expect(db.has("k", T0 + 100)).toBe(false);
  });

  test("setE with both times 0 never expires", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 0, T0);
    expect(text(db.get("k", Number.MAX_SAFE_INTEGER))).toBe("v");
    expect(db.info(T0).keysWithDeadline).toBe(0);
  });

  test("set clears both deadlines", () => {
    const db = new MapleDB();
    db.setE("k", bytes("old"), 10, 20, T0);
    db.set("k", bytes("new"), T0 + 5);
    expect(text(db.get("k", T0 + 1000))).toBe("new");
    expect(db.has("k", T0 + 1000)).toBe(true);
    expect(db.purgeExpired(T0 + 1000, 100)).toBe(0);
    expect(db.info(T0 + 1000).keysWithDeadline).toBe(0);
  });

  test("set revives an expired key", () => {
    const db = new MapleDB();
    db.setE("k", bytes("old"), 10, 0, T0);
    db.set("k", bytes("new"), T0 + 20);
    expect(text(db.get("k", T0 + 20))).toBe("new");
  });

  test("setE replaces earlier deadlines with new ones", () => {
    const db = new MapleDB();
    db.setE("k", bytes("a"), 10, 20, T0);
    db.setE("k", bytes("b"), 100, 200, T0);
    expect(text(db.get("k", T0 + 50))).toBe("b");
    expect(db.has("k", T0 + 150)).toBe(true);
    expect(db.has("k", T0 + 200)).toBe(false);
  });

  test("expire makes get miss at once while has stays true", () => {
    const db = new MapleDB();
    db.set("k", bytes("v"), T0);
    db.expire("k", T0);
    expect(db.get("k", T0)).toBeUndefined();
    expect(db.has("k", T0)).toBe(true);
  });

  test("expire keeps an existing delete deadline", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 100, T0);
    db.expire("k", T0 + 10);
    expect(db.get("k", T0 + 10)).toBeUndefined();
    expect(db.has("k", T0 + 99)).toBe(true);
    expect(db.has("k", T0 + 100)).toBe(false);
  });

  test("expire of a missing key is a no-op", () => {
    const db = new MapleDB();
    db.expire("ghost", T0);
    expect(db.has("ghost", T0)).toBe(false);
    expect(db.info(T0).keys).toBe(0);
  });

  test("expire of a key past its delete deadline does not bring it back", () => {
    const db = new MapleDB();
    db.setE("k", bytes("v"), 0, 10, T0);
    db.expire("k", T0 + 10);
    expect(db.has("k", T0 + 10)).toBe(false);
    expect(db.info(T0 + 10).keys).toBe(0);
  });

  test("a deadline at clock time 0 is still a deadline", () => {
    const db = new MapleDB();
    db.set("k", bytes("v"), 0);
    db.expire("k", 0);
    expect(db.get("k", 0)).toBeUndefined();
    expect(db.has("k", 0)).toBe(true);
  });

  test("negative, NaN or infinite durations are rejected and change nothing", () => {
    const db = new MapleDB();
    db.set("k", bytes("v"), T0);
    for (const [expireIn, deleteIn] of [
      [-1, 0],
      [0, -1],
      [Number.NaN, 0],
      [0, Number.POSITIVE_INFINITY],
    ] as const) {
      expect(() => db.setE("k", bytes("x"), expireIn, deleteIn, T0)).toThrow(DkvError);
      expect(() => db.setEIfUnset("new", bytes("x"), expireIn, deleteIn, T0)).toThrow(/finite number of ms/);
    }
    expect(text(db.get("k", T0))).toBe("v");
    expect(db.has("new", T0)).toBe(false);
  });
});

describe("setEIfUnset", () => {
  test("writes when the key is absent and reports true", () => {
    const db = new MapleDB();
    expect(db.setEIfUnset("k", bytes("v"), 0, 0, T0)).toBe(true);
    expect(text(db.get("k", T0))).toBe("v");
  });

  test("does not write over a live key and reports false", () => {
    const db = new MapleDB();
    db.set("k", bytes("first"), T0);
    expect(db.setEIfUnset("k", bytes("second"), 0, 0, T0)).toBe(false);
    expect(text(db.get("k", T0))).toBe("first");
  });

  test("an expired-but-present key is not unset (expire then setEIfUnset)", () => {
    const db = new MapleDB();
    db.set("k", bytes("first"), T0);
    db.expire("k", T0);
    expect(db.setEIfUnset("k", bytes("second"), 0, 0, T0 + 1)).toBe(false);
    expect(db.get("k", T0 + 1)).toBeUndefined();
    expect(db.has("k", T0 + 1)).toBe(true);
  });

  test("a key exactly at its delete deadline counts as absent, even before purge", () => {
    const db = new MapleDB();
    db.setE("k", bytes("old"), 0, 100, T0);
    expect(db.setEIfUnset("k", bytes("new"), 0, 0, T0 + 99)).toBe(false);
    expect(db.setEIfUnset("k", bytes("new"), 50, 0, T0 + 100)).toBe(true);
    expect(text(db.get("k", T0 + 149))).toBe("new");
    expect(db.get("k", T0 + 150)).toBeUndefined();
    // The old delete deadline no longer applies.
    expect(db.purgeExpired(T0 + 10_000, 10)).toBe(0);
    expect(db.has("k", T0 + 10_000)).toBe(true);
  });

  test("writes its own deadlines", () => {
    const db = new MapleDB();
    expect(db.setEIfUnset("k", bytes("v"), 10, 20, T0)).toBe(true);
    expect(db.get("k", T0 + 10)).toBeUndefined();
    expect(db.has("k", T0 + 19)).toBe(true);
    expect(db.has("k", T0 + 20)).toBe(false);
  });
});

describe("deleteIfEquals and renewIfEquals", () => {
  test("deleteIfEquals deletes a live equal value and reports true", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("owner-1"), 100, 100, T0);
    expect(db.deleteIfEquals("lock", bytes("owner-1"), T0 + 1)).toBe(true);
    expect(db.has("lock", T0 + 1)).toBe(false);
  });

  test("deleteIfEquals leaves a live different value and reports false", () => {
    const db = new MapleDB();
    db.set("lock", bytes("owner-1"), T0);
    expect(db.deleteIfEquals("lock", bytes("owner-2"), T0)).toBe(false);
    expect(db.deleteIfEquals("lock", bytes("owner-1-longer"), T0)).toBe(false);
    expect(text(db.get("lock", T0))).toBe("owner-1");
  });

  test("deleteIfEquals reports true when the key is absent", () => {
    const db = new MapleDB();
    expect(db.deleteIfEquals("missing", bytes("x"), T0)).toBe(true);
    db.setE("deleted", bytes("x"), 0, 10, T0);
    // Past its delete deadline the key is absent even before purge, whatever it held.
    expect(db.deleteIfEquals("deleted", bytes("other"), T0 + 10)).toBe(true);
    expect(db.deleteIfEquals("deleted", bytes("x"), T0 + 10)).toBe(true);
    expect(db.has("deleted", T0 + 10)).toBe(false);
  });

  test("deleteIfEquals compares an expired-but-present value and leaves a different one", () => {
    const db = new MapleDB();
    db.setE("expired", bytes("x"), 10, 0, T0);
    // Was "true: nothing live to delete" before the lead's rule change (issue 2 follow-up):
    // an expired value is still present, so a different expected value is refused.
    expect(db.deleteIfEquals("expired", bytes("other"), T0 + 10)).toBe(false);
    expect(db.has("expired", T0 + 10)).toBe(true);
    expect(db.info(T0 + 10).keys).toBe(1);
  });

  test("deleteIfEquals deletes an expired-but-present equal value", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("owner-1"), 10, 100, T0);
    expect(db.get("lock", T0 + 50)).toBeUndefined();
    expect(db.deleteIfEquals("lock", bytes("owner-1"), T0 + 50)).toBe(true);
    expect(db.has("lock", T0 + 50)).toBe(false);
    expect(db.info(T0 + 50)).toMatchObject({ keys: 0, keysWithDeadline: 0, approxBytes: 0 });
    // Its delete deadline left the purge index with it.
    expect(db.deadlineIndexSize).toBe(0);
  });

  test("the owner releases a lock someone expired", () => {
    const db = new MapleDB();
    db.set("lock", bytes("owner-1"), T0);
    db.expire("lock", T0 + 1);
    expect(db.deleteIfEquals("lock", bytes("owner-2"), T0 + 2)).toBe(false);
    expect(db.has("lock", T0 + 2)).toBe(true);
    expect(db.deleteIfEquals("lock", bytes("owner-1"), T0 + 2)).toBe(true);
    expect(db.has("lock", T0 + 2)).toBe(false);
    // Now absent, so the key is free for the next owner.
    expect(db.setEIfUnset("lock", bytes("owner-2"), 100, 100, T0 + 2)).toBe(true);
  });

  test("renewIfEquals still refuses an expired-but-present equal value", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("me"), 10, 100, T0);
    expect(db.renewIfEquals("lock", bytes("me"), 500, 500, T0 + 10)).toBe(false);
    expect(db.get("lock", T0 + 10)).toBeUndefined();
    expect(db.has("lock", T0 + 100)).toBe(false);
  });

  test("renewIfEquals sets new deadlines on a live equal value", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("me"), 100, 100, T0);
    expect(db.renewIfEquals("lock", bytes("me"), 500, 500, T0 + 50)).toBe(true);
    expect(text(db.get("lock", T0 + 549))).toBe("me");
    expect(db.has("lock", T0 + 550)).toBe(false);
    // The old deadline is not in the purge index any more.
    expect(db.purgeExpired(T0 + 100, 10)).toBe(0);
    expect(db.deadlineIndexSize).toBe(1);
  });

  test("renewIfEquals refuses a different value", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("me"), 100, 100, T0);
    expect(db.renewIfEquals("lock", bytes("you"), 500, 500, T0)).toBe(false);
    expect(db.has("lock", T0 + 100)).toBe(false);
  });

  test("renewIfEquals refuses an expired or missing value", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("me"), 100, 0, T0);
    expect(db.renewIfEquals("lock", bytes("me"), 500, 500, T0 + 100)).toBe(false);
    expect(db.get("lock", T0 + 100)).toBeUndefined();
    expect(db.renewIfEquals("missing", bytes("me"), 500, 500, T0)).toBe(false);
    expect(db.has("missing", T0)).toBe(false);
  });

  test("renewIfEquals with both times 0 removes the deadlines", () => {
    const db = new MapleDB();
    db.setE("lock", bytes("me"), 100, 100, T0);
    expect(db.renewIfEquals("lock", bytes("me"), 0, 0, T0)).toBe(true);
    expect(text(db.get("lock", T0 + 1_000_000))).toBe("me");
    expect(db.info(T0).keysWithDeadline).toBe(0);
  });
});

describe("keys and values", () => {
  test("an empty value is stored and returned as empty, not as missing", () => {
    const db = new MapleDB();
    db.set("empty", new Uint8Array(0), T0);
    const value = db.get("empty", T0);
    expect(value).toBeInstanceOf(Uint8Array);
    expect(value?.byteLength).toBe(0);
  });

  test("binary values keep every byte, including a 1 MiB value", () => {
    const db = new MapleDB();
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    db.set("all", allBytes, T0);
    db.setE("big", big, 1000, 0, T0);
    expect(db.get("all", T0)).toEqual(allBytes);
    expect(db.get("big", T0)).toEqual(big);
  });

  test("unicode keys are distinct by their exact code units", () => {
    const db = new MapleDB();
    const keys = ["é", "e\u0301", "日本語", "🔑", "\uD800", "\uFFFD", "", " ", "\u0000"];
    for (const [i, key] of keys.entries()) db.set(key, bytes(String(i)), T0);
    for (const [i, key] of keys.entries()) expect(text(db.get(key, T0))).toBe(String(i));
    expect(db.info(T0).keys).toBe(keys.length);
  });

  test("very long keys that differ only in the middle are distinct keys", () => {
    const db = new MapleDB();
    const a = `${"x".repeat(500_000)}A${"y".repeat(500_000)}`;
    const b = `${"x".repeat(500_000)}B${"y".repeat(500_000)}`;
    // The shard hash only samples the ends, so these share a shard: identity must be the key.
    expect(shardHash(a)).toBe(shardHash(b));
    db.set(a, bytes("a"), T0);
    db.set(b, bytes("b"), T0);
    expect(text(db.get(a, T0))).toBe("a");
    expect(text(db.get(b, T0))).toBe("b");
    db.delete(a, T0);
    expect(db.has(a, T0)).toBe(false);
    expect(db.has(b, T0)).toBe(true);
  });

  test("keys spread over the shards", () => {
    const counts = new Array<number>(64).fill(0);
    for (let i = 0; i < 64_000; i++) {
      const shard = shardHash(`key-${i.toString().padStart(8, "0")}`) & 63;
      counts[shard] = (counts[shard] ?? 0) + 1;
    }
    expect(Math.min(...counts)).toBeGreaterThan(500);
    expect(Math.max(...counts)).toBeLessThan(1500);
  });
});

describe("info", () => {
  test("counts keys, keys with deadlines and approximate bytes", () => {
    const db = new MapleDB({ shards: 8 });
    db.set("plain", bytes("12345"), T0);
    db.setE("expiring", bytes("1"), 10, 0, T0);
    db.setE("deleting", bytes("1"), 0, 10, T0);
    expect(db.info(T0)).toEqual({
      keys: 3,
      keysWithDeadline: 2,
      approxBytes: "plain".length + 5 + "expiring".length + 1 + "deleting".length + 1,
      shards: 8,
    });
  });

  test("leaves out keys past their delete deadline even before purge", () => {
    const db = new MapleDB();
    db.set("plain", bytes("1"), T0);
    db.setE("expired", bytes("1"), 10, 0, T0);
    db.setE("deleted", bytes("1"), 0, 10, T0);
    const info = db.info(T0 + 10);
    expect(info.keys).toBe(2);
    expect(info.keysWithDeadline).toBe(1);
  });

  test("approximate bytes follow overwrites and deletes back to zero", () => {
    const db = new MapleDB();
    db.set("k", new Uint8Array(100), T0);
    db.setE("k", new Uint8Array(10), 5, 5, T0);
    db.expire("k", T0);
    expect(db.info(T0).approxBytes).toBe(11);
    db.delete("k", T0);
    expect(db.info(T0).approxBytes).toBe(0);
  });
});

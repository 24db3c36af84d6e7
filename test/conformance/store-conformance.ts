import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { ManualClock } from "../../src/clock.ts";
import {
  defaultStoreLimits,
  type IStore,
  type StoreLimits,
  type TxnCompare,
  type WatchChange,
  type WatchEvent,
} from "../../src/store/types.ts";
import { bytes, expectDkvError, text } from "../support/assertions.ts";
import { applyToStore, ModelStore, propertyParameters, storeOpArb } from "../support/store-ops.ts";

/**
 * What a store implementation hands the suite. The factory wires `clock` into the store
 * under test so time-dependent tests advance it instead of sleeping. `limits` are the
 * size limits the store enforces (defaultStoreLimits when absent); the suite needs room
 * for a 10 KiB key and a 1 MiB value.
 */
export interface StoreHarness {
  store: IStore;
  clock: ManualClock;
  limits?: StoreLimits;
  close(): Promise<void>;
}

/** The contract's store semantics, run against every IStore (lstore, dstore, RPC clients). */
export function runStoreConformance(name: string, factory: () => Promise<StoreHarness>): void {
  describe(`${name}: store conformance`, () => {
    let harness: StoreHarness;
    let store: IStore;
    let clock: ManualClock;
    let limits: StoreLimits;

    beforeEach(async () => {
      harness = await factory();
      store = harness.store;
      clock = harness.clock;
      limits = harness.limits ?? defaultStoreLimits;
    });
    afterEach(async () => {
      await harness.close();
    });

    /** Moves store time forward by `ms` (relative to the last call's position). */
    const advance = (ms: number) => clock.advance(ms);

    describe("set, get, has, delete, expire", () => {
      test("a missing key is not found and not present", async () => {
        expect(await store.get("missing")).toBeUndefined();
        expect(await store.has("missing")).toBe(false);
      });

      test("set stores bytes that get returns and has sees", async () => {
        await store.set("k", new Uint8Array([1, 2, 3]));
        expect(await store.get("k")).toEqual(new Uint8Array([1, 2, 3]));
        expect(await store.has("k")).toBe(true);
      });

      test("a string value is stored as its UTF-8 bytes", async () => {
        await store.set("k", "héllo ✓");
        expect(await store.get("k")).toEqual(bytes("héllo ✓"));
      });

      test("set overwrites the previous value", async () => {
        await store.set("k", "one");
        await store.set("k", "two");
        expect(text(await store.get("k"))).toBe("two");
      });

      test("keys are independent, including prefixes of each other", async () => {
        await store.set("a", "1");
        await store.set("ab", "2");
        await store.set("a\u0000", "3");
        await store.delete("ab");
        expect(text(await store.get("a"))).toBe("1");
        expect(await store.get("ab")).toBeUndefined();
        expect(text(await store.get("a\u0000"))).toBe("3");
      });

      test("delete removes the key entirely", async () => {
        await store.set("k", "v");
        await store.delete("k");
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(false);
      });

      test("delete of a missing key is a no-op", async () => {
        await store.delete("missing");
        expect(await store.has("missing")).toBe(false);
      });

      test("expire hides the value from get while has stays true", async () => {
        await store.set("k", "v");
        await store.expire("k");
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
        await advance(365 * 24 * 3600_000);
        expect(await store.has("k")).toBe(true);
      });

      test("expire of a missing key is a no-op and does not create it", async () => {
        await store.expire("missing");
        expect(await store.has("missing")).toBe(false);
        expect(await store.setEIfUnset("missing", "v", 0, 0)).toBe(true);
      });

      test("expire keeps a pending delete deadline", async () => {
        await store.setE("k", "v", 0, 1000);
        await store.expire("k");
        await advance(999);
        expect(await store.has("k")).toBe(true);
        await advance(1);
        expect(await store.has("k")).toBe(false);
      });

      test("set after expire makes the value visible again", async () => {
        await store.set("k", "old");
        await store.expire("k");
        await store.set("k", "new");
        expect(text(await store.get("k"))).toBe("new");
      });

      test("delete after expire removes the key", async () => {
        await store.set("k", "v");
        await store.expire("k");
        await store.delete("k");
        expect(await store.has("k")).toBe(false);
      });

      test("a stored value is a copy: mutating the input or the result changes nothing", async () => {
        const input = new Uint8Array([1, 2, 3]);
        await store.set("k", input);
        input[0] = 99;
        const first = await store.get("k");
        expect(first).toEqual(new Uint8Array([1, 2, 3]));
        first![1] = 99;
        expect(await store.get("k")).toEqual(new Uint8Array([1, 2, 3]));
      });

      test("info names the implementation and counts keys", async () => {
        await store.set("a", "1");
        await store.set("b", "2");
        await store.set("c", "3");
        await store.delete("c");
        const info = await store.info();
        expect(info.kind.length).toBeGreaterThan(0);
        expect(info.keys).toBe(2);
      });
    });

    describe("deadlines (setE)", () => {
      test("expireIn: the value is visible 1 ms before the deadline and gone exactly at it", async () => {
        await store.setE("k", "v", 1000, 0);
        await advance(999);
        expect(text(await store.get("k"))).toBe("v");
        await advance(1);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
      });

      test("expireIn without deleteIn: the key stays present for good", async () => {
        await store.setE("k", "v", 10, 0);
        await advance(10 * 365 * 24 * 3600_000);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
      });

      test("deleteIn: the key is present 1 ms before the deadline and gone exactly at it", async () => {
        await store.setE("k", "v", 0, 500);
        await advance(499);
        expect(await store.has("k")).toBe(true);
        await advance(1);
        expect(await store.has("k")).toBe(false);
      });

      test("deleteIn without expireIn also expires the value then, not before", async () => {
        await store.setE("k", "v", 0, 500);
        await advance(499);
        expect(text(await store.get("k"))).toBe("v");
        await advance(1);
        expect(await store.get("k")).toBeUndefined();
      });

      test("expireIn before deleteIn: expired but present in between, gone after", async () => {
        await store.setE("k", "v", 100, 300);
        await advance(100);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
        await advance(199);
        expect(await store.has("k")).toBe(true);
        await advance(1);
        expect(await store.has("k")).toBe(false);
      });

      test("expireIn after deleteIn: the delete deadline wins", async () => {
        await store.setE("k", "v", 800, 300);
        await advance(300);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(false);
      });

      test("both deadlines 0 mean never", async () => {
        await store.setE("k", "v", 0, 0);
        await advance(10 * 365 * 24 * 3600_000);
        expect(text(await store.get("k"))).toBe("v");
      });

      test("set clears both deadlines", async () => {
        await store.setE("k", "v", 100, 200);
        await store.set("k", "w");
        await advance(1000);
        expect(text(await store.get("k"))).toBe("w");
        expect(await store.has("k")).toBe(true);
      });

      test("setE replaces earlier deadlines, shorter or longer", async () => {
        await store.setE("short", "v", 0, 100);
        await store.setE("short", "v", 0, 0);
        await store.setE("long", "v", 0, 10_000);
        await store.setE("long", "v", 0, 50);
        await advance(100);
        expect(await store.has("short")).toBe(true);
        expect(await store.has("long")).toBe(false);
      });

      test("deadlines count from the time of the write", async () => {
        await advance(5000);
        await store.setE("k", "v", 0, 100);
        await advance(99);
        expect(await store.has("k")).toBe(true);
        await advance(1);
        expect(await store.has("k")).toBe(false);
      });

      test("setE on an expired-but-present key revives it with new deadlines", async () => {
        await store.setE("k", "old", 10, 0);
        await advance(10);
        await store.setE("k", "new", 0, 0);
        expect(text(await store.get("k"))).toBe("new");
      });

      test("a deleted key leaves no trace for a new write", async () => {
        await store.setE("k", "old", 0, 10);
        await advance(10);
        await store.set("k", "new");
        await advance(100);
        expect(text(await store.get("k"))).toBe("new");
      });

      test("negative, fractional or non-finite durations are rejected and change nothing", async () => {
        await store.set("k", "v");
        for (const [expireIn, deleteIn] of [
          [-1, 0],
          [0, -1],
          [1.5, 0],
          [Number.NaN, 0],
          [0, Number.POSITIVE_INFINITY],
        ] as const) {
          await expectDkvError(() => store.setE("k", "x", expireIn, deleteIn), "BAD_REQUEST");
          await expectDkvError(() => store.setEIfUnset("fresh", "x", expireIn, deleteIn), "BAD_REQUEST");
          await expectDkvError(() => store.renewIfEquals("k", "v", expireIn, deleteIn), "BAD_REQUEST");
        }
        await advance(1000);
        expect(text(await store.get("k"))).toBe("v");
        expect(await store.has("fresh")).toBe(false);
      });
    });

    describe("setEIfUnset", () => {
      test("writes an absent key and reports true", async () => {
        expect(await store.setEIfUnset("k", "v", 0, 0)).toBe(true);
        expect(text(await store.get("k"))).toBe("v");
      });

      test("does not touch a live key and reports false", async () => {
        await store.setE("k", "first", 0, 1000);
        expect(await store.setEIfUnset("k", "second", 0, 0)).toBe(false);
        expect(text(await store.get("k"))).toBe("first");
        await advance(1000);
        expect(await store.has("k")).toBe(false);
      });

      test("applies its deadlines when it writes", async () => {
        expect(await store.setEIfUnset("k", "v", 100, 200)).toBe(true);
        await advance(100);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
        await advance(100);
        expect(await store.has("k")).toBe(false);
      });

      test("expire then setEIfUnset: an expired-but-present key is not unset", async () => {
        await store.set("k", "v");
        await store.expire("k");
        expect(await store.setEIfUnset("k", "w", 0, 0)).toBe(false);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.has("k")).toBe(true);
      });

      test("a key past expireIn but before deleteIn is not unset", async () => {
        await store.setE("k", "v", 10, 100);
        await advance(50);
        expect(await store.setEIfUnset("k", "w", 0, 0)).toBe(false);
        expect(await store.get("k")).toBeUndefined();
      });

      test("a key exactly at its delete deadline is unset", async () => {
        await store.setE("k", "old", 0, 100);
        await advance(99);
        expect(await store.setEIfUnset("k", "new", 0, 0)).toBe(false);
        await advance(1);
        expect(await store.setEIfUnset("k", "new", 0, 0)).toBe(true);
        expect(text(await store.get("k"))).toBe("new");
        await advance(1000);
        expect(text(await store.get("k"))).toBe("new");
      });

      test("a deleted key is unset", async () => {
        await store.set("k", "old");
        await store.delete("k");
        expect(await store.setEIfUnset("k", "new", 0, 0)).toBe(true);
        expect(text(await store.get("k"))).toBe("new");
      });

      test("of many concurrent setEIfUnset on one key exactly one writes", async () => {
        const results = await Promise.all(
          Array.from({ length: 25 }, (_, i) => store.setEIfUnset("k", `writer-${i}`, 0, 0)),
        );
        expect(results.filter((written) => written)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(text(await store.get("k"))).toBe(`writer-${winner}`);
      });
    });

    describe("lock primitives", () => {
      test("claim writes an absent key and returns a positive revision", async () => {
        const claim = await store.claim("lock", "owner-a", 0, 0);
        expect(claim.written).toBe(true);
        expect(typeof claim.revision).toBe("bigint");
        expect(claim.revision).toBeGreaterThan(0n);
        expect(text(await store.get("lock"))).toBe("owner-a");
      });

      test("claim of a present key writes nothing and returns revision 0", async () => {
        await store.claim("lock", "owner-a", 0, 0);
        const second = await store.claim("lock", "owner-b", 0, 0);
        expect(second).toEqual({ written: false, revision: 0n });
        expect(text(await store.get("lock"))).toBe("owner-a");
      });

      test("claim revisions strictly increase across claims, keys and other writes", async () => {
        const revisions: bigint[] = [];
        for (let i = 0; i < 10; i++) {
          const claim = await store.claim(i % 2 === 0 ? "lock" : `other-${i}`, `owner-${i}`, 0, 0);
          expect(claim.written).toBe(true);
          revisions.push(claim.revision);
          await store.set("unrelated", `${i}`);
          if (i % 2 === 0) await store.delete("lock");
        }
        for (let i = 1; i < revisions.length; i++) expect(revisions[i]!).toBeGreaterThan(revisions[i - 1]!);
      });

      test("claim revisions keep increasing after the previous claim expires", async () => {
        const first = await store.claim("lock", "a", 0, 100);
        await advance(100);
        const second = await store.claim("lock", "b", 0, 100);
        expect(second.written).toBe(true);
        expect(second.revision).toBeGreaterThan(first.revision);
      });

      test("claim treats an expired-but-present key as taken, like setEIfUnset", async () => {
        await store.set("lock", "a");
        await store.expire("lock");
        expect((await store.claim("lock", "b", 0, 0)).written).toBe(false);
      });

      test("of many concurrent claims on one key exactly one writes", async () => {
        const claims = await Promise.all(
          Array.from({ length: 25 }, (_, i) => store.claim("lock", `o${i}`, 0, 0)),
        );
        const winners = claims.filter((claim) => claim.written);
        expect(winners).toHaveLength(1);
        expect(claims.filter((claim) => !claim.written).every((claim) => claim.revision === 0n)).toBe(true);
      });

      test("deleteIfEquals deletes a live equal value and reports true", async () => {
        await store.set("lock", "owner-a");
        expect(await store.deleteIfEquals("lock", "owner-a")).toBe(true);
        expect(await store.has("lock")).toBe(false);
      });

      test("deleteIfEquals compares bytes: a string and its UTF-8 bytes are equal", async () => {
        await store.set("lock", bytes("ключ"));
        expect(await store.deleteIfEquals("lock", "ключ")).toBe(true);
        expect(await store.has("lock")).toBe(false);
      });

      test("deleteIfEquals leaves a live different value and reports false", async () => {
        await store.set("lock", "owner-a");
        for (const other of ["owner-b", "owner-", "owner-aa", ""]) {
          expect(await store.deleteIfEquals("lock", other)).toBe(false);
        }
        expect(text(await store.get("lock"))).toBe("owner-a");
      });

      test("deleteIfEquals of a missing or deleted key reports true", async () => {
        expect(await store.deleteIfEquals("missing", "x")).toBe(true);
        await store.setE("lock", "owner-a", 0, 10);
        await advance(10);
        expect(await store.deleteIfEquals("lock", "owner-b")).toBe(true);
        expect(await store.has("lock")).toBe(false);
      });

      test("deleteIfEquals compares an expired-but-present value too, so its owner can release it", async () => {
        await store.set("lock", "owner-a");
        await store.expire("lock");
        expect(await store.deleteIfEquals("lock", "owner-b")).toBe(false);
        expect(await store.has("lock")).toBe(true);
        expect(await store.deleteIfEquals("lock", "owner-a")).toBe(true);
        expect(await store.has("lock")).toBe(false);
      });

      test("renewIfEquals extends the deadlines of a live equal value", async () => {
        await store.setE("lock", "owner-a", 0, 100);
        await advance(90);
        expect(await store.renewIfEquals("lock", "owner-a", 0, 100)).toBe(true);
        await advance(99);
        expect(text(await store.get("lock"))).toBe("owner-a");
        await advance(1);
        expect(await store.has("lock")).toBe(false);
      });

      test("renewIfEquals with 0 deadlines makes the value permanent", async () => {
        await store.setE("lock", "owner-a", 50, 100);
        expect(await store.renewIfEquals("lock", "owner-a", 0, 0)).toBe(true);
        await advance(10_000);
        expect(text(await store.get("lock"))).toBe("owner-a");
      });

      test("renewIfEquals can shorten the deadlines", async () => {
        await store.setE("lock", "owner-a", 0, 0);
        expect(await store.renewIfEquals("lock", "owner-a", 10, 20)).toBe(true);
        await advance(10);
        expect(await store.get("lock")).toBeUndefined();
        await advance(10);
        expect(await store.has("lock")).toBe(false);
      });

      test("renewIfEquals of a different value reports false and keeps the old deadlines", async () => {
        await store.setE("lock", "owner-a", 0, 100);
        expect(await store.renewIfEquals("lock", "owner-b", 0, 10_000)).toBe(false);
        await advance(100);
        expect(await store.has("lock")).toBe(false);
      });

      test("renewIfEquals of a missing, deleted or expired key reports false and creates nothing", async () => {
        expect(await store.renewIfEquals("missing", "x", 0, 0)).toBe(false);
        expect(await store.has("missing")).toBe(false);
        await store.setE("gone", "x", 0, 10);
        await advance(10);
        expect(await store.renewIfEquals("gone", "x", 0, 0)).toBe(false);
        expect(await store.has("gone")).toBe(false);
        await store.set("expired", "x");
        await store.expire("expired");
        expect(await store.renewIfEquals("expired", "x", 0, 0)).toBe(false);
        expect(await store.get("expired")).toBeUndefined();
      });
    });

    describe("binary values", () => {
      test("an empty value is found, not missing", async () => {
        await store.set("empty", new Uint8Array(0));
        const value = await store.get("empty");
        expect(value).toBeInstanceOf(Uint8Array);
        expect(value!.length).toBe(0);
        expect(await store.has("empty")).toBe(true);
        expect(await store.setEIfUnset("empty", "x", 0, 0)).toBe(false);
        await store.setE("empty-string", "", 0, 100);
        expect((await store.get("empty-string"))?.length).toBe(0);
      });

      test("all 256 byte values round-trip, including invalid UTF-8", async () => {
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        await store.set("all", all);
        expect(await store.get("all")).toEqual(all);
        const invalidUtf8 = new Uint8Array([0xff, 0xfe, 0x80, 0xc0, 0xed, 0xa0, 0x80, 0]);
        await store.set("invalid", invalidUtf8);
        expect(await store.get("invalid")).toEqual(invalidUtf8);
        expect(await store.deleteIfEquals("invalid", invalidUtf8)).toBe(true);
      });

      test("a 1 MiB value round-trips byte for byte", async () => {
        const big = new Uint8Array(1024 * 1024);
        crypto.getRandomValues(big.subarray(0, 65536));
        for (let offset = 65536; offset < big.length; offset += 65536) big.copyWithin(offset, 0, 65536);
        big[big.length - 1] = 7;
        await store.set("big", big);
        const back = await store.get("big");
        expect(back?.length).toBe(big.length);
        expect(Buffer.from(back!).equals(Buffer.from(big))).toBe(true);
      });
    });

    describe("keys", () => {
      test("unicode keys are distinct exact strings (no normalisation)", async () => {
        const keys = ["ключ", "🔑", "日本語", "e\u0301", "\u00e9", "a b\tc\nd", "/", "\u0000"];
        for (const [i, key] of keys.entries()) await store.set(key, `${i}`);
        for (const [i, key] of keys.entries()) expect(text(await store.get(key))).toBe(`${i}`);
        expect((await store.info()).keys).toBe(keys.length);
      });

      test("a 10 KiB key round-trips, ASCII and multi-byte", async () => {
        const ascii = "k".repeat(10 * 1024);
        const multiByte = "ж".repeat(5 * 1024);
        await store.set(ascii, "ascii");
        await store.set(multiByte, "multi");
        expect(text(await store.get(ascii))).toBe("ascii");
        expect(text(await store.get(multiByte))).toBe("multi");
        expect(await store.get(ascii.slice(1))).toBeUndefined();
      });

      test("an empty key is rejected with BAD_REQUEST by every operation", async () => {
        await expectDkvError(() => store.set("", "v"), "BAD_REQUEST");
        await expectDkvError(() => store.setE("", "v", 0, 0), "BAD_REQUEST");
        await expectDkvError(() => store.setEIfUnset("", "v", 0, 0), "BAD_REQUEST");
        await expectDkvError(() => store.claim("", "v", 0, 0), "BAD_REQUEST");
        await expectDkvError(() => store.get(""), "BAD_REQUEST");
        await expectDkvError(() => store.has(""), "BAD_REQUEST");
        await expectDkvError(() => store.expire(""), "BAD_REQUEST");
        await expectDkvError(() => store.delete(""), "BAD_REQUEST");
        await expectDkvError(() => store.deleteIfEquals("", "v"), "BAD_REQUEST");
        await expectDkvError(() => store.renewIfEquals("", "v", 0, 0), "BAD_REQUEST");
        expect((await store.info()).keys).toBe(0);
      });
    });

    describe("size limits", () => {
      test("a key of exactly the limit is accepted", async () => {
        const key = "k".repeat(limits.maxKeyBytes);
        await store.set(key, "v");
        expect(text(await store.get(key))).toBe("v");
      });

      test("a key over the limit is rejected with TOO_LARGE by every write, changing nothing", async () => {
        const key = "k".repeat(limits.maxKeyBytes + 1);
        await store.set("k", "existing");
        await expectDkvError(() => store.set(key, "v"), "TOO_LARGE");
        await expectDkvError(() => store.setE(key, "v", 0, 0), "TOO_LARGE");
        await expectDkvError(() => store.setEIfUnset(key, "v", 0, 0), "TOO_LARGE");
        await expectDkvError(() => store.claim(key, "v", 0, 0), "TOO_LARGE");
        await expectDkvError(() => store.delete(key), "TOO_LARGE");
        await expectDkvError(() => store.expire(key), "TOO_LARGE");
        await expectDkvError(() => store.deleteIfEquals(key, "v"), "TOO_LARGE");
        await expectDkvError(() => store.renewIfEquals(key, "v", 0, 0), "TOO_LARGE");
        expect((await store.info()).keys).toBe(1);
        expect(text(await store.get("k"))).toBe("existing");
      });

      test("the key limit counts UTF-8 bytes, not characters", async () => {
        // 3 bytes per "€": under the limit in UTF-16 units, over it in bytes.
        const key = "€".repeat(Math.floor(limits.maxKeyBytes / 3) + 1);
        expect(key.length).toBeLessThanOrEqual(limits.maxKeyBytes);
        await expectDkvError(() => store.set(key, "v"), "TOO_LARGE");
        expect((await store.info()).keys).toBe(0);
      });

      test("a value over the limit is rejected with TOO_LARGE, keeping the old value and deadlines", async () => {
        const tooBig = new Uint8Array(limits.maxValueBytes + 1);
        await store.setE("k", "old", 0, 1000);
        await expectDkvError(() => store.set("k", tooBig), "TOO_LARGE");
        await expectDkvError(() => store.setE("k", tooBig, 0, 0), "TOO_LARGE");
        await expectDkvError(() => store.setEIfUnset("fresh", tooBig, 0, 0), "TOO_LARGE");
        await expectDkvError(() => store.claim("fresh", tooBig, 0, 0), "TOO_LARGE");
        expect(text(await store.get("k"))).toBe("old");
        expect(await store.has("fresh")).toBe(false);
        await advance(1000);
        expect(await store.has("k")).toBe(false);
      });

      test("a string value over the limit in UTF-8 bytes is rejected", async () => {
        const tooBig = "é".repeat(Math.floor(limits.maxValueBytes / 2) + 1);
        await expectDkvError(() => store.set("k", tooBig), "TOO_LARGE");
        expect(await store.has("k")).toBe(false);
      });

      test("a value of exactly the limit is accepted", async () => {
        await store.set("k", new Uint8Array(limits.maxValueBytes).fill(1));
        expect((await store.get("k"))?.length).toBe(limits.maxValueBytes);
      });
    });

    describe("data API: revisions and listing", () => {
      test("get with revisions: version counts writes since creation, revisions only grow", async () => {
        await store.set("r/a", "1");
        const first = await store.getEntry("r/a");
        expect(first).toMatchObject({ key: "r/a", value: bytes("1"), version: 1 });
        expect(first!.createRevision).toBe(first!.modRevision);
        await store.set("r/b", "x");
        await store.setE("r/a", "2", 60_000, 0);
        const second = await store.getEntry("r/a");
        expect(second).toMatchObject({
          value: bytes("2"),
          version: 2,
          createRevision: first!.createRevision,
        });
        expect(second!.modRevision).toBeGreaterThan((await store.getEntry("r/b"))!.modRevision);
        await store.delete("r/a");
        expect(await store.getEntry("r/a")).toBeUndefined();
        await store.set("r/a", "3");
        const reborn = await store.getEntry("r/a");
        expect(reborn!.version).toBe(1);
        expect(reborn!.createRevision).toBeGreaterThan(second!.modRevision);
      });

      test("an expired value has no entry, like get", async () => {
        await store.setE("r/e", "v", 100, 0);
        advance(100);
        expect(await store.getEntry("r/e")).toBeUndefined();
      });

      test("list: a prefix in UTF-8 byte order, with values and revisions", async () => {
        // "\uE000" sorts before "😀" in UTF-8 but after it in UTF-16 code units.
        for (const key of ["l/b", "l/😀", "l/a", "l/\uE000", "l", "m/a", "l/a/deep"])
          await store.set(key, key);
        const page = await store.list({ prefix: "l/" });
        expect(page.items.map((item) => item.key)).toEqual(["l/a", "l/a/deep", "l/b", "l/\uE000", "l/😀"]);
        expect(page.more).toBe(false);
        expect(page.next).toBeUndefined();
        expect(page.items[0]).toMatchObject({ value: bytes("l/a"), version: 1 });
        expect(await store.count({ prefix: "l/" })).toBe(5);
      });

      test("list: [from, to) ranges, keys-only, and pages that resume after the last key", async () => {
        for (const key of ["a", "b", "c", "d", "e"]) await store.set(key, key);
        expect((await store.list({ from: "b", to: "d" })).items.map((i) => i.key)).toEqual(["b", "c"]);
        expect((await store.list({ from: "d" })).items.map((i) => i.key)).toEqual(["d", "e"]);
        expect((await store.list({ to: "b", keysOnly: true })).items).toEqual([
          {
            key: "a",
            value: undefined,
            version: 1,
            createRevision: expect.any(Number),
            modRevision: expect.any(Number),
          },
        ]);
        const seen: string[] = [];
        let after: string | undefined;
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.list({ limit: 2, after });
          seen.push(...page.items.map((item) => item.key));
          if (!page.more) break;
          expect(page.next).toBe(page.items[1]!.key);
          after = page.next;
        }
        expect(seen).toEqual(["a", "b", "c", "d", "e"]);
        expect(await store.count({ from: "b", to: "e" })).toBe(3);
      });

      test("list skips expired and deleted keys", async () => {
        await store.set("x/live", "1");
        await store.setE("x/expiring", "2", 50, 0);
        await store.setE("x/deleting", "3", 0, 50);
        await store.set("x/gone", "4");
        await store.delete("x/gone");
        advance(50);
        expect((await store.list({ prefix: "x/" })).items.map((i) => i.key)).toEqual(["x/live"]);
        expect(await store.count({ prefix: "x/" })).toBe(1);
      });

      test("bad list options are refused and change nothing", async () => {
        await expectDkvError(() => store.list({ prefix: "a", from: "b" }), "BAD_REQUEST");
        await expectDkvError(() => store.list({ limit: 0 }), "BAD_REQUEST");
        await expectDkvError(() => store.list({ limit: 1.5 }), "BAD_REQUEST");
        await expectDkvError(() => store.count({ prefix: "a", to: "b" }), "BAD_REQUEST");
      });
    });

    describe("data API: watch", () => {
      type Events = AsyncIterator<WatchEvent>;
      /** Consumes the progress event every watch starts with: the revision it starts after. */
      const started = async (events: Events): Promise<number> => {
        const first = await events.next();
        expect(first.value?.type).toBe("progress");
        return (first.value as WatchEvent).revision;
      };
      /** The next change, skipping progress events (bounded: a few idle intervals at most). */
      const nextChange = async (events: Events): Promise<WatchChange> => {
        for (let i = 0; i < 100; i++) {
          const next = await events.next();
          if (next.done === true) throw new Error("the watch ended");
          if (next.value.type !== "progress") return next.value;
        }
        throw new Error("only progress events");
      };

      test("a key watch sees put, expire and delete in commit order, at the revisions of the writes", async () => {
        const events = store.watch("w/k");
        await started(events);
        await store.set("w/k", "1");
        const first = await store.getEntry("w/k");
        await store.set("w/other", "x");
        await store.expire("w/k");
        await store.set("w/k", "2");
        const second = await store.getEntry("w/k");
        await store.delete("w/k");
        expect(await nextChange(events)).toEqual({
          type: "put",
          key: "w/k",
          value: bytes("1"),
          revision: first!.modRevision,
        });
        const expired = await nextChange(events);
        expect(expired).toMatchObject({ type: "expire", key: "w/k" });
        expect(expired.revision).toBeGreaterThan(first!.modRevision);
        expect(await nextChange(events)).toEqual({
          type: "put",
          key: "w/k",
          value: bytes("2"),
          revision: second!.modRevision,
        });
        const deleted = await nextChange(events);
        expect(deleted).toMatchObject({ type: "delete", key: "w/k" });
        expect(deleted.value).toBeUndefined();
        expect(deleted.revision).toBeGreaterThan(second!.modRevision);
        await events.return?.();
      });

      test("a prefix watch sees every key under the prefix, in order, and nothing else", async () => {
        const events = store.watch("svc/", { prefix: true });
        await started(events);
        await store.set("svc/b", "1");
        await store.set("svd/x", "no");
        await store.set("svc", "no");
        await store.set("svc/a", new Uint8Array([0, 255]));
        await store.delete("svc/b");
        const seen = [await nextChange(events), await nextChange(events), await nextChange(events)];
        expect(seen.map((e) => `${e.type} ${e.key}`)).toEqual(["put svc/b", "put svc/a", "delete svc/b"]);
        expect(seen[1]!.value).toEqual(new Uint8Array([0, 255]));
        expect(seen[0]!.revision).toBeLessThan(seen[1]!.revision);
        expect(seen[1]!.revision).toBeLessThan(seen[2]!.revision);
        await events.return?.();
      });

      test("a watch from a revision replays what happened since, then continues live", async () => {
        await store.set("w/r", "1");
        const one = await store.getEntry("w/r");
        await store.set("w/r", "2");
        await store.set("w/r", "3");
        const events = store.watch("w/r", { fromRevision: one!.modRevision + 1 });
        expect(await started(events)).toBe(one!.modRevision);
        expect(text((await nextChange(events)).value)).toBe("2");
        expect(text((await nextChange(events)).value)).toBe("3");
        await store.set("w/r", "4");
        expect(text((await nextChange(events)).value)).toBe("4");
        await events.return?.();
      });

      test("the changes of one transaction arrive together, at its revision", async () => {
        const events = store.watch("t/", { prefix: true });
        await started(events);
        await store.set("t/b", "old");
        const result = await store.txn({
          compare: [],
          success: [
            { op: "set", key: "t/a", value: "1" },
            { op: "delete", key: "t/b" },
            { op: "set", key: "t/c", value: "3" },
          ],
          failure: [],
        });
        await nextChange(events);
        const changes = [await nextChange(events), await nextChange(events), await nextChange(events)];
        expect(changes.map((e) => `${e.type} ${e.key}@${e.revision}`)).toEqual([
          `put t/a@${result.revision}`,
          `delete t/b@${result.revision}`,
          `put t/c@${result.revision}`,
        ]);
        await events.return?.();
      });

      test("reaching a delete deadline is an expire event, with no other write", async () => {
        await store.setE("w/ttl", "v", 0, 50);
        // From the write's revision on: a follower may not have applied it when the watch starts.
        const written = await store.getEntry("w/ttl");
        const events = store.watch("w/ttl", { fromRevision: written!.modRevision + 1 });
        await started(events);
        await advance(400);
        expect(await nextChange(events)).toMatchObject({ type: "expire", key: "w/ttl" });
        expect(await store.has("w/ttl")).toBe(false);
        await events.return?.();
      });

      test("bad watches are refused before anything starts", async () => {
        await expectDkvError(() => store.watch(""), "BAD_REQUEST");
        await expectDkvError(() => store.watch("k", { fromRevision: 0 }), "BAD_REQUEST");
        await expectDkvError(() => store.watch("k", { fromRevision: 1.5 }), "BAD_REQUEST");
      });
    });

    describe("data API: transactions", () => {
      test("compare-and-swap: the success branch runs when every comparison holds", async () => {
        await store.set("t/n", "1");
        const swap = (from: string, to: string) =>
          store.txn({
            compare: [{ key: "t/n", target: "value", op: "==", value: from }],
            success: [{ op: "set", key: "t/n", value: to }],
            failure: [{ op: "get", key: "t/n" }],
          });
        const won = await swap("1", "2");
        expect(won.succeeded).toBe(true);
        expect(won.results).toEqual([{ op: "set", key: "t/n" }]);
        const entry = await store.getEntry("t/n");
        expect(entry).toMatchObject({ value: bytes("2"), version: 2, modRevision: won.revision });
        const lost = await swap("1", "3");
        expect(lost.succeeded).toBe(false);
        expect(lost.results).toEqual([
          {
            op: "get",
            key: "t/n",
            found: true,
            value: bytes("2"),
            version: 2,
            createRevision: entry!.createRevision,
            modRevision: won.revision,
          },
        ]);
        expect(text(await store.get("t/n"))).toBe("2");
      });

      test("every write of a transaction shares one revision, above earlier ones", async () => {
        await store.set("t/before", "x");
        const before = (await store.getEntry("t/before"))!.modRevision;
        const result = await store.txn({
          compare: [],
          success: [
            { op: "set", key: "t/a", value: "1" },
            { op: "setE", key: "t/b", value: "2", expireInMs: 60_000, deleteInMs: 0 },
            { op: "delete", key: "t/before" },
            { op: "get", key: "t/a" },
          ],
          failure: [],
        });
        expect(result.succeeded).toBe(true);
        expect(result.revision).toBeGreaterThan(before);
        expect((await store.getEntry("t/a"))!.modRevision).toBe(result.revision);
        expect((await store.getEntry("t/b"))!.modRevision).toBe(result.revision);
        expect(await store.has("t/before")).toBe(false);
        // A get in the branch sees the branch's earlier writes.
        expect(result.results[3]).toMatchObject({
          op: "get",
          found: true,
          value: bytes("1"),
          modRevision: result.revision,
        });
      });

      test("version, revisions and existence compare as etcd's: a missing key is 0 and absent", async () => {
        await store.set("t/k", "v");
        await store.set("t/k", "w");
        const { modRevision, createRevision } = (await store.getEntry("t/k"))!;
        const check = async (compare: TxnCompare) =>
          (await store.txn({ compare: [compare], success: [], failure: [] })).succeeded;
        expect(await check({ key: "t/k", target: "version", op: "==", value: 2 })).toBe(true);
        expect(await check({ key: "t/k", target: "version", op: ">", value: 2 })).toBe(false);
        expect(await check({ key: "t/k", target: "modRevision", op: "==", value: modRevision })).toBe(true);
        expect(await check({ key: "t/k", target: "modRevision", op: "<", value: modRevision })).toBe(false);
        expect(await check({ key: "t/k", target: "createRevision", op: "<", value: modRevision })).toBe(true);
        expect(await check({ key: "t/k", target: "createRevision", op: "!=", value: createRevision })).toBe(
          false,
        );
        expect(await check({ key: "t/k", target: "exists", op: "==", value: true })).toBe(true);
        expect(await check({ key: "t/k", target: "value", op: ">", value: "v" })).toBe(true);
        expect(await check({ key: "t/k", target: "value", op: "<", value: "wa" })).toBe(true);
        expect(await check({ key: "t/none", target: "version", op: "==", value: 0 })).toBe(true);
        expect(await check({ key: "t/none", target: "exists", op: "!=", value: true })).toBe(true);
        expect(await check({ key: "t/none", target: "value", op: "!=", value: "x" })).toBe(false);
      });

      test("an invalid transaction is refused whole: nothing of it applies", async () => {
        await expectDkvError(
          () =>
            store.txn({
              compare: [],
              success: [
                { op: "set", key: "t/first", value: "1" },
                { op: "set", key: "", value: "2" },
              ],
              failure: [],
            }),
          "BAD_REQUEST",
        );
        await expectDkvError(
          () =>
            store.txn({
              compare: [{ key: "t/x", target: "exists", op: "<", value: true } as unknown as TxnCompare],
              success: [{ op: "set", key: "t/first", value: "1" }],
              failure: [],
            }),
          "BAD_REQUEST",
        );
        expect(await store.has("t/first")).toBe(false);
      });

      test("a transaction is bounded by bytes, not by a count of operations", async () => {
        const success = Array.from({ length: 1000 }, (_, i) => ({
          op: "set" as const,
          key: `t/many/${i}`,
          value: "v",
        }));
        const result = await store.txn({ compare: [], success, failure: [] });
        expect(result.results).toHaveLength(1000);
        expect(await store.count({ prefix: "t/many/" })).toBe(1000);
      });
    });

    describe("against the model", () => {
      test("random operations with random time steps agree with the model KVDB", async () => {
        let run = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(storeOpArb, { maxLength: 50 }), async (steps) => {
            // One store for all runs: each run gets its own key prefix and a model starting now.
            const prefix = `p${run++}/`;
            const model = new ModelStore(clock.now());
            let lastRevision = -1n;
            for (const [index, op] of steps.entries()) {
              const expected = model.apply(op, prefix);
              const actual = await applyToStore(store, advance, op, prefix, (revision) => {
                expect(revision).toBeGreaterThan(lastRevision);
                lastRevision = revision;
              });
              if (actual !== expected) {
                throw new Error(
                  `step ${index} ${describeOp(op)}: store said ${actual}, model said ${expected}`,
                );
              }
            }
          }),
          propertyParameters(60),
        );
      });
    });
  });
}

function describeOp(op: object): string {
  return JSON.stringify(op, (_key, value: unknown) =>
    value instanceof Uint8Array ? `0x${Buffer.from(value).toString("hex")}` : value,
  );
}

import { describe, expect, test } from "bun:test";
import { DedupCache } from "../../src/rpc/server/dedup-cache.ts";

describe("DedupCache", () => {
  test("a retry within the window finds the original entry", () => {
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => 0);
    const first = cache.lookupOrInsert("c.1");
    const retry = cache.lookupOrInsert("c.1");
    expect(first.fresh).toBe(true);
    expect(retry.fresh).toBe(false);
    expect(retry.entry).toBe(first.entry);
  });

  test("never holds more than entriesMax outcomes, and keeps the most recent half", () => {
    const cache = new DedupCache({ entriesMax: 1000, ttlMs: 60_000 }, () => 0);
    for (let i = 0; i < 10_000; i++) cache.lookupOrInsert(`c.${i}`);
    expect(cache.size).toBeLessThanOrEqual(1000);
    for (let i = 9_500; i < 10_000; i++) expect(cache.lookupOrInsert(`c.${i}`).fresh).toBe(false);
  });

  test("an outcome older than ttlMs is forgotten", () => {
    let now = 0;
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => now);
    cache.lookupOrInsert("c.1");
    now = 400;
    expect(cache.lookupOrInsert("c.1").fresh).toBe(false);
    now = 1001;
    expect(cache.lookupOrInsert("c.1").fresh).toBe(true);
  });

  test("inserting stays cheap once the cache is full (no walk over evicted entries)", () => {
    const cache = new DedupCache({ entriesMax: 100_000, ttlMs: 60_000 }, () => 0);
    // 200k inserts through a full cache: with a walk over the 100k kept entries per insert
    // (1e10 steps) this never finishes; linear eviction takes well under a second even on a
    // loaded machine, so the generous timeout only guards against the quadratic case.
    for (let i = 0; i < 200_000; i++) cache.lookupOrInsert(`c.${i}`);
    expect(cache.size).toBeLessThanOrEqual(100_000);
  }, 60_000);
});

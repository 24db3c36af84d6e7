import { describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import type { Message } from "../../src/rpc/protocol/types.ts";
import { DedupCache, EMPTY_REPLY } from "../../src/rpc/server/dedup-cache.ts";

const header = (requestId: number, clientIdLow = 7, clientIdHigh = 1): FrameHeader => ({
  serializer: 1,
  flags: 0,
  bodyLength: 0,
  requestId,
  shard: 1,
  op: 1,
  clientIdHigh,
  clientIdLow,
});

/** Collects what the cache answers retries with. */
function recorder() {
  const answers: { requestId: number; response: Message | undefined; error: DkvError | undefined }[] = [];
  return {
    answers,
    deliver(h: FrameHeader, response: Message | undefined, error: DkvError | undefined) {
      answers.push({ requestId: h.requestId, response, error });
    },
  };
}

describe("DedupCache", () => {
  test("a retry of a finished write gets its first answer; other clients' ids are apart", () => {
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => 0);
    const target = recorder();
    const at = cache.admit(header(1), target);
    expect(at).toBeGreaterThanOrEqual(0);
    // The same request id from another client is another write.
    expect(cache.admit(header(1, 8), target)).toBeGreaterThanOrEqual(0);
    expect(cache.admit(header(1, 7, 2), target)).toBeGreaterThanOrEqual(0);
    const reply = { written: true };
    cache.current.complete(at, reply, undefined);
    expect(cache.admit(header(1), target)).toBe(-1);
    expect(target.answers).toEqual([{ requestId: 1, response: reply, error: undefined }]);
  });

  test("a retry of a write still in flight is answered once it finishes, in order", () => {
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => 0);
    const target = recorder();
    const at = cache.admit(header(5), target);
    const generation = cache.current;
    expect(cache.admit(header(5), target)).toBe(-1);
    expect(cache.admit(header(5), target)).toBe(-1);
    expect(target.answers).toEqual([]);
    generation.complete(at, EMPTY_REPLY, undefined);
    expect(target.answers.map((a) => a.response)).toEqual([EMPTY_REPLY, EMPTY_REPLY]);
    // A late second completion (a timed-out call finishing) changes nothing.
    generation.complete(at, { other: 1 }, undefined);
    expect(cache.admit(header(5), target)).toBe(-1);
    expect(target.answers[2]!.response).toBe(EMPTY_REPLY);
  });

  test("errors are remembered like replies", () => {
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => 0);
    const target = recorder();
    const at = cache.admit(header(9), target);
    const error = new Error("refused") as DkvError;
    cache.current.complete(at, undefined, error);
    expect(cache.admit(header(9), target)).toBe(-1);
    expect(target.answers[0]!.error).toBe(error);
  });

  test("never holds more than entriesMax outcomes, and keeps the most recent half", () => {
    const cache = new DedupCache({ entriesMax: 1000, ttlMs: 60_000 }, () => 0);
    const target = recorder();
    for (let i = 0; i < 10_000; i++) {
      const at = cache.admit(header(i), target);
      cache.current.complete(at, EMPTY_REPLY, undefined);
    }
    expect(cache.size).toBeLessThanOrEqual(1000);
    for (let i = 9_500; i < 10_000; i++) expect(cache.admit(header(i), target)).toBe(-1);
    expect(cache.admit(header(0), target)).toBeGreaterThanOrEqual(0);
  });

  test("an outcome older than ttlMs is forgotten", () => {
    let now = 0;
    const cache = new DedupCache({ entriesMax: 100, ttlMs: 1000 }, () => now);
    const target = recorder();
    cache.current.complete(cache.admit(header(1), target), EMPTY_REPLY, undefined);
    now = 400;
    expect(cache.admit(header(1), target)).toBe(-1);
    now = 1001;
    expect(cache.admit(header(1), target)).toBeGreaterThanOrEqual(0);
  });

  test("inserting stays cheap once the cache is full (no walk over evicted entries)", () => {
    const cache = new DedupCache({ entriesMax: 100_000, ttlMs: 60_000 }, () => 0);
    const target = recorder();
    // 200k inserts through a full cache: with a walk over the 100k kept entries per insert
    // (1e10 steps) this never finishes; linear eviction takes well under a second even on a
    // loaded machine, so the generous timeout only guards against the quadratic case.
    for (let i = 0; i < 200_000; i++) cache.admit(header(i), target);
    expect(cache.size).toBeLessThanOrEqual(100_000);
    expect(cache.admit(header(199_999), target)).toBe(-1);
  }, 60_000);
});

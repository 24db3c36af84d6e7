/**
 * Review of rss14's full collections under load (b0488ec, memory-release.ts): whatever the
 * mix of request load, snapshots, collection costs and time, full collections under load
 * neither loop nor crowd out the work. Each takes at most 1/LOAD_INTERVAL_COST_FACTOR of
 * the time (plus the last one), needs LOAD_FULL_BYTES of requests of its own, and at most
 * one collection under load is pending at a time.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import {
  LOAD_FULL_BYTES,
  LOAD_INTERVAL_COST_FACTOR,
  MemoryRelease,
  type MemoryReleaseOptions,
  REQUEST_OVERHEAD_BYTES,
} from "../../src/server/memory-release.ts";
import { FakeTimers } from "../support/fake-timers.ts";

const BODY_BYTES = 128;
/** About LOAD_EDEN_BYTES a turn. */
const REQUESTS_PER_TURN = 3000;

/** Injected time and timers, and collections that take a chosen time. */
function fakeRuntime() {
  const clock = new FakeTimers();
  const fake = {
    get nowMs() {
      return clock.nowMs;
    },
    set nowMs(ms: number) {
      clock.nowMs = ms;
    },
    costMs: 0,
    fullMs: 0,
    fulls: 0,
    get maxPending() {
      return clock.maxPending;
    },
    collect: () => {
      fake.nowMs += fake.costMs;
    },
    collectEdenUnderLoad: () => {
      fake.nowMs += fake.costMs / 10;
    },
    collectFullUnderLoad: () => {
      fake.fulls++;
      fake.fullMs += fake.costMs;
      fake.nowMs += fake.costMs;
    },
    heapBytes: () => 0,
    later: clock.later,
    monotonicMs: clock.monotonicMs,
    advance: (ms: number) => clock.advance(ms),
  };
  return fake satisfies MemoryReleaseOptions;
}

const header: FrameHeader = {
  serializer: 1,
  flags: 0,
  bodyLength: BODY_BYTES,
  requestId: 1,
  shard: 100,
  op: 1,
  clientIdHigh: 0,
  clientIdLow: 0,
};

type Step =
  | { kind: "load"; turns: number }
  | { kind: "snapshot" }
  | { kind: "cost"; ms: number }
  | { kind: "wait"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("load" as const), turns: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ kind: fc.constant("snapshot" as const) }),
  fc.record({ kind: fc.constant("cost" as const), ms: fc.integer({ min: 0, max: 200 }) }),
  fc.record({ kind: fc.constant("wait" as const), ms: fc.integer({ min: 0, max: 2000 }) }),
);

test("full collections under load stay spaced by their cost and by the load", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      const fake = fakeRuntime();
      const memory = new MemoryRelease(fake);
      const requests = memory.requestObserver(undefined);
      const raft = memory.raftObserver(undefined);
      let requestBytes = 0;
      let maxCostMs = 0;
      for (const s of steps) {
        if (s.kind === "load") {
          // Sustained load: each turn (1 ms) answers REQUESTS_PER_TURN requests.
          for (let turn = 0; turn < s.turns; turn++) {
            for (let i = 0; i < REQUESTS_PER_TURN; i++) requests.replied(header, undefined, 0, undefined);
            requestBytes += REQUESTS_PER_TURN * (BODY_BYTES + REQUEST_OVERHEAD_BYTES);
            fake.advance(1);
          }
        } else if (s.kind === "snapshot") raft.snapshotDone(1, "save", 5, true);
        else if (s.kind === "cost") {
          fake.costMs = s.ms;
          maxCostMs = Math.max(maxCostMs, s.ms);
        } else fake.advance(s.ms);
      }
      fake.advance(60_000);
      expect(fake.fulls).toBeLessThanOrEqual(Math.floor(requestBytes / LOAD_FULL_BYTES));
      expect(fake.fullMs).toBeLessThanOrEqual(fake.nowMs / LOAD_INTERVAL_COST_FACTOR + maxCostMs);
      // The load's collection and one quiet or snapshot check at most.
      expect(fake.maxPending).toBeLessThanOrEqual(2);
      memory[Symbol.dispose]();
    }),
    { numRuns: 200 },
  );
});

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { ManualClock } from "../../src/clock.ts";
import type { AcquireResult, ILockManager } from "../../src/lockmgr/types.ts";
import { expectDkvError } from "../support/assertions.ts";
import { advanceAndFlush, settledFlag, settleWithClock } from "../support/drive.ts";
import { propertyParameters } from "../support/store-ops.ts";

/** What a lock manager implementation hands the suite; the factory wires `clock` into it and its store. */
export interface LockHarness {
  locks: ILockManager;
  clock: ManualClock;
  close(): Promise<void>;
}

/** Clock step used to drive blocking acquires: small against the waits below, large against retry intervals. */
const STEP_MS = 25;

/** The contract's lock semantics, run against every ILockManager (over lstore, dstore, RPC). */
export function runLockConformance(name: string, factory: () => Promise<LockHarness>): void {
  describe(`${name}: lock conformance`, () => {
    let harness: LockHarness;
    let locks: ILockManager;
    let clock: ManualClock;

    beforeEach(async () => {
      harness = await factory();
      locks = harness.locks;
      clock = harness.clock;
    });
    afterEach(async () => {
      await harness.close();
    });

    const advance = (ms: number) => advanceAndFlush(clock, ms);

    /** Acquires and asserts success, returning the holder's id and token. */
    async function mustAcquire(
      key: string,
      ttlMs: number,
    ): Promise<{ ownerId: string; fencingToken: bigint }> {
      const result = await locks.acquire(key, ttlMs);
      expect(result.acquired).toBe(true);
      return { ownerId: result.ownerId!, fencingToken: result.fencingToken! };
    }

    async function isHeld(key: string): Promise<boolean> {
      const probe = await locks.acquire(key, 1);
      if (!probe.acquired) return true;
      await locks.release(key, probe.ownerId!);
      return false;
    }

    describe("acquire", () => {
      test("a free lock is acquired with an owner id and a positive fencing token", async () => {
        const result = await locks.acquire("lock", 1000);
        expect(result.acquired).toBe(true);
        expect(result.ownerId).toMatch(/^[0-9a-f]{32,}$/);
        expect(typeof result.fencingToken).toBe("bigint");
        expect(result.fencingToken!).toBeGreaterThan(0n);
      });

      test("a held lock is not acquired, and the refusal carries no owner id or token", async () => {
        await mustAcquire("lock", 0);
        const second = await locks.acquire("lock", 0);
        expect(second.acquired).toBe(false);
        expect(second.ownerId).toBeUndefined();
        expect(second.fencingToken).toBeUndefined();
      });

      test("locks on different keys are independent", async () => {
        await mustAcquire("a", 0);
        await mustAcquire("b", 0);
      });

      test("of many concurrent acquires of one key exactly one wins", async () => {
        const results = await Promise.all(Array.from({ length: 50 }, () => locks.acquire("lock", 0)));
        expect(results.filter((result) => result.acquired)).toHaveLength(1);
      });

      test("owner ids are at least 32 lowercase hex characters and distinct", async () => {
        const ids = new Set<string>();
        for (let i = 0; i < 100; i++) {
          const { ownerId } = await mustAcquire(`lock-${i}`, 0);
          expect(ownerId).toMatch(/^[0-9a-f]{32,}$/);
          ids.add(ownerId);
        }
        expect(ids.size).toBe(100);
      });

      test("ttl 0 holds the lock until it is released", async () => {
        const holder = await mustAcquire("lock", 0);
        await advance(365 * 24 * 3600_000);
        expect(await isHeld("lock")).toBe(true);
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
        expect(await isHeld("lock")).toBe(false);
      });

      test("invalid arguments are rejected with BAD_REQUEST", async () => {
        await expectDkvError(() => locks.acquire("", 1000), "BAD_REQUEST");
        await expectDkvError(() => locks.acquire("lock", -1), "BAD_REQUEST");
        await expectDkvError(() => locks.acquire("lock", 1.5), "BAD_REQUEST");
        await expectDkvError(() => locks.acquire("lock", 1000, { waitMs: -1 }), "BAD_REQUEST");
        await expectDkvError(() => locks.release("", "ab"), "BAD_REQUEST");
        await expectDkvError(() => locks.release("lock", ""), "BAD_REQUEST");
        await expectDkvError(() => locks.refresh("lock", "ab", -5), "BAD_REQUEST");
        expect(await isHeld("lock")).toBe(false);
      });
    });

    describe("expiry", () => {
      test("the lock is held 1 ms before its TTL and free exactly at it", async () => {
        await mustAcquire("lock", 1000);
        await advance(999);
        expect((await locks.acquire("lock", 1000)).acquired).toBe(false);
        await advance(1);
        expect((await locks.acquire("lock", 1000)).acquired).toBe(true);
      });

      test("fencing tokens strictly increase across holders, by release and by expiry", async () => {
        const tokens: bigint[] = [];
        for (let i = 0; i < 10; i++) {
          const holder = await mustAcquire("lock", 100);
          tokens.push(holder.fencingToken);
          if (i % 2 === 0) expect(await locks.release("lock", holder.ownerId)).toBe(true);
          else await advance(100);
        }
        for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
      });
    });

    describe("release", () => {
      test("the owner releases and the next holder gets a larger token", async () => {
        const first = await mustAcquire("lock", 0);
        expect(await locks.release("lock", first.ownerId)).toBe(true);
        const second = await mustAcquire("lock", 0);
        expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
      });

      test("another owner cannot release a held lock", async () => {
        const holder = await mustAcquire("lock", 0);
        const other = await mustAcquire("other", 0);
        expect(await locks.release("lock", other.ownerId)).toBe(false);
        expect(await isHeld("lock")).toBe(true);
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
      });

      test("a stale owner cannot release the next holder's lock", async () => {
        const stale = await mustAcquire("lock", 100);
        await advance(100);
        const current = await mustAcquire("lock", 0);
        expect(await locks.release("lock", stale.ownerId)).toBe(false);
        expect(await isHeld("lock")).toBe(true);
        expect(await locks.release("lock", current.ownerId)).toBe(true);
      });

      test("releasing a lock that no longer exists is true", async () => {
        expect(await locks.release("never-held", "00112233445566778899aabbccddeeff")).toBe(true);
        const holder = await mustAcquire("lock", 100);
        await advance(100);
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
      });
    });

    describe("refresh", () => {
      test("refresh by the owner restarts the lease from now", async () => {
        const holder = await mustAcquire("lock", 1000);
        await advance(900);
        expect(await locks.refresh("lock", holder.ownerId, 1000)).toBe(true);
        await advance(999);
        expect(await isHeld("lock")).toBe(true);
        await advance(1);
        expect(await isHeld("lock")).toBe(false);
      });

      test("refresh with ttl 0 holds the lock until released", async () => {
        const holder = await mustAcquire("lock", 100);
        expect(await locks.refresh("lock", holder.ownerId, 0)).toBe(true);
        await advance(1_000_000);
        expect(await isHeld("lock")).toBe(true);
      });

      test("a stale owner cannot refresh, and the current holder's lease is unchanged", async () => {
        const stale = await mustAcquire("lock", 100);
        await advance(100);
        expect(await locks.refresh("lock", stale.ownerId, 10_000)).toBe(false);
        await mustAcquire("lock", 100);
        expect(await locks.refresh("lock", stale.ownerId, 10_000)).toBe(false);
        await advance(100);
        expect(await isHeld("lock")).toBe(false);
      });

      test("refresh of a released lock is false and does not revive it", async () => {
        const holder = await mustAcquire("lock", 0);
        await locks.release("lock", holder.ownerId);
        expect(await locks.refresh("lock", holder.ownerId, 1000)).toBe(false);
        expect(await isHeld("lock")).toBe(false);
      });
    });

    describe("blocking acquire", () => {
      // Nobody advances the clock in these two: an acquire that waited on it would never answer.
      test("waitMs 0 tries once and answers without time passing", async () => {
        await mustAcquire("lock", 0);
        expect(await locks.acquire("lock", 0, { waitMs: 0 })).toEqual({ acquired: false });
      });

      test("a free lock is acquired at once even with a wait", async () => {
        expect((await locks.acquire("lock", 0, { waitMs: 5000 })).acquired).toBe(true);
      });

      test("succeeds once the holder releases, before the deadline", async () => {
        const holder = await mustAcquire("lock", 0);
        const waiting = locks.acquire("lock", 0, { waitMs: 5000 });
        let result: AcquireResult | undefined;
        void waiting.then((value) => {
          result = value;
        });
        for (let i = 0; i < 12; i++) await advance(STEP_MS);
        expect(result).toBeUndefined();
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
        const settled = await settleWithClock(waiting, clock, STEP_MS, 5000 / STEP_MS);
        expect(settled.value.acquired).toBe(true);
        expect(settled.value.fencingToken!).toBeGreaterThan(holder.fencingToken);
        expect(12 * STEP_MS + settled.advancedMs).toBeLessThan(5000);
      });

      test("succeeds once the holder's lease expires", async () => {
        const holder = await mustAcquire("lock", 1000);
        const settled = await settleWithClock(
          locks.acquire("lock", 0, { waitMs: 5000 }),
          clock,
          STEP_MS,
          400,
        );
        expect(settled.value.acquired).toBe(true);
        expect(settled.value.fencingToken!).toBeGreaterThan(holder.fencingToken);
        expect(settled.advancedMs).toBeGreaterThanOrEqual(1000);
        expect(settled.advancedMs).toBeLessThan(5000);
      });

      test("times out when the holder keeps the lock, not before the deadline", async () => {
        await mustAcquire("lock", 0);
        const settled = await settleWithClock(
          locks.acquire("lock", 0, { waitMs: 1000 }),
          clock,
          STEP_MS,
          400,
        );
        expect(settled.value).toEqual({ acquired: false });
        expect(settled.advancedMs).toBeGreaterThanOrEqual(1000);
        expect(await isHeld("lock")).toBe(true);
      });

      test("of several blocked waiters exactly one gets the lock when it is released", async () => {
        const holder = await mustAcquire("lock", 0);
        const waiters = Array.from({ length: 5 }, () => locks.acquire("lock", 0, { waitMs: 500 }));
        await advance(STEP_MS);
        await locks.release("lock", holder.ownerId);
        const settled = await settleWithClock(Promise.all(waiters), clock, STEP_MS, 400);
        expect(settled.value.filter((result) => result.acquired)).toHaveLength(1);
      });
    });

    describe("watchLost", () => {
      /** Whether `promise` is still pending after some real turns and clock steps. */
      async function stillWaiting(promise: Promise<unknown>): Promise<boolean> {
        const done = settledFlag(promise);
        for (let i = 0; i < 4 && !done(); i++) await advance(1);
        return !done();
      }

      test("resolves 'released' when the owner releases, not before", async () => {
        const holder = await mustAcquire("lock", 0);
        const lost = locks.watchLost("lock", holder.ownerId);
        expect(await stillWaiting(lost)).toBe(true);
        // watchLost first looks the key up (on a dstore follower a ReadIndex round); a release
        // that lands before that look answers makes it find the key gone, and "lost" is then a
        // right answer (the call and the release overlap). A failed acquire through the same
        // member is a log entry that member applies after the look's read index, so the look
        // has answered (the lock held) before the release below.
        expect(await isHeld("lock")).toBe(true);
        expect(await stillWaiting(lost)).toBe(true);
        expect(await locks.release("lock", holder.ownerId)).toBe(true);
        expect((await settleWithClock(lost, clock, STEP_MS, 200)).value).toBe("released");
      });

      test("resolves 'expired' when the lease runs out; a refresh keeps it waiting", async () => {
        const holder = await mustAcquire("lock", 1000);
        const lost = locks.watchLost("lock", holder.ownerId);
        await advance(900);
        expect(await locks.refresh("lock", holder.ownerId, 1000)).toBe(true);
        await advance(900);
        expect(await stillWaiting(lost)).toBe(true);
        const settled = await settleWithClock(lost, clock, STEP_MS, 200);
        expect(settled.value).toBe("expired");
      });

      test("'lost' for an owner that does not hold it: it tells nothing about who does", async () => {
        const holder = await mustAcquire("lock", 0);
        const other = await mustAcquire("other", 0);
        expect(await locks.watchLost("lock", other.ownerId)).toBe("lost");
        expect(await locks.watchLost("never-held", holder.ownerId)).toBe("lost");
        expect(await isHeld("lock")).toBe(true);
      });

      test("an abort ends it with 'stopped' and leaves the lock held", async () => {
        const holder = await mustAcquire("lock", 0);
        const stop = new AbortController();
        const lost = locks.watchLost("lock", holder.ownerId, { signal: stop.signal });
        expect(await stillWaiting(lost)).toBe(true);
        stop.abort();
        expect((await settleWithClock(lost, clock, STEP_MS, 200)).value).toBe("stopped");
        expect(await isHeld("lock")).toBe(true);
      });

      test("a bad owner id is refused", async () => {
        await expectDkvError(() => locks.watchLost("lock", "not-hex"), "BAD_REQUEST");
      });
    });

    describe("mutual exclusion under random schedules", () => {
      test("no two contenders ever hold a key at once, and tokens only grow", async () => {
        type Step = { contender: number; action: "acquire" | "release" | "refresh" } | { advanceMs: number };
        const stepArb: fc.Arbitrary<Step> = fc.oneof(
          fc.record({
            contender: fc.integer({ min: 0, max: 3 }),
            action: fc.constantFrom("acquire" as const, "release" as const, "refresh" as const),
          }),
          fc.record({ advanceMs: fc.integer({ min: 0, max: 80 }) }),
        );
        let run = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(stepArb, { maxLength: 40 }), async (steps) => {
            const key = `mutex-${run++}`;
            const ttlMs = 100;
            // What each contender believes: it holds the lock until its lease ends, unless it released.
            const leases: ({ ownerId: string; untilMs: number } | undefined)[] = [];
            let lastToken = 0n;
            for (const step of steps) {
              if ("advanceMs" in step) {
                await clock.advance(step.advanceMs);
                continue;
              }
              const lease = leases[step.contender];
              const now = clock.now();
              if (step.action === "acquire" && (lease === undefined || lease.untilMs <= now)) {
                const result = await locks.acquire(key, ttlMs);
                if (result.acquired) {
                  expect(result.fencingToken!).toBeGreaterThan(lastToken);
                  lastToken = result.fencingToken!;
                  leases[step.contender] = { ownerId: result.ownerId!, untilMs: now + ttlMs };
                }
              } else if (step.action === "release" && lease !== undefined) {
                const released = await locks.release(key, lease.ownerId);
                // Releasing a live lease must work; an ended one may have been taken over.
                if (lease.untilMs > now) expect(released).toBe(true);
                leases[step.contender] = undefined;
              } else if (step.action === "refresh" && lease !== undefined) {
                const refreshed = await locks.refresh(key, lease.ownerId, ttlMs);
                if (lease.untilMs > now) expect(refreshed).toBe(true);
                if (refreshed) lease.untilMs = now + ttlMs;
              }
              const holders = leases.filter((held) => held !== undefined && held.untilMs > clock.now());
              expect(holders.length).toBeLessThanOrEqual(1);
            }
          }),
          propertyParameters(60),
        );
      });
    });
  });
}

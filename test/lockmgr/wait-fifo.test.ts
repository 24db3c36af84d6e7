import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import type { AcquireResult } from "../../src/lockmgr/types.ts";
import { LocalStore } from "../../src/store/local.ts";
import { flushIo } from "../support/drive.ts";

/** A retry interval no test waits out: a waiter that acquires was woken by a change. */
const NEVER_POLL_MS = 3_600_000;

async function settled<T>(promise: Promise<T>, turns = 200): Promise<T | undefined> {
  let value: T | undefined;
  let done = false;
  void promise.then((v) => {
    value = v;
    done = true;
  });
  for (let i = 0; i < turns && !done; i++) await flushIo();
  return value;
}

describe("blocking acquire: woken by changes, in order of arrival", () => {
  test("a release wakes the waiter at once, with no time passing", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 0 });
    const locks = new LockManager(store, { clock, retryIntervalMs: NEVER_POLL_MS });
    const holder = await locks.acquire("job", 0);
    const waiting = locks.acquire("job", 0, { waitMs: 10 * NEVER_POLL_MS });
    expect(await settled(waiting, 20)).toBeUndefined();
    await locks.release("job", holder.ownerId!);
    const result = await settled(waiting);
    expect(result).toMatchObject({ acquired: true });
    expect(result!.fencingToken!).toBeGreaterThan(holder.fencingToken!);
    await store.close();
  });

  test("a lease running out wakes the waiter (the purge's expire event), not a poll", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 10 });
    const locks = new LockManager(store, { clock, retryIntervalMs: NEVER_POLL_MS });
    await locks.acquire("job", 100);
    const waiting = locks.acquire("job", 0, { waitMs: 10 * NEVER_POLL_MS });
    expect(await settled(waiting, 20)).toBeUndefined();
    await clock.advance(110);
    expect(await settled(waiting)).toMatchObject({ acquired: true });
    await store.close();
  });

  test("a waiter queued behind another gives up when the wait is over, not one retry interval later", async () => {
    // On a manual clock nothing advances after the deadline: a waiter that slept another
    // retry interval once its queue turn timed out would never answer.
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 0 });
    const locks = new LockManager(store, { clock, retryIntervalMs: 10 });
    await locks.acquire("job", 0);
    const first = locks.acquire("job", 0, { waitMs: 2_000 });
    const second = locks.acquire("job", 0, { waitMs: 2_000 });
    expect(await settled(second, 20)).toBeUndefined();
    await clock.advance(2_000);
    expect(await settled(first)).toEqual({ acquired: false });
    expect(await settled(second)).toEqual({ acquired: false });
    await store.close();
  });

  test("waiters get the lock in the order they started waiting", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 0 });
    const locks = new LockManager(store, { clock, retryIntervalMs: NEVER_POLL_MS });
    const holder = await locks.acquire("job", 0);
    const order: string[] = [];
    const waiters: Promise<AcquireResult>[] = [];
    for (const name of ["first", "second", "third"]) {
      const waiting = locks.acquire("job", 0, { waitMs: 10 * NEVER_POLL_MS });
      waiters.push(waiting);
      void waiting.then(() => order.push(name));
      await settled(waiting, 10); // each is queued before the next arrives
    }
    let owner = holder.ownerId!;
    for (let i = 0; i < 3; i++) {
      await locks.release("job", owner);
      const next = await settled(waiters[i]!);
      expect(next).toMatchObject({ acquired: true });
      owner = next!.ownerId!;
    }
    expect(order).toEqual(["first", "second", "third"]);
    await store.close();
  });
});

describe("watchLost: a holder learns its lock is gone", () => {
  test("released, expired, or not held at all; a refresh keeps it waiting", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 10 });
    const locks = new LockManager(store, { clock, retryIntervalMs: NEVER_POLL_MS });
    const held = await locks.acquire("a", 0);
    const released = locks.watchLost("a", held.ownerId!);
    expect(await settled(released, 20)).toBeUndefined();
    await locks.release("a", held.ownerId!);
    expect(await settled(released)).toBe("released");

    const leased = await locks.acquire("b", 100);
    const expired = locks.watchLost("b", leased.ownerId!);
    await clock.advance(50);
    expect(await locks.refresh("b", leased.ownerId!, 100)).toBe(true);
    await clock.advance(90);
    expect(await settled(expired, 20)).toBeUndefined();
    await clock.advance(20);
    expect(await settled(expired)).toBe("expired");

    expect(await locks.watchLost("b", leased.ownerId!)).toBe("lost");
    const again = await locks.acquire("c", 0);
    const controller = new AbortController();
    const stopped = locks.watchLost("c", again.ownerId!, { signal: controller.signal });
    controller.abort();
    expect(await settled(stopped)).toBe("stopped");
    expect(store.watcherCount).toBe(0);
    await store.close();
  });
});

describe("lockmgr(lstore): the store keeps the wait queue", () => {
  const WAITER = "ab".repeat(16);

  test("a try without a wait cannot jump a queued waiter; a waiter that stops renewing leaves after its lease", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 10 });
    const locks = new LockManager(store, { clock, retryIntervalMs: NEVER_POLL_MS });
    const holder = await locks.acquire("job", 0);
    // A waiter joins and then its process dies: it never renews its place.
    const joined = await store.lockQueue({
      mode: "wait",
      key: "job",
      ownerId: WAITER,
      ttlMs: 0,
      leaseMs: 1_000,
      seq: 0n,
    });
    expect(joined.written).toBe(false);
    expect(joined.seq).toBeGreaterThan(0n);
    await locks.release("job", holder.ownerId!);
    expect(await locks.acquire("job", 0)).toEqual({ acquired: false });
    // A live waiter behind it is woken by the dead one's lease running out, not before.
    const behind = locks.acquire("job", 0, { waitMs: 10 * NEVER_POLL_MS });
    await clock.advance(900);
    expect(await settled(behind, 20)).toBeUndefined();
    await clock.advance(200);
    expect(await settled(behind)).toMatchObject({ acquired: true });
    await store.close();
  });

  test("a wait that ends without the lock leaves the queue at once", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 0 });
    const locks = new LockManager(store, { clock, retryIntervalMs: 10 });
    const holder = await locks.acquire("job", 0);
    const gaveUp = locks.acquire("job", 0, { waitMs: 50 });
    expect(await settled(gaveUp, 20)).toBeUndefined();
    await clock.advance(60);
    expect(await settled(gaveUp)).toEqual({ acquired: false });
    await locks.release("job", holder.ownerId!);
    // Nobody waits any more: a try gets the lock.
    expect(await locks.acquire("job", 0)).toMatchObject({ acquired: true });
    await store.close();
  });

  test("lock keys starting with NUL are refused (reserved for the queue)", async () => {
    const store = new LocalStore({ clock: new ManualClock(), purgeIntervalMs: 0 });
    const locks = new LockManager(store);
    await expect(locks.acquire("\u0000q3\u0000job\u0000", 0)).rejects.toMatchObject({ code: "BAD_REQUEST" });
    await store.close();
  });
});

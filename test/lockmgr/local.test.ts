import { describe, expect, test } from "bun:test";
import { type Clock, ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { LockQueueRequest, LockQueueResult } from "../../src/store/types.ts";
import { runLockConformance } from "../conformance/lock-conformance.ts";
import { expectDkvError, text } from "../support/assertions.ts";
import { flushIo, settledFlag, settleWithClock } from "../support/drive.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";

runLockConformance("LockManager over LocalStore (MapleDB)", async () => {
  const clock = new ManualClock();
  const store = new LocalStore({ clock });
  const locks = new LockManager(store, { clock, retryIntervalMs: 10 });
  return { locks, clock, close: () => store.close() };
});

runLockConformance("LockManager over LocalStore(ModelKVDB)", async () => {
  const clock = new ManualClock();
  const store = new LocalStore({ db: new ModelKVDB(), clock });
  const locks = new LockManager(store, { clock, retryIntervalMs: 10 });
  return { locks, clock, close: () => store.close() };
});

describe("LockManager", () => {
  /** A LocalStore that counts claim attempts (lock-queue steps that try or wait). */
  class CountingStore extends LocalStore {
    claims = 0;
    override lockQueue(request: LockQueueRequest): Promise<LockQueueResult> {
      if (request.mode !== "leave") this.claims++;
      return super.lockQueue(request);
    }
  }

  test("the lock's value is its owner id, readable through the store", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ db: new ModelKVDB(), clock });
    const locks = new LockManager(store, { clock });
    const { ownerId } = await locks.acquire("lock", 0);
    expect(text(await store.get("lock"))).toBe(ownerId!);
    await store.close();
  });

  test("an owner id is accepted in upper case too", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ db: new ModelKVDB(), clock });
    const locks = new LockManager(store, { clock });
    const { ownerId } = await locks.acquire("lock", 0);
    expect(await locks.refresh("lock", ownerId!.toUpperCase(), 0)).toBe(true);
    expect(await locks.release("lock", ownerId!.toUpperCase())).toBe(true);
    expect(await store.has("lock")).toBe(false);
    await store.close();
  });

  test("a non-hex owner id is rejected instead of silently never matching", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    const locks = new LockManager(store);
    await expectDkvError(() => locks.release("lock", "not-an-owner"), "BAD_REQUEST");
    await expectDkvError(() => locks.refresh("lock", "zz", 10), "BAD_REQUEST");
    await store.close();
  });

  test("a blocking acquire tries about waitMs / retryIntervalMs times", async () => {
    const clock = new ManualClock();
    const store = new CountingStore({ db: new ModelKVDB(), clock });
    const locks = new LockManager(store, { clock, retryIntervalMs: 10 });
    await locks.acquire("lock", 0);
    store.claims = 0;
    const settled = await settleWithClock(locks.acquire("lock", 0, { waitMs: 100 }), clock, 10, 50);
    expect(settled.value.acquired).toBe(false);
    expect(store.claims).toBe(11);
    await store.close();
  });

  test("a clock that never moves cannot make a blocking acquire spin forever", async () => {
    const frozen: Clock = { now: () => 1_000, sleep: () => Promise.resolve() };
    const store = new CountingStore({ db: new ModelKVDB(), clock: frozen, purgeIntervalMs: 0 });
    const locks = new LockManager(store, { clock: frozen, retryIntervalMs: 10 });
    await locks.acquire("lock", 0);
    store.claims = 0;
    expect(await locks.acquire("lock", 0, { waitMs: 100 })).toEqual({ acquired: false });
    expect(store.claims).toBe(12);
    await store.close();
  });

  test("a bad retry interval is refused at construction", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    await expectDkvError(() => new LockManager(store, { retryIntervalMs: 0 }), "BAD_REQUEST");
    await store.close();
  });
});

describe("watchLost on a member whose watch starts behind its look", () => {
  test("changes up to the look's revision are history: an old holder's write there does not read as 'lost'", async () => {
    const inner = new LocalStore({ clock: new ManualClock(1_000_000) });
    await inner.set("lock", "0".repeat(32)); // an earlier holder, overwritten below
    const lagging = new Proxy(inner, {
      get(target, property, receiver) {
        if (property !== "watch") return Reflect.get(target, property, receiver);
        // A member that has not applied the newest writes yet: its watch replays from an
        // older revision, so the earlier holder's write comes first.
        return (key: string, options?: { signal?: AbortSignal }) =>
          target.watch(key, { ...options, fromRevision: 1 });
      },
    });
    const locks = new LockManager(lagging);
    await inner.delete("lock");
    const holder = await locks.acquire("lock", 0);
    expect(holder.acquired).toBe(true);
    const lost = locks.watchLost("lock", holder.ownerId!);
    // It has looked and is watching: still waiting after its look's I/O.
    const done = settledFlag(lost);
    await flushIo();
    expect(done()).toBe(false);
    expect(await locks.release("lock", holder.ownerId!)).toBe(true);
    expect(await lost).toBe("released");
  });
});

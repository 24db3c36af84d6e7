import { describe, expect, test } from "bun:test";
import { type Clock, ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import type {
  ClaimResult,
  EntryInfo,
  IStore,
  KeyRange,
  ListOptions,
  ListPage,
  StoreInfo,
  TxnRequest,
  TxnResult,
  ValueInput,
  WatchEvent,
  WatchOptions,
} from "../../src/store/types.ts";
import { expectDkvError, text } from "../support/assertions.ts";
import { flushIo, settleWithClock } from "../support/drive.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";

/**
 * One store seen under many request identities, that answers a repeated identity's
 * conditional write with its first result instead of applying it again — as the dstore
 * state machine does for a retried client id + request id.
 */
class ReplayingStore {
  /** The identity of every conditional write actually applied, in order. */
  readonly applied: string[] = [];
  private readonly replies = new Map<string, ClaimResult | boolean>();

  constructor(readonly inner: IStore) {}

  as(identity: string): IStore {
    return new IdentifiedView(this, identity);
  }

  async once<T extends ClaimResult | boolean>(identity: string, apply: () => Promise<T>): Promise<T> {
    const replay = this.replies.get(identity);
    if (replay !== undefined) return replay as T;
    const result = await apply();
    this.applied.push(identity);
    this.replies.set(identity, result);
    return result;
  }
}

class IdentifiedView implements IStore {
  constructor(
    private readonly replaying: ReplayingStore,
    private readonly identity: string,
  ) {}
  claim(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<ClaimResult> {
    return this.replaying.once(this.identity, () =>
      this.replaying.inner.claim(key, value, expireInMs, deleteInMs),
    );
  }
  deleteIfEquals(key: string, expected: ValueInput): Promise<boolean> {
    return this.replaying.once(this.identity, () => this.replaying.inner.deleteIfEquals(key, expected));
  }
  renewIfEquals(key: string, expected: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean> {
    return this.replaying.once(this.identity, () =>
      this.replaying.inner.renewIfEquals(key, expected, expireInMs, deleteInMs),
    );
  }
  set(key: string, value: ValueInput): Promise<void> {
    return this.replaying.inner.set(key, value);
  }
  setE(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<void> {
    return this.replaying.inner.setE(key, value, expireInMs, deleteInMs);
  }
  setEIfUnset(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean> {
    return this.replaying.inner.setEIfUnset(key, value, expireInMs, deleteInMs);
  }
  expire(key: string): Promise<void> {
    return this.replaying.inner.expire(key);
  }
  delete(key: string): Promise<void> {
    return this.replaying.inner.delete(key);
  }
  get(key: string): Promise<Uint8Array | undefined> {
    return this.replaying.inner.get(key);
  }
  has(key: string): Promise<boolean> {
    return this.replaying.inner.has(key);
  }
  info(): Promise<StoreInfo> {
    return this.replaying.inner.info();
  }
  getEntry(key: string): Promise<EntryInfo | undefined> {
    return this.replaying.inner.getEntry(key);
  }
  list(options: ListOptions): Promise<ListPage> {
    return this.replaying.inner.list(options);
  }
  count(range: KeyRange): Promise<number> {
    return this.replaying.inner.count(range);
  }
  txn(request: TxnRequest): Promise<TxnResult> {
    return this.replaying.inner.txn(request);
  }
  watch(key: string, options?: WatchOptions): AsyncIterableIterator<WatchEvent> {
    return this.replaying.inner.watch(key, options);
  }
  async close(): Promise<void> {}
}

const OWNER = "0123456789abcdef".repeat(2);

/** The lock manager one server builds for one identified request: as the RPC server's lock path does. */
function locksForRequest(replaying: ReplayingStore, request: string, clock: Clock): LockManager {
  return new LockManager(replaying.as(request), {
    clock,
    retryIntervalMs: 10,
    storeForAttempt: (attempt) => replaying.as(`${request}/attempt-${attempt}`),
  });
}

/** Lets the code under test run until it waits on the clock (its first attempt has failed). */
async function untilSleeping(clock: ManualClock): Promise<void> {
  for (let turn = 0; turn < 100 && clock.pendingSleepers === 0; turn++) await flushIo();
  expect(clock.pendingSleepers).toBe(1);
}

function setup<C extends Clock>(clock: C) {
  // No background purge: it would sleep on the test's clock too.
  const inner = new LocalStore({ db: new ModelKVDB(), clock, purgeIntervalMs: 0 });
  return { clock, inner, replaying: new ReplayingStore(inner) };
}

describe("LockManager: a caller-chosen owner id", () => {
  test("is the id the lock is claimed under and reported, normalised to lower case", async () => {
    const { clock, inner } = setup(new ManualClock());
    const locks = new LockManager(inner, { clock });
    const result = await locks.acquire("lock", 0, { ownerId: OWNER.toUpperCase() });
    expect(result).toMatchObject({ acquired: true, ownerId: OWNER });
    expect(text(await inner.get("lock"))).toBe(OWNER);
    expect(await locks.release("lock", OWNER)).toBe(true);
    expect(await inner.has("lock")).toBe(false);
    await inner.close();
  });

  test("is refused, with nothing written, unless it is 32 to 128 hex digits", async () => {
    const { clock, inner } = setup(new ManualClock());
    const locks = new LockManager(inner, { clock });
    for (const ownerId of ["", "a".repeat(31), "zz".repeat(16), ` ${OWNER}`, "a".repeat(129)]) {
      await expectDkvError(() => locks.acquire("lock", 0, { ownerId }), "BAD_REQUEST");
    }
    expect(await inner.has("lock")).toBe(false);
    expect((await locks.acquire("lock", 0, { ownerId: "f".repeat(128) })).acquired).toBe(true);
    await inner.close();
  });

  test("absent, every acquire still draws a fresh random id", async () => {
    const { clock, inner } = setup(new ManualClock());
    const locks = new LockManager(inner, { clock });
    const first = await locks.acquire("a", 0);
    const second = await locks.acquire("b", 0);
    expect(first.ownerId).toMatch(/^[0-9a-f]{32}$/);
    expect(second.ownerId).not.toBe(first.ownerId);
    await inner.close();
  });
});

describe("LockManager over a store that replays retried requests", () => {
  test("a retried acquire reports the first try's owner id and token, and that owner can release", async () => {
    const { clock, inner, replaying } = setup(new ManualClock());
    const first = await locksForRequest(replaying, "client-1#7", clock).acquire("lock", 0, {
      ownerId: OWNER,
    });
    // The reply is lost; the client retries the same request (possibly through another server).
    const retried = await locksForRequest(replaying, "client-1#7", clock).acquire("lock", 0, {
      ownerId: OWNER,
    });
    expect(first.acquired).toBe(true);
    expect(retried).toEqual(first);
    expect(replaying.applied).toEqual(["client-1#7/attempt-1"]);
    const release = locksForRequest(replaying, "client-1#8", clock);
    expect(await release.release("lock", retried.ownerId!)).toBe(true);
    expect(await inner.has("lock")).toBe(false);
    await inner.close();
  });

  test("a blocking acquire whose first attempt fails succeeds later: each attempt has its own identity", async () => {
    const { clock, inner, replaying } = setup(new ManualClock());
    const holder = await new LockManager(inner, { clock }).acquire("lock", 0);
    const waiting = locksForRequest(replaying, "client-1#9", clock).acquire("lock", 0, {
      ownerId: OWNER,
      waitMs: 1000,
    });
    await untilSleeping(clock);
    expect(await inner.deleteIfEquals("lock", holder.ownerId!)).toBe(true);
    const settled = await settleWithClock(waiting, clock, 10, 100);
    expect(settled.value).toMatchObject({ acquired: true, ownerId: OWNER });
    expect(text(await inner.get("lock"))).toBe(OWNER);
    expect(replaying.applied.length).toBeGreaterThanOrEqual(2);
    expect(new Set(replaying.applied).size).toBe(replaying.applied.length);
    await inner.close();
  });

  test("a retry of a blocking acquire replays each attempt: same owner id and token", async () => {
    const { clock, inner, replaying } = setup(new ManualClock());
    const holder = await new LockManager(inner, { clock }).acquire("lock", 0);
    const options = { ownerId: OWNER, waitMs: 1000 };
    const waiting = locksForRequest(replaying, "client-1#10", clock).acquire("lock", 0, options);
    await untilSleeping(clock);
    await inner.deleteIfEquals("lock", holder.ownerId!);
    const first = (await settleWithClock(waiting, clock, 10, 100)).value;
    const appliedBefore = replaying.applied.length;
    const retried = locksForRequest(replaying, "client-1#10", clock).acquire("lock", 0, options);
    expect((await settleWithClock(retried, clock, 10, 100)).value).toEqual(first);
    // Every attempt of the retry was answered by a replay: nothing applied twice.
    expect(replaying.applied.length).toBe(appliedBefore);
    await inner.close();
  });

  test("a retry whose wait ends before the attempt a duplicate won runs on to that attempt's replay", async () => {
    // A clock that moves only when told to: sleeps pass at once, claims can be made slow.
    let nowMs = 0;
    let onSleep: () => Promise<void> = async () => {};
    const clock: Clock = {
      now: () => nowMs,
      sleep: async (ms) => {
        nowMs += ms;
        await onSleep();
      },
    };
    const { inner, replaying } = setup(clock);
    const holder = await new LockManager(inner, { clock }).acquire("lock", 0);
    // The first try: attempts 1 and 2 find the lock held; it is freed before attempt 3.
    let sleeps = 0;
    onSleep = async () => {
      if (++sleeps === 2) await inner.delete("lock");
    };
    const firstTry = locksForRequest(replaying, "client-1#11", clock);
    const first = await firstTry.acquire("lock", 0, { ownerId: OWNER, waitMs: 30 });
    expect(first).toMatchObject({ acquired: true, ownerId: OWNER });
    expect(holder.acquired).toBe(true);
    expect(replaying.applied).toEqual([
      "client-1#11/attempt-1",
      "client-1#11/attempt-2",
      "client-1#11/attempt-3",
    ]);
    // The retry's claims are slow (a leader change): its wait is over after attempt 1.
    const retry = new LockManager(replaying.as("client-1#11"), {
      clock,
      retryIntervalMs: 10,
      storeForAttempt: (attempt) => {
        nowMs += 100;
        return replaying.as(`client-1#11/attempt-${attempt}`);
      },
    });
    expect(await retry.acquire("lock", 0, { ownerId: OWNER, waitMs: 30 })).toEqual(first);
    await inner.close();
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import type { IStore } from "../../src/store/types.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { flushIo, settledFlag } from "../support/drive.ts";

/**
 * watchLost watches, then looks (a linearizable getEntry; on a follower a ReadIndex). A
 * release that lands while the look is still pending makes the look find the key gone;
 * the watch, started before the look, saw the owner's hold end by that release, so the
 * answer is "released" (or "expired"), not "lost". The look is held here by a gate, so
 * the release always lands inside it (in the lock conformance suite on a follower it did
 * only sometimes).
 */

/** `store` whose getEntry waits for `open()` before it reads (the look held in flight). */
function heldLook(store: IStore): { store: IStore; looking: () => boolean; open: () => void } {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let looking = false;
  const held = new Proxy(store, {
    get(target, property, receiver) {
      if (property !== "getEntry") return Reflect.get(target, property, receiver);
      return async (key: string) => {
        looking = true;
        await gate;
        return target.getEntry(key);
      };
    },
  });
  return { store: held, looking: () => looking, open: release };
}

/** A store whose watches replay from revision 1: a member that had not applied the hold yet. */
function laggingWatch(store: IStore): IStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property !== "watch") return Reflect.get(target, property, receiver);
      return (key: string, options?: { signal?: AbortSignal }) =>
        target.watch(key, { ...options, fromRevision: 1 });
    },
  });
}

const stores: IStore[] = [];
let cluster: TestCluster | undefined;
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await cluster?.close();
  cluster = undefined;
});

function localStore(clock = new ManualClock(1_000_000)): LocalStore {
  const store = new LocalStore({ clock });
  stores.push(store);
  return store;
}

/** Starts watchLost with its look held, runs `between`, then lets the look answer. */
async function lookAfter(
  inner: IStore,
  ownerId: string,
  between: () => Promise<void>,
  wrap: (store: IStore) => IStore = (store) => store,
): Promise<string> {
  const look = heldLook(wrap(inner));
  const lost = new LockManager(look.store).watchLost("lock", ownerId);
  const done = settledFlag(lost);
  await flushIo();
  expect(look.looking()).toBe(true);
  expect(done()).toBe(false);
  await between();
  look.open();
  return lost;
}

describe("watchLost whose look answers after the lock is gone", () => {
  const released: [string, (store: IStore) => IStore, "holder" | "other", string][] = [
    [
      "released while the look is pending: 'released' (the watch saw the hold end)",
      (store) => store,
      "holder",
      "released",
    ],
    [
      "the same on a member whose watch starts before it applied the hold",
      laggingWatch,
      "holder",
      "released",
    ],
    [
      "another owner's hold that ends while the look is pending is still 'lost'",
      (store) => store,
      "other",
      "lost",
    ],
  ];
  for (const [name, wrap, watched, want] of released) {
    test(name, async () => {
      const inner = localStore();
      const locks = new LockManager(inner);
      const other = await locks.acquire("mine", 0);
      const holder = await locks.acquire("lock", 0);
      const owner = watched === "holder" ? holder.ownerId! : other.ownerId!;
      const release = async () => {
        expect(await locks.release("lock", holder.ownerId!)).toBe(true);
      };
      expect(await lookAfter(inner, owner, release, wrap)).toBe(want);
    });
  }

  test("expired while the look is pending: 'expired'", async () => {
    const clock = new ManualClock(1_000_000);
    const inner = localStore(clock);
    const locks = new LockManager(inner, { clock });
    const holder = await locks.acquire("lock", 1000);
    const reason = await lookAfter(inner, holder.ownerId!, async () => {
      await clock.advance(1001); // the background purge removes it: an expire event
      await flushIo();
      expect(await inner.has("lock")).toBe(false);
    });
    expect(reason).toBe("expired");
  });

  test("an owner that had already released before the watch: 'lost'", async () => {
    const inner = localStore();
    const locks = new LockManager(inner);
    const holder = await locks.acquire("lock", 0);
    expect(await locks.release("lock", holder.ownerId!)).toBe(true);
    const reason = await lookAfter(inner, holder.ownerId!, async () => {});
    expect(reason).toBe("lost");
  });

  test("on a follower of a 3-member cluster (its ReadIndex held until after the release): 'released'", async () => {
    const group = 7;
    cluster = await TestCluster.start({ groups: [group], stateMachine: () => new DStoreStateMachine() });
    await cluster.waitForLeader(group);
    const inner = new DStore(cluster.host(cluster.follower(group)), group, {});
    const locks = new LockManager(inner, { clock: cluster.clock });
    const holder = await locks.acquire("lock", 0);
    expect(holder.acquired).toBe(true);
    const reason = await lookAfter(inner, holder.ownerId!, async () => {
      expect(await locks.release("lock", holder.ownerId!)).toBe(true);
    });
    expect(reason).toBe("released");
  });
});

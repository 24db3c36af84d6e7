/**
 * Review of 5a62c6b: a gone look whose watch shows the key's hold ending (a delete/expire
 * with no put before it) calls heldAt, which replays the key's kept history from revision
 * 1. A watch of one key replays by walking the WHOLE kept history of the store (every key;
 * Watcher.take materialises each change with WatchHub.changeAt: a fresh key string and a
 * copy of its value), synchronously, up to the lock's change: at the default 8 MiB history
 * that is tens of thousands of changes per call, on whichever member serves it. It does not
 * need the caller's owner id to be right: any id for a busy lock key (op watchLost needs only
 * a read token) pays it. HISTORY_READ_MAX (100 000) bounds the key's events, not this walk.
 *
 * Counted: WatchHub.changeAt calls during one watchLost. On main (2de8c6c): 0.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { LockManager, newOwnerId } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { IStore } from "../../src/store/types.ts";
import { WatchHub } from "../../src/store/watch.ts";
import { flushIo } from "../support/drive.ts";

/** `store` whose getEntry waits for `open()` before it reads (the look held in flight). */
function heldLook(store: IStore): { store: IStore; open: () => void } {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const held = new Proxy(store, {
    get(target, property, receiver) {
      if (property !== "getEntry") return Reflect.get(target, property, receiver);
      return async (key: string) => {
        await gate;
        return target.getEntry(key);
      };
    },
  });
  return { store: held, open: release };
}

/** Changes of other keys in the store's kept history before the lock is taken. */
const OTHER_CHANGES = 20_000;
/** Refreshes of the watched lock itself in the kept history. */
const OWN_REFRESHES = 5_000;
/** What classifying one key's gone look may read of the history: the key's own few changes. */
const CHANGES_READ_BOUND = 64;

const stores: IStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

async function changesReadBy(work: () => Promise<unknown>): Promise<number> {
  const changeAt = WatchHub.prototype.changeAt;
  let reads = 0;
  WatchHub.prototype.changeAt = function (this: WatchHub, seq: number) {
    reads++;
    return changeAt.call(this, seq);
  };
  try {
    await work();
  } finally {
    WatchHub.prototype.changeAt = changeAt;
  }
  return reads;
}

describe("review32: the cost of classifying a gone look", () => {
  test("a gone look reads the key's changes, not the store's whole kept history", async () => {
    const store = new LocalStore({ clock: new ManualClock(1_000_000) });
    stores.push(store);
    for (let i = 0; i < OTHER_CHANGES; i++) await store.set(`k${i % 1000}`, "v".repeat(32));
    const locks = new LockManager(store);
    const other = await locks.acquire("lock", 0); // someone else's busy lock
    const look = heldLook(store);
    let reason: string | undefined;
    const reads = await changesReadBy(async () => {
      // Any owner id: the caller never held this lock.
      const lost = new LockManager(look.store).watchLost("lock", newOwnerId());
      await flushIo();
      expect(await locks.release("lock", other.ownerId!)).toBe(true); // its hold ends during the look
      look.open();
      reason = await lost;
    });
    expect(reason).toBe("lost");
    expect(reads).toBeLessThanOrEqual(CHANGES_READ_BOUND);
  });

  test("a busy lock's own kept changes (refreshes): a gone look does not read them all either", async () => {
    const store = new LocalStore({ clock: new ManualClock(1_000_000) });
    stores.push(store);
    const locks = new LockManager(store);
    const other = await locks.acquire("lock", 100_000);
    // A holder that refreshes often: the kept history is mostly this key's own puts. (At the
    // default 8 MiB that is ~49k of them: one gone watchLost then ran 95-200 ms without
    // yielding, each change through delivered()'s race; main 0.0-0.3 ms.)
    for (let i = 0; i < OWN_REFRESHES; i++)
      expect(await locks.refresh("lock", other.ownerId!, 100_000)).toBe(true);
    const look = heldLook(store);
    let reason: string | undefined;
    const reads = await changesReadBy(async () => {
      const lost = new LockManager(look.store).watchLost("lock", newOwnerId());
      await flushIo();
      expect(await locks.release("lock", other.ownerId!)).toBe(true);
      look.open();
      reason = await lost;
    });
    expect(reason).toBe("lost");
    expect(reads).toBeLessThanOrEqual(CHANGES_READ_BOUND);
  });
});

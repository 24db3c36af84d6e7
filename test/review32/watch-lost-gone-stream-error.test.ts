/**
 * Review of 5a62c6b: when watchLost's look finds the lock gone, the answer is certain to be
 * at least "lost" (main answers that without reading the watch). 5a62c6b now reads the
 * watch first, and an error that watch already holds (WATCH_SLOW: more changes queued
 * during the look than the watcher's buffer; COMPACTED: a follower that installed a
 * snapshot while its ReadIndex was pending) is thrown out of watchLost instead (over RPC:
 * an error reply to op watchLost). On main (2de8c6c) this answers "lost".
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { IStore } from "../../src/store/types.ts";
import { flushIo, settledFlag } from "../support/drive.ts";

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

const stores: IStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

describe("review32: a gone look whose watch was cut meanwhile", () => {
  test("the watch cut (WATCH_SLOW) during the look: watchLost still answers, it does not throw", async () => {
    // 400 bytes: three changes of "lock" (a delete, a put, a delete) overflow the watcher's buffer.
    const store = new LocalStore({ clock: new ManualClock(1_000_000), watch: { bufferBytesMax: 400 } });
    stores.push(store);
    const locks = new LockManager(store);
    const holder = await locks.acquire("lock", 0);
    const look = heldLook(store);
    const lost = new LockManager(look.store).watchLost("lock", holder.ownerId!);
    const done = settledFlag(lost);
    await flushIo();
    expect(look.looking()).toBe(true);
    expect(done()).toBe(false);
    expect(await locks.release("lock", holder.ownerId!)).toBe(true);
    const other = await locks.acquire("lock", 0);
    expect(await locks.release("lock", other.ownerId!)).toBe(true);
    look.open();
    let outcome: string;
    try {
      outcome = await lost;
    } catch (error) {
      outcome = `threw ${(error as { code?: string }).code ?? String(error)}`;
    }
    expect(["released", "lost"]).toContain(outcome);
    expect(store.watcherCount).toBe(0);
  });
});

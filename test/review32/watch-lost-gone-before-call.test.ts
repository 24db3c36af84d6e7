/**
 * Review of 5a62c6b (watchLost classifies a gone look from the watch started before it).
 *
 * The classification takes the watch's start revision as "when watchLost was called". On a
 * member whose applied index is behind (a follower: its watch starts at what it has
 * applied, its look is a ReadIndex that waits to catch up), the watch starts BEFORE a
 * release (or expiry) that was already committed when watchLost was called. The stream
 * then shows the owner's hold and its end, and watchLost answers "released"/"expired" for
 * an owner that had already lost the lock before the call, where the leader (and
 * LocalStore) answer "lost" for the same state: README "Locks" says "lost" is "it was
 * already not held", and 5a62c6b's own test "an owner that had already released before the
 * watch: 'lost'" says so too. On main (2de8c6c) every test here answers "lost".
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { IStore } from "../../src/store/types.ts";
import { sendToMember } from "../lockmgr/member-path.ts";
import type { TestCluster } from "../raft/host/cluster.ts";
import { flushIo } from "../support/drive.ts";
import { clusterHoldingLock } from "./lock-cluster.ts";

/** A store whose watches replay from revision 1: a member that had not applied the hold yet (5a62c6b's own model). */
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

describe("review32: watchLost for an owner that lost the lock BEFORE the call", () => {
  test("released before the call, on a member whose watch starts behind: 'lost' (not 'released')", async () => {
    const store = new LocalStore({ clock: new ManualClock(1_000_000) });
    stores.push(store);
    const locks = new LockManager(store);
    const holder = await locks.acquire("lock", 0);
    expect(await locks.release("lock", holder.ownerId!)).toBe(true);
    // Up to date: "lost" (5a62c6b's own test says the same).
    expect(await locks.watchLost("lock", holder.ownerId!)).toBe("lost");
    // Behind (the watch starts before the hold and its release): the same state, another answer.
    expect(await new LockManager(laggingWatch(store)).watchLost("lock", holder.ownerId!)).toBe("lost");
  });

  test("expired before the call, on a member whose watch starts behind: 'lost' (not 'expired')", async () => {
    const clock = new ManualClock(1_000_000);
    const store = new LocalStore({ clock });
    stores.push(store);
    const locks = new LockManager(store, { clock });
    const holder = await locks.acquire("lock", 1000);
    await clock.advance(1001); // the purge removes it: the lease ran out before the call
    await flushIo();
    expect(await store.has("lock")).toBe(false);
    expect(await locks.watchLost("lock", holder.ownerId!)).toBe("lost");
    expect(await new LockManager(laggingWatch(store), { clock }).watchLost("lock", holder.ownerId!)).toBe(
      "lost",
    );
  });

  test("op watchLost on a follower that has not applied a committed release: 'lost', as on the leader", async () => {
    const held = await clusterHoldingLock((started) => {
      cluster = started;
    });
    const { cluster: c, followerId, leader, follower, client, ownerId, applied } = held;
    const resumeTicks = c.holdTicks(); // no election while the follower hears nothing
    try {
      c.network.pause(followerId); // the follower falls behind: what is sent to it is held
      const released = await sendToMember(leader, "release", { key: "lock", ownerId }, 2, client);
      expect(released.released).toBe(true); // committed by the leader and the other follower
      const onLeader = await sendToMember(
        leader,
        "watchLost",
        { key: "lock", ownerId, waitMs: 1000 },
        3,
        client,
      );
      expect(onLeader.reason).toBe("lost"); // the owner no longer holds it when it asks
      const heldBefore = applied();
      const onFollower = sendToMember(
        follower,
        "watchLost",
        { key: "lock", ownerId, waitMs: 1000 },
        4,
        client,
      );
      await flushIo();
      expect(applied()).toBe(heldBefore); // its watch started before the release was applied there
      c.network.resume(followerId);
      expect((await onFollower).reason).toBe("lost");
    } finally {
      c.network.resume(followerId);
      resumeTicks();
    }
  });
});

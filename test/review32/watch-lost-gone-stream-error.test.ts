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
import { sendToMember } from "../lockmgr/member-path.ts";
import { type TestCluster, waitFor } from "../raft/host/cluster.ts";
import { flushIo, settledFlag } from "../support/drive.ts";
import { clusterHoldingLock } from "./lock-cluster.ts";

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
let cluster: TestCluster | undefined;
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await cluster?.close();
  cluster = undefined;
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

  test("op watchLost on a follower that catches up by a snapshot during its look: 'lost', not COMPACTED", async () => {
    const held = await clusterHoldingLock(
      (started) => {
        cluster = started;
      },
      { snapshotEntries: 20, compactionOverheadEntries: 5 },
    );
    const { cluster: c, group, leaderId, followerId, leader, follower, client, ownerId, applied } = held;
    try {
      c.network.isolate(followerId); // pre-vote: its campaigns while cut off do not depose the leader
      const released = await sendToMember(leader, "release", { key: "lock", ownerId }, 2, client);
      expect(released.released).toBe(true);
      for (let i = 0; i < 60; i++) await leader.store.set(`k${i}`, `v${i}`);
      await waitFor(
        () => c.host(leaderId).status(group).snapshotIndex > applied() + 1,
        "the leader's log compacted past the follower",
      );
      const snapshotsBefore = c.network.delivered.snapshots;
      c.network.heal(followerId);
      let outcome: string;
      try {
        const reply = await sendToMember(
          follower,
          "watchLost",
          { key: "lock", ownerId, waitMs: 1000 },
          3,
          client,
        );
        outcome = String(reply.reason);
      } catch (error) {
        outcome = `threw ${(error as { code?: string }).code ?? String(error)}`;
      }
      expect(c.network.delivered.snapshots).toBeGreaterThan(snapshotsBefore); // it caught up by a snapshot
      expect(outcome).toBe("lost");
    } finally {
      c.network.heal(followerId);
    }
  });
});

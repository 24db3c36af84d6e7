import { afterEach, describe, expect, test } from "bun:test";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { CLIENT_ID_BYTES, type RequestOrigin } from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { type ClusterOptions, TestCluster, waitFor } from "../raft/host/cluster.ts";
import { text } from "../support/assertions.ts";

const GROUP = 3;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(options: Partial<ClusterOptions> = {}): Promise<TestCluster> {
  cluster = await TestCluster.start({
    groups: [GROUP],
    stateMachine: () => new DStoreStateMachine(),
    ...options,
  });
  return cluster;
}

function storeOn(c: TestCluster, id: string, staleReads = false): DStore {
  return new DStore(c.host(id), GROUP, { staleReads, timeoutMs: 3000 });
}

function origin(requestId: number): RequestOrigin {
  return { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(7), requestId };
}

describe("dstore on a 3-member cluster", () => {
  test("a write on one member is readable at once on every other member", async () => {
    const c = await start();
    for (const [i, writer] of c.ids.entries()) {
      await storeOn(c, writer).set(`k${i}`, `from ${writer}`);
      for (const reader of c.ids) expect(text(await storeOn(c, reader).get(`k${i}`))).toBe(`from ${writer}`);
    }
  });

  test("a stale read answers from the member's applied state without a read index", async () => {
    const c = await start();
    await storeOn(c, "n1").set("k", "v");
    const follower = c.follower(GROUP);
    await waitFor(
      () => c.host(follower).status(GROUP).appliedIndex >= c.host("n1").status(GROUP).appliedIndex,
      "apply",
    );
    expect(text(await storeOn(c, follower, true).get("k"))).toBe("v");
    // Cut off, a follower still answers stale reads; a linearizable read would time out.
    c.network.isolate(follower);
    expect(text(await storeOn(c, follower, true).get("k"))).toBe("v");
  });

  test("the leader crashing loses no acknowledged write, and a new leader serves", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const writer = c.follower(GROUP);
    const store = storeOn(c, writer);
    const acknowledged: number[] = [];
    const failures: unknown[] = [];
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 60; i++) {
      writes.push(
        store.set(`w${i}`, `${i}`).then(
          () => void acknowledged.push(i),
          (error: unknown) => void failures.push(error),
        ),
      );
      if (i === 30) await c.stopMember(leader);
      if (i % 10 === 0) await Bun.sleep(1);
    }
    await Promise.all(writes);
    const newLeader = await c.waitForLeader(GROUP);
    expect(newLeader).not.toBe(leader);
    // Writes in flight at the crash are retried (same request id) on the new leader.
    expect(failures).toEqual([]);
    expect(acknowledged).toHaveLength(60);
    for (const id of c.hosts.keys()) {
      const reader = storeOn(c, id);
      for (const i of acknowledged) expect(text(await reader.get(`w${i}`))).toBe(`${i}`);
    }
    await storeOn(c, newLeader).set("after", "crash");
    expect(text(await storeOn(c, writer).get("after"))).toBe("crash");
  });

  test("after all members restart from their data dirs every acknowledged write is there", async () => {
    const c = await start();
    const store = storeOn(c, c.follower(GROUP));
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.setE(`k${i}`, `v${i}`, 0, i === 0 ? 1000 : 0)),
    );
    const claim = await store.claim("lock", "me", 0, 0);
    for (const id of c.ids) await c.stopMember(id);
    for (const id of c.ids) await c.startMember(id);
    await c.waitForLeader(GROUP);
    for (const id of c.ids) {
      const reader = storeOn(c, id);
      for (let i = 0; i < 50; i++) expect(text(await reader.get(`k${i}`))).toBe(`v${i}`);
    }
    // Time stamped in the log survives too: the deadline still counts from the write.
    await c.clock.advance(1000);
    expect(await storeOn(c, "n2").has("k0")).toBe(false);
    const next = await storeOn(c, "n3").claim("lock2", "me", 0, 0);
    expect(next.revision).toBeGreaterThan(claim.revision);
  });

  test("a follower behind a compaction catches up through a snapshot", async () => {
    const c = await start({ snapshotEntries: 20, compactionOverheadEntries: 5 });
    const leader = await c.waitForLeader(GROUP);
    const lagging = c.follower(GROUP);
    c.network.isolate(lagging);
    const store = storeOn(c, leader);
    for (let i = 0; i < 100; i++) await store.setE(`k${i}`, `v${i}`, 0, i === 99 ? 500 : 0);
    await waitFor(() => c.host(leader).status(GROUP).snapshotIndex >= 80, "the leader's snapshot");
    c.network.heal(lagging);
    const target = c.host(leader).status(GROUP).appliedIndex;
    await waitFor(() => c.host(lagging).status(GROUP).appliedIndex >= target, "the follower to catch up");
    expect(c.network.delivered.snapshots).toBeGreaterThan(0);
    const stale = storeOn(c, lagging, true);
    for (let i = 0; i < 100; i++) expect(text(await stale.get(`k${i}`))).toBe(`v${i}`);
    // The restored follower serves linearizable reads and keeps replicating.
    await storeOn(c, lagging).set("later", "x");
    expect(text(await storeOn(c, leader).get("later"))).toBe("x");
    // Deadlines travel in the snapshot as log time.
    await c.clock.advance(500);
    expect(await storeOn(c, lagging).has("k99")).toBe(false);
  });

  test("a retried write with the same request id applies once and returns the first answer", async () => {
    const c = await start();
    const store = storeOn(c, c.follower(GROUP));
    const first = await store.claim("lock", "a", 0, 0, origin(1));
    expect(first.written).toBe(true);
    await store.delete("lock");
    // The retry (e.g. after a lost reply) must not claim the now free key a second time.
    const retried = await store.claim("lock", "a", 0, 0, origin(1));
    expect(retried).toEqual(first);
    expect(await store.has("lock")).toBe(false);
    // Through another member too: the request table is replicated.
    const elsewhere = await storeOn(c, "n1").claim("lock", "a", 0, 0, origin(1));
    expect(elsewhere).toEqual(first);
    expect(await store.has("lock")).toBe(false);
    // withOrigin tags writes of a plain IStore view (how the RPC server passes client ids).
    const view = store.withOrigin(origin(2));
    expect(await view.setEIfUnset("x", "1", 0, 0)).toBe(true);
    await store.delete("x");
    expect(await view.setEIfUnset("x", "1", 0, 0)).toBe(true);
    expect(await store.has("x")).toBe(false);
  });

  test("the request table survives a restart from a snapshot", async () => {
    const c = await start({ snapshotEntries: 10 });
    const store = storeOn(c, "n1");
    const first = await store.claim("lock", "a", 0, 0, origin(42));
    await store.delete("lock");
    for (let i = 0; i < 30; i++) await store.set(`fill${i}`, "x");
    await waitFor(() => c.host("n2").status(GROUP).snapshotIndex > 10, "a snapshot on n2");
    for (const id of c.ids) await c.stopMember(id);
    for (const id of c.ids) await c.startMember(id);
    await c.waitForLeader(GROUP);
    expect(await storeOn(c, "n2").claim("lock", "a", 0, 0, origin(42))).toEqual(first);
    expect(await storeOn(c, "n2").has("lock")).toBe(false);
  });

  test("lock fencing tokens are Raft indexes and keep growing across a leader change", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const survivor = c.follower(GROUP);
    const locks = new LockManager(storeOn(c, survivor));
    const first = await locks.acquire("lock", 0);
    expect(first.acquired).toBe(true);
    // The leader applied it before answering; the follower may learn the commit index a moment later.
    expect(first.fencingToken!).toBeLessThanOrEqual(BigInt(c.host(leader).status(GROUP).raft.commit));
    expect((await locks.acquire("lock", 0)).acquired).toBe(false);
    expect(await locks.release("lock", first.ownerId!)).toBe(true);
    await c.stopMember(leader);
    await c.waitForLeader(GROUP);
    const second = await locks.acquire("lock", 0);
    expect(second.acquired).toBe(true);
    expect(second.fencingToken!).toBeGreaterThan(first.fencingToken!);
    // The lock is held cluster-wide: a client on another member cannot take it.
    const other = [...c.hosts.keys()].find((id) => id !== survivor)!;
    expect((await new LockManager(storeOn(c, other)).acquire("lock", 0)).acquired).toBe(false);
  });
});

describe("dstore on a one-member cluster", () => {
  test("elects itself at once, serves reads and writes, and keeps them across a restart", async () => {
    const c = await start({ size: 1 });
    const store = storeOn(c, "n1");
    await store.set("k", "v");
    expect(text(await store.get("k"))).toBe("v");
    expect((await store.info()).kind).toBe("dstore");
    await c.stopMember("n1");
    await c.startMember("n1");
    await c.waitForLeader(GROUP, 1000);
    expect(text(await storeOn(c, "n1").get("k"))).toBe("v");
  });
});

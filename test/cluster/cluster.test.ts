import { describe, expect, test } from "bun:test";
import { appendFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { IStore } from "../../src/store/types.ts";
import { ensureBinary } from "../e2e/helpers.ts";
import { KV_SHARD, LOCK_SHARD, TestCluster } from "./controller.ts";
import { sendRawRequest } from "./raw-frame.ts";
import { sharedLogDir, tearLastEntryFrame } from "./wal-surgery.ts";

/**
 * Fault tests of a 3-member cluster of the compiled binary on 127.0.0.1, talking to it
 * through the RPC client as users do. Timing: --rtt-millisecond 20, election after
 * 10-20 ticks (200-400 ms), so a failover takes well under a second.
 */

const utf8 = new TextDecoder();
/** Writes of the compaction test; DKV_CLUSTER_WRITES=50000 runs the full size. */
const COMPACTION_WRITES = Number(process.env.DKV_CLUSTER_WRITES ?? 3000);
/** A new leader must serve within this many ms of the old one's death (a few election timeouts). */
const FAILOVER_MS_MAX = 5000;
/** Bytes cut off a WAL frame's last record: enough to fail its check, less than any record. */
const TORN_CUT_BYTES = 5;
/** A member repaired at start must hold the leader's log within this long (a few heartbeat rounds suffice). */
const CATCH_UP_MS_MAX = 10_000;

async function expectAllPresent(store: IStore, keys: Iterable<number>, prefix: string): Promise<void> {
  const list = [...keys];
  // In batches so the pipelined client never holds thousands of calls at once.
  for (let i = 0; i < list.length; i += 500) {
    const batch = list.slice(i, i + 500);
    const values = await Promise.all(batch.map((k) => store.get(`${prefix}${k}`)));
    const missing = batch.filter((k, j) => values[j] === undefined || utf8.decode(values[j]) !== `v${k}`);
    expect(missing).toEqual([]);
  }
}

/**
 * Writes `${prefix}${i}` = `v${i}` from `concurrency` workers until `stop()` says so or
 * `max` writes were started; returns the acknowledged indexes and the time of each ack.
 */
function writeStream(store: IStore, prefix: string, options: { concurrency: number; max: number }) {
  const acked = new Set<number>();
  const ackTimes: number[] = [];
  let next = 0;
  let stopped = false;
  let failures = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  const workers = Array.from({ length: options.concurrency }, async () => {
    while (!stopped && next < options.max) {
      const i = next++;
      try {
        await store.set(`${prefix}${i}`, `v${i}`);
        acked.add(i);
        ackTimes.push(performance.now());
        for (const waiter of waiters.filter((w) => acked.size >= w.count)) waiter.resolve();
      } catch {
        failures++;
      }
    }
  });
  return {
    acked,
    ackTimes,
    failures: () => failures,
    /** Resolves once `count` writes were acknowledged (or the stream ended). */
    reached(count: number): Promise<void> {
      if (acked.size >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ count, resolve });
      return Promise.race([promise, Promise.all(workers).then(() => undefined)]);
    },
    /** Resolves when every write was started and answered (`max` reached). */
    async finished(): Promise<void> {
      await Promise.all(workers);
    },
    async stop(): Promise<void> {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

/** Waits until the leader reports `follower`'s match at `index` or beyond; returns that match. */
async function waitForMatch(
  cluster: TestCluster,
  leader: string,
  follower: string,
  index: number,
): Promise<number> {
  const deadline = Date.now() + 5000;
  let match = 0;
  // Bounded by the deadline.
  while (Date.now() < deadline) {
    const status = await cluster.shardStatus(leader, KV_SHARD);
    match = status.members?.find((m) => m.id === follower)?.match ?? 0;
    if (match >= index) return match;
    await Bun.sleep(25);
  }
  throw new Error(`${follower}'s match stayed at ${match}, below ${index}`);
}

describe("a 3-member cluster of dist/dkv", () => {
  test("the binary is built", async () => {
    await ensureBinary();
  }, 180_000);

  test("a write on one member is read on the others at once; a follower serves writes", async () => {
    const cluster = await TestCluster.start();
    try {
      const leader = await cluster.waitForLeader(KV_SHARD);
      const [a, b, c] = cluster.members.map((m) => m.id) as [string, string, string];
      const onA = cluster.client([a]).store(KV_SHARD);
      await onA.set("greeting", "hello");
      for (const id of [b, c]) {
        const value = await cluster.client([id]).store(KV_SHARD).get("greeting");
        expect(value === undefined ? undefined : utf8.decode(value)).toBe("hello");
      }
      const follower = cluster.members.find((m) => m.id !== leader)!.id;
      const onFollower = cluster.client([follower]).store(KV_SHARD);
      await onFollower.set("from-follower", "yes");
      expect(await onFollower.setEIfUnset("once", "1", 0, 0)).toBe(true);
      expect(await onFollower.setEIfUnset("once", "2", 0, 0)).toBe(false);
      const onLeader = cluster.client([leader]).store(KV_SHARD);
      expect(utf8.decode((await onLeader.get("from-follower"))!)).toBe("yes");
      expect(utf8.decode((await onLeader.get("once"))!)).toBe("1");
      // lstore shards stay local to each server.
      await cluster.client([a]).store(100).set("local", "a");
      expect(await cluster.client([b]).store(100).get("local")).toBeUndefined();
      // The status names the same leader everywhere, with every member.
      const report = await cluster.statusViaCli(follower);
      const shard = report.shards.find((s) => s.shard === KV_SHARD)!;
      expect(report.replicaId).toBe(follower);
      expect(shard.leader).toBe(leader);
      expect(shard.role).toBe("follower");
      expect(shard.members?.map((m) => m.id).sort()).toEqual(["node-1", "node-2", "node-3"]);
      expect(report.shards.find((s) => s.shard === 100)).toEqual({
        shard: 100,
        type: "lstore",
        replicated: false,
      });
    } finally {
      await cluster.close();
    }
  }, 30_000);

  test("a retried write sent to another member applies once: a retried acquire returns the same owner and token", async () => {
    const cluster = await TestCluster.start();
    try {
      const leader = await cluster.waitForLeader(LOCK_SHARD);
      const [first, second] = cluster.members.filter((m) => m.id !== leader).map((m) => m.id) as [
        string,
        string,
      ];
      const ids = { clientIdHigh: 0x1234_5678, clientIdLow: 0x9abc_def0, requestId: 77 };
      const message = { key: "retried", ttlMs: 0, waitMs: 0 };
      const original = await sendRawRequest(cluster.endpoint(first), ids, LOCK_SHARD, "acquire", message);
      const retry = await sendRawRequest(cluster.endpoint(second), ids, LOCK_SHARD, "acquire", message);
      const retryOnLeader = await sendRawRequest(
        cluster.endpoint(leader),
        ids,
        LOCK_SHARD,
        "acquire",
        message,
      );
      expect(original.acquired).toBe(true);
      expect(retry).toEqual(original);
      expect(retryOnLeader).toEqual(original);
      // The owner id reported to the retry really owns the lock: it releases it.
      const locks = cluster.client([second]).locks(LOCK_SHARD);
      expect(await locks.release("retried", original.ownerId as string)).toBe(true);
      // A new request id is a new acquire.
      const fresh = await sendRawRequest(
        cluster.endpoint(second),
        { ...ids, requestId: 78 },
        LOCK_SHARD,
        "acquire",
        message,
      );
      expect(fresh.acquired).toBe(true);
      expect(fresh.fencingToken as bigint).toBeGreaterThan(original.fencingToken as bigint);
      // A retried setEIfUnset through another member reports the first answer.
      const setIds = { ...ids, requestId: 90 };
      const put = { key: "k", value: new TextEncoder().encode("v"), expireInMs: 0, deleteInMs: 0 };
      const firstPut = await sendRawRequest(cluster.endpoint(first), setIds, KV_SHARD, "setEIfUnset", put);
      const retriedPut = await sendRawRequest(cluster.endpoint(leader), setIds, KV_SHARD, "setEIfUnset", put);
      expect(firstPut.written).toBe(true);
      expect(retriedPut.written).toBe(true);
    } finally {
      await cluster.close();
    }
  }, 30_000);

  test("kill -9 of the leader during writes: a new leader serves within a few election timeouts, no acked write is lost", async () => {
    const cluster = await TestCluster.start();
    try {
      const leader = await cluster.waitForLeader(KV_SHARD);
      const stream = writeStream(cluster.client().store(KV_SHARD), "w", { concurrency: 8, max: 100_000 });
      await stream.reached(300);
      const killedAt = performance.now();
      const ackedBeforeKill = stream.acked.size;
      await cluster.kill(leader);
      await stream.reached(ackedBeforeKill + 300);
      await stream.stop();
      const firstAckAfter = stream.ackTimes.find((t) => t > killedAt + 50);
      expect(firstAckAfter).toBeDefined();
      expect(firstAckAfter! - killedAt).toBeLessThan(FAILOVER_MS_MAX);
      expect(stream.acked.size).toBeGreaterThanOrEqual(ackedBeforeKill + 300);
      const newLeader = await cluster.waitForLeader(KV_SHARD);
      expect(newLeader).not.toBe(leader);
      for (const id of cluster.liveIds()) {
        await expectAllPresent(cluster.client([id]).store(KV_SHARD), stream.acked, "w");
      }
      // The old leader comes back as a follower and catches up.
      await cluster.startMember(leader);
      await expectAllPresent(cluster.client([leader]).store(KV_SHARD), stream.acked, "w");
    } finally {
      await cluster.close();
    }
  }, 60_000);

  test("kill -9 of all three members, then a restart: every acked write is present", async () => {
    const cluster = await TestCluster.start();
    try {
      await cluster.waitForLeader(KV_SHARD);
      const stream = writeStream(cluster.client().store(KV_SHARD), "a", { concurrency: 8, max: 100_000 });
      await stream.reached(1000);
      // All at once, writes still in flight.
      await Promise.all(cluster.members.map((m) => cluster.kill(m.id)));
      await stream.stop();
      await Promise.all(cluster.members.map((m) => cluster.startMember(m.id)));
      await cluster.waitForLeader(KV_SHARD);
      for (const id of cluster.liveIds()) {
        await expectAllPresent(cluster.client([id]).store(KV_SHARD), stream.acked, "a");
      }
    } finally {
      await cluster.close();
    }
  }, 60_000);

  test(`a follower stopped during ${COMPACTION_WRITES} writes with compaction rejoins through a snapshot`, async () => {
    const compactionOverhead = 100;
    const cluster = await TestCluster.start({
      extraArgs: ["--snapshot-entries", "500", "--compaction-overhead", String(compactionOverhead)],
    });
    try {
      const leader = await cluster.waitForLeader(KV_SHARD);
      const follower = cluster.members.find((m) => m.id !== leader)!.id;
      const before = await cluster.shardStatus(follower, KV_SHARD);
      await cluster.kill(follower);
      const stream = writeStream(cluster.client([leader]).store(KV_SHARD), "c", {
        concurrency: 32,
        max: COMPACTION_WRITES,
      });
      await stream.finished();
      expect(stream.acked.size).toBe(COMPACTION_WRITES);
      const leaderStatus = await cluster.shardStatus(leader, KV_SHARD);
      // The leader's log no longer holds what the follower lacks: only a snapshot can bring it up.
      expect((leaderStatus.snapshotIndex ?? 0) - compactionOverhead).toBeGreaterThan(before.lastIndex ?? 0);
      await cluster.startMember(follower);
      const caughtUp = await cluster.waitForApplied(
        follower,
        KV_SHARD,
        leaderStatus.commitIndex ?? 0,
        30_000,
      );
      expect(caughtUp.snapshotIndex ?? 0).toBeGreaterThan(before.lastIndex ?? 0);
      await expectAllPresent(cluster.client([follower]).store(KV_SHARD), stream.acked, "c");
    } finally {
      await cluster.close();
    }
  }, 90_000);

  test("a torn last WAL record of a stopped member is repaired at start; the member catches up", async () => {
    const cluster = await TestCluster.start();
    try {
      const leader = await cluster.waitForLeader(KV_SHARD);
      const victim = cluster.members.find((m) => m.id !== leader)!.id;
      const store = cluster.client([leader]).store(KV_SHARD);
      for (let i = 0; i < 50; i++) await store.set(`t${i}`, `v${i}`);
      await cluster.kill(victim);
      // A crash in the middle of writing the next group-commit frame: its header promises
      // 200 payload bytes, 60 made it to disk. Such a frame was never fsynced, so never
      // acknowledged. (Cutting bytes off the last *complete* frame, which can destroy
      // acknowledged entries, is the next test.)
      const walDir = sharedLogDir(cluster.member(victim).dataDir);
      const segments = (await readdir(walDir)).filter((name) => name.endsWith(".log")).sort();
      const newest = join(walDir, segments.at(-1)!);
      const torn = new Uint8Array(8 + 60);
      new DataView(torn.buffer).setUint32(0, 200, true);
      torn[8] = 1; // an entry record's tag
      await appendFile(newest, torn);
      // More writes while it is down, so it has something to catch up on.
      for (let i = 50; i < 100; i++) await store.set(`t${i}`, `v${i}`);
      await cluster.startMember(victim);
      const leaderStatus = await cluster.shardStatus(leader, KV_SHARD);
      await cluster.waitForApplied(victim, KV_SHARD, leaderStatus.commitIndex ?? 0);
      expect(cluster.logs(victim)).toContain("torn write");
      await expectAllPresent(
        cluster.client([victim]).store(KV_SHARD),
        Array.from({ length: 100 }, (_, i) => i),
        "t",
      );
    } finally {
      await cluster.close();
    }
  }, 60_000);

  for (const writesWhileDown of [true, false]) {
    test(`bytes cut off the last record of a stopped follower's WAL (acknowledged entries lost) are repaired at start; it catches up${writesWhileDown ? " after writes it missed" : " from an idle leader"}`, async () => {
      const cluster = await TestCluster.start();
      try {
        const leader = await cluster.waitForLeader(KV_SHARD);
        const victim = cluster.members.find((m) => m.id !== leader)!.id;
        const store = cluster.client([leader]).store(KV_SHARD);
        for (let i = 0; i < 50; i++) await store.set(`t${i}`, `v${i}`);
        // Everything acknowledged by the victim before it stops, so what the cut destroys
        // is below the leader's match for it.
        const leaderView = await cluster.shardStatus(leader, KV_SHARD);
        const acked = await waitForMatch(cluster, leader, victim, leaderView.lastIndex ?? 0);
        await cluster.kill(victim);
        const torn = await tearLastEntryFrame(
          sharedLogDir(cluster.member(victim).dataDir),
          KV_SHARD,
          TORN_CUT_BYTES,
        );
        expect(torn.lostFromIndex).toBeLessThanOrEqual(acked);
        const total = writesWhileDown ? 100 : 50;
        for (let i = 50; i < total; i++) await store.set(`t${i}`, `v${i}`);
        const restartedAt = performance.now();
        await cluster.startMember(victim);
        const leaderStatus = await cluster.shardStatus(leader, KV_SHARD);
        const caughtUp = await cluster.waitForApplied(
          victim,
          KV_SHARD,
          leaderStatus.commitIndex ?? 0,
          CATCH_UP_MS_MAX,
        );
        expect(performance.now() - restartedAt).toBeLessThan(CATCH_UP_MS_MAX);
        expect(caughtUp.lastIndex).toBeGreaterThanOrEqual(torn.lostToIndex);
        expect(cluster.logs(victim)).toContain("torn write");
        expect(cluster.logs(leader)).toContain(`${victim} lost acknowledged entries above`);
        // The same data on every member, the repaired one included.
        for (const id of cluster.liveIds()) {
          await expectAllPresent(
            cluster.client([id]).store(KV_SHARD),
            Array.from({ length: total }, (_, i) => i),
            "t",
          );
        }
      } finally {
        await cluster.close();
      }
    }, 60_000);
  }

  test("locks: clients on different members never both hold a key; fencing tokens increase across a leader change", async () => {
    const cluster = await TestCluster.start();
    try {
      await cluster.waitForLeader(LOCK_SHARD);
      const [a, b, c] = cluster.members.map((m) => m.id) as [string, string, string];
      const counter = cluster.client([c]).store(KV_SHARD);
      await counter.set("counter", "0");
      let holder: string | undefined;
      let overlaps = 0;
      const tokens: bigint[] = [];
      const rounds = 8;
      const contend = async (name: string, member: string) => {
        const locks = cluster.client([member]).locks(LOCK_SHARD);
        const store = cluster.client([member]).store(KV_SHARD);
        for (let round = 0; round < rounds; round++) {
          const lease = await locks.acquire("mutex", 10_000, { waitMs: 10_000 });
          if (!lease.acquired) throw new Error(`${name} did not get the lock within 10 s`);
          if (holder !== undefined) overlaps++;
          holder = name;
          tokens.push(lease.fencingToken!);
          // A read-modify-write that loses updates unless the lock excludes the other client.
          const value = Number(utf8.decode((await store.get("counter"))!));
          await store.set("counter", String(value + 1));
          holder = undefined;
          expect(await locks.release("mutex", lease.ownerId!)).toBe(true);
        }
      };
      await Promise.all([contend("A", a), contend("B", b)]);
      expect(overlaps).toBe(0);
      expect(utf8.decode((await counter.get("counter"))!)).toBe(String(2 * rounds));
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);

      // A lock held across a leader change stays held, and the next holder's token is larger.
      const lockLeader = await cluster.waitForLeader(LOCK_SHARD);
      const survivors = cluster.members.filter((m) => m.id !== lockLeader).map((m) => m.id) as [
        string,
        string,
      ];
      const held = await cluster.client([survivors[0]]).locks(LOCK_SHARD).acquire("across", 0);
      expect(held.acquired).toBe(true);
      await cluster.kill(lockLeader);
      await cluster.waitForLeader(LOCK_SHARD);
      const other = cluster.client([survivors[1]]).locks(LOCK_SHARD);
      expect((await other.acquire("across", 0)).acquired).toBe(false);
      expect(await other.release("across", held.ownerId!)).toBe(true);
      const next = await other.acquire("across", 0);
      expect(next.acquired).toBe(true);
      expect(next.fencingToken!).toBeGreaterThan(held.fencingToken!);
      expect(next.fencingToken!).toBeGreaterThan(tokens.at(-1)!);
    } finally {
      await cluster.close();
    }
  }, 60_000);
});

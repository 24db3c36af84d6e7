/**
 * The store and lock conformance suites through the RPC client against a 3-member dstore
 * cluster, each member started by `startNode` from the options `dkv serve` resolves (one
 * Raft host, a group per shard, the RPC server in front), with only the clock and the node
 * transport replaced. The client spreads requests over all three servers, so followers
 * serve (forward writes, ReadIndex reads) as often as the leader.
 *
 * Like test/store/dstore-conformance.test.ts, every test gets a fresh cluster: the suites
 * pick their own keys and count keys (`info`), so only new state machines start clean.
 * The members share one ManualClock (entry stamps, TTLs, lock expiry) and an in-memory node
 * network; the Raft tick is real time, short, and node 1 campaigns at once.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/clock.ts";
import { resolveNodeOptions } from "../../src/config/node-options.ts";
import { readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { type Node, startNode } from "../../src/server/node.ts";
import type { ReplicatedShardType } from "../../src/store/replicated/shards.ts";
import { runLockConformance } from "../conformance/lock-conformance.ts";
import { runStoreConformance } from "../conformance/store-conformance.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { MemoryNetwork } from "../raft/host/memory-transport.ts";

// Small enough that the over-limit tests stay cheap, big enough for a 10 KiB key and a 1 MiB value.
const limits = { maxKeyBytes: 16 * 1024, maxValueBytes: 2 * 1024 * 1024 };
const STORE_SHARD = 200;
const LOCK_SHARD = 300;
const MEMBER_IDS = ["node-1", "node-2", "node-3"];
/** Raft tick of the in-process members: elections in tens of ms, not seconds. */
const RTT_MS = 5;
const LEADER_WAIT_MS = 5000;

interface RpcCluster {
  client: RpcClient;
  clock: ManualClock;
  close(): Promise<void>;
}

/** tmpfs when there is one: fsyncs there cost microseconds, so per-test clusters stay fast. */
async function tempRoot(): Promise<string> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  return mkdtemp(join(base, "dkv-dstore-rpc-"));
}

/** The leader every member names for `shard`, once they agree. */
function agreedLeader(members: readonly Node[], shard: number): string | undefined {
  const leaders = new Set(members.map((m) => m.replicated?.host.status(shard).raft.leader));
  const [leader] = [...leaders];
  return leaders.size === 1 && typeof leader === "string" ? leader : undefined;
}

async function startRpcCluster(shardType: ReplicatedShardType, shard: number): Promise<RpcCluster> {
  const root = await tempRoot();
  const clock = new ManualClock();
  const network = new MemoryNetwork();
  // Addresses are never dialed (the in-memory network routes by id) but name the members.
  const clusterMembers = MEMBER_IDS.map((id, i) => `${id}=127.0.0.1:${63101 + i}`).join(",");
  const owned = new AsyncDisposableStack();
  owned.defer(() => rm(root, { recursive: true, force: true }));
  try {
    const members: Node[] = [];
    for (const id of MEMBER_IDS) {
      const options = resolveNodeOptions({
        ...readOptions(serveOptions, {}),
        shards: `${shard}=${shardType}`,
        "replica-id": id,
        "cluster-members": clusterMembers,
        "data-dir": join(root, id),
        "rtt-millisecond": RTT_MS,
        "max-key-bytes": limits.maxKeyBytes,
        "max-value-bytes": limits.maxValueBytes,
        "transport-endpoint": "127.0.0.1:0",
      });
      members.push(
        owned.use(
          await startNode(options, { clock, nodeTransport: (raft) => network.transport(raft.replicaId) }),
        ),
      );
    }
    // Elect node-1 at once instead of waiting out a randomised timeout.
    members[0]!.replicated!.host.campaign(shard);
    await waitFor(
      () => agreedLeader(members, shard) !== undefined,
      `a leader of shard ${shard}`,
      LEADER_WAIT_MS,
    );
    const client = owned.use(
      new RpcClient({
        endpoints: members.map((member) => member.endpoint),
        transport: "tcp",
        serializer: "binary",
        timeoutMs: 10_000,
      }),
    );
    // Connect to every member before the suite starts: its "answers at once" tests allow
    // no time for a connect. One call per endpoint, as requests go round-robin.
    for (let i = 0; i < members.length; i++) await client.info(shard);
    const running = owned.move();
    return { client, clock, close: () => running.disposeAsync() };
  } catch (error) {
    await owned.disposeAsync();
    throw error;
  }
}

runStoreConformance("RpcClient over 3 dstore members (requests on leader and followers)", async () => {
  const cluster = await startRpcCluster("dstore", STORE_SHARD);
  return { store: cluster.client.store(STORE_SHARD), clock: cluster.clock, limits, close: cluster.close };
});

runLockConformance(
  "RpcClient over 3 lockmgr(dstore) members (requests on leader and followers)",
  async () => {
    const cluster = await startRpcCluster("lockmgr(dstore)", LOCK_SHARD);
    return { locks: cluster.client.locks(LOCK_SHARD), clock: cluster.clock, close: cluster.close };
  },
);

describe("the RPC cluster the suites run against", () => {
  test("the client's requests go round-robin to all three members, followers included", async () => {
    const cluster = await startRpcCluster("dstore", STORE_SHARD);
    try {
      const reports = [];
      for (let i = 0; i < MEMBER_IDS.length; i++) reports.push(await cluster.client.clusterStatus());
      expect(reports.map((r) => r.replicaId).sort()).toEqual(MEMBER_IDS);
      const roles = reports.map((r) => r.shards.find((s) => s.shard === STORE_SHARD)?.role).sort();
      expect(roles).toEqual(["follower", "follower", "leader"]);
    } finally {
      await cluster.close();
    }
  });
});

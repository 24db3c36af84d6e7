/**
 * The store and lock conformance suites through the RPC client against a 3-member dstore
 * cluster, wired the way `dkv serve` wires it: per member, startReplicatedShards (one Raft
 * host, a group per shard) behind startRpcServer with the handlers replicatedShardHandler
 * builds. The client spreads requests over all three servers, so followers serve (forward
 * writes, ReadIndex reads) as often as the leader.
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
import { RpcClient } from "../../src/rpc/client/index.ts";
import { type RpcServer, type ShardHandler, startRpcServer } from "../../src/rpc/server/index.ts";
import { replicatedShardHandler } from "../../src/server/shards.ts";
import {
  type ReplicatedShards,
  type ReplicatedShardType,
  startReplicatedShards,
} from "../../src/store/replicated/shards.ts";
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
function agreedLeader(members: readonly ReplicatedShards[], shard: number): string | undefined {
  const leaders = new Set(members.map((m) => m.host.status(shard).raft.leader));
  const [leader] = [...leaders];
  return leaders.size === 1 && typeof leader === "string" ? leader : undefined;
}

async function startRpcCluster(shardType: ReplicatedShardType, shard: number): Promise<RpcCluster> {
  const root = await tempRoot();
  const clock = new ManualClock();
  const network = new MemoryNetwork();
  // Addresses are never dialed (the in-memory network routes by id) but name the members.
  const clusterMembers = new Map(MEMBER_IDS.map((id, i) => [id, `127.0.0.1:${63101 + i}`]));
  const members: ReplicatedShards[] = [];
  const servers: RpcServer[] = [];
  let client: RpcClient | undefined;
  const close = async () => {
    await client?.close();
    for (const server of servers) await server.stop();
    for (const member of members) await member.close();
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const id of MEMBER_IDS) {
      const member = await startReplicatedShards({
        replicaId: id,
        clusterMembers,
        dataDir: join(root, id),
        shards: [{ id: shard, type: shardType }],
        rttMs: RTT_MS,
        limits,
        clock,
        transport: network.transport(id),
      });
      members.push(member);
      // What `dkv serve` serves (src/server/node.ts startNode): the same handler builder.
      const handlers = new Map<number, ShardHandler>(
        [...member.shards.values()].map((s) => [s.id, replicatedShardHandler(s, clock)]),
      );
      servers.push(
        await startRpcServer({
          transport: "tcp",
          serializer: "binary",
          endpoint: "127.0.0.1:0",
          shards: handlers,
          clusterStatus: () => ({
            replicaId: id,
            shards: member.status().map((status) => ({
              shard: status.groupId,
              type: status.type,
              replicated: true,
              role: status.raft.role,
              leader: status.raft.leader,
            })),
          }),
        }),
      );
    }
    // Elect node-1 at once instead of waiting out a randomised timeout.
    members[0]!.host.campaign(shard);
    await waitFor(
      () => agreedLeader(members, shard) !== undefined,
      `a leader of shard ${shard}`,
      LEADER_WAIT_MS,
    );
    client = new RpcClient({
      endpoints: servers.map((server) => server.endpoint),
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 10_000,
    });
    // Connect to every member before the suite starts: its "answers at once" tests allow
    // no time for a connect. One call per endpoint, as requests go round-robin.
    for (let i = 0; i < servers.length; i++) await client.info(shard);
    return { client, clock, close };
  } catch (error) {
    await close();
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

/**
 * A 3-member cluster of `startNode` members in this process (Raft host, a dstore group per
 * shard, the RPC server in front of each) over an in-memory node network and one
 * ManualClock, for tests that need the real server path without child processes. Data
 * dirs live under /dev/shm when it exists; `close()` stops clients, members and removes them.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/clock.ts";
import { resolveNodeOptions } from "../../src/config/node-options.ts";
import { readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { type Node, startNode } from "../../src/server/node.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { MemoryNetwork } from "../raft/host/memory-transport.ts";

export const NODE_CLUSTER_IDS = ["node-1", "node-2", "node-3"] as const;

export interface NodeClusterOptions {
  /** The one dstore shard every member serves. */
  shard: number;
  /** --rtt-millisecond (ticks of the ManualClock). */
  rttMs: number;
  /** The client listener's transport (default tcp). */
  transport?: TransportName;
  /** Reply deadline of the clients `client()` makes. */
  clientTimeoutMs: number;
  /** The temp dir's name prefix. */
  prefix: string;
}

export interface NodeCluster {
  members: Node[];
  clock: ManualClock;
  network: MemoryNetwork;
  /** A client of these endpoints over the cluster's transport; closed by `close()`. */
  client(endpoints: string[]): RpcClient;
  close(): Promise<void>;
}

/** Starts the members, has node-1 campaign, and waits (5 s) until all agree on a leader. */
export async function startNodeCluster(options: NodeClusterOptions): Promise<NodeCluster> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const root = await mkdtemp(join(base, options.prefix));
  const clock = new ManualClock();
  const network = new MemoryNetwork();
  const transport = options.transport ?? "tcp";
  // The addresses only name the members: the node network is in memory.
  const clusterMembers = NODE_CLUSTER_IDS.map((id, i) => `${id}=127.0.0.1:${63201 + i}`).join(",");
  const members: Node[] = [];
  const clients: RpcClient[] = [];
  const close = async () => {
    for (const client of clients) await client.close();
    for (const member of members) await member.stop();
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const id of NODE_CLUSTER_IDS) {
      const nodeOptions = resolveNodeOptions({
        ...readOptions(serveOptions, {}),
        shards: `${options.shard}=dstore`,
        "replica-id": id,
        "cluster-members": clusterMembers,
        "data-dir": join(root, id),
        "rtt-millisecond": options.rttMs,
        transport,
        "transport-endpoint": "127.0.0.1:0",
      });
      members.push(
        await startNode(nodeOptions, { clock, nodeTransport: (raft) => network.transport(raft.replicaId) }),
      );
    }
    members[0]!.replicated!.host.campaign(options.shard);
    await waitFor(
      () => new Set(members.map((m) => m.replicated?.host.status(options.shard).raft.leader)).size === 1,
      "an agreed leader",
      5000,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    members,
    clock,
    network,
    client(endpoints) {
      const client = new RpcClient({
        endpoints,
        transport,
        serializer: "binary",
        timeoutMs: options.clientTimeoutMs,
      });
      clients.push(client);
      return client;
    },
    close,
  };
}

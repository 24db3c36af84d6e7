/**
 * Benchmark of the Raft core alone (issue 4), no I/O:
 *  1. proposals per second committed through an in-memory 3-node cluster, with batching;
 *  2. the cost of one tick of an idle group (heartbeats included), and how many idle groups
 *     one process could tick every 100 ms.
 *
 *   bun test/bench/raft-core.ts
 */
import { MemoryLogStorage, RaftNode } from "../../src/raft/core/index.ts";
import type { Message, NodeId } from "../../src/raft/core/types.ts";
import { seededRandom } from "../support/seeded-random.ts";

const ids: NodeId[] = ["a", "b", "c"];

interface BenchNode {
  raft: RaftNode;
  storage: MemoryLogStorage;
  applied: number;
}

interface Cluster {
  nodes: Map<NodeId, BenchNode>;
  inbox: Message[];
  nowMs: number;
}

function createCluster(): Cluster {
  const nodes = new Map<NodeId, BenchNode>();
  ids.forEach((id, i) => {
    const storage = new MemoryLogStorage({
      hardState: { term: 0, vote: null, commit: 0 },
      conf: { voters: ids, learners: [] },
    });
    const raft = new RaftNode({
      id,
      storage,
      random: seededRandom(i + 1),
      electionTicks: 10,
      heartbeatTicks: 1,
      maxSizePerMsgBytes: 1 << 20,
      maxInflightMsgs: 256,
      maxInflightBytes: 64 << 20,
      maxUncommittedBytes: 64 << 20,
    });
    nodes.set(id, { raft, storage, applied: 0 });
  });
  return { nodes, inbox: [], nowMs: 1_700_000_000_000 };
}

/** Drains every Ready (persist, send, apply, advance) and delivers messages until quiet. */
function pump(cluster: Cluster, snapshotEvery: number): void {
  for (let round = 0; round < 10_000; round++) {
    let busy = false;
    for (const node of cluster.nodes.values()) {
      if (!node.raft.hasReady()) continue;
      busy = true;
      const ready = node.raft.ready();
      if (ready.snapshot !== undefined) node.storage.applySnapshot(ready.snapshot);
      if (ready.entries.length > 0) node.storage.append(ready.entries);
      if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
      for (const message of ready.messages) cluster.inbox.push(message);
      const committed = ready.committedEntries;
      if (committed.length > 0) node.applied = committed[committed.length - 1]!.index;
      node.raft.advance();
      // Keep memory flat: a real state machine snapshots and compacts the same way.
      if (snapshotEvery > 0 && node.applied - node.storage.firstIndex() > snapshotEvery) {
        node.storage.createSnapshot(node.applied, { voters: ids, learners: [] }, new Uint8Array(0));
        node.storage.compact(node.applied - 1000);
      }
    }
    if (cluster.inbox.length > 0) {
      busy = true;
      const batch = cluster.inbox;
      cluster.inbox = [];
      for (const message of batch) cluster.nodes.get(message.to)?.raft.step(message);
    }
    if (!busy) return;
  }
  throw new Error("cluster did not quiesce within 10000 rounds");
}

function tickAll(cluster: Cluster): void {
  cluster.nowMs += 100;
  for (const node of cluster.nodes.values()) node.raft.tick(cluster.nowMs);
}

function electLeader(cluster: Cluster): BenchNode {
  const first = cluster.nodes.get("a")!;
  first.raft.campaign();
  for (let i = 0; i < 100; i++) {
    pump(cluster, 0);
    if (first.raft.status().role === "leader") return first;
    tickAll(cluster);
  }
  throw new Error("no leader after 100 ticks");
}

function benchProposals(total: number, batch: number): { perSecond: number; seconds: number } {
  const cluster = createCluster();
  const leader = electLeader(cluster);
  const payload = new Uint8Array(16);
  const startMs = performance.now();
  const base = leader.applied;
  let proposed = 0;
  for (let rounds = 0; proposed < total && rounds < total; rounds++) {
    for (let i = 0; i < batch && proposed < total; i++) {
      const result = leader.raft.propose(payload);
      if (!result.ok) break; // Flow control said "overloaded": let the batch commit first.
      proposed++;
    }
    pump(cluster, 50_000);
  }
  const target = base + total;
  for (const node of cluster.nodes.values()) {
    if (node.applied < target) throw new Error(`node applied ${node.applied} < ${target}`);
  }
  const seconds = (performance.now() - startMs) / 1000;
  return { perSecond: total / seconds, seconds };
}

function benchIdleTick(ticks: number): { groupTickUs: number; replicaTickUs: number } {
  const cluster = createCluster();
  electLeader(cluster);
  for (let i = 0; i < 100; i++) {
    tickAll(cluster);
    pump(cluster, 0);
  }
  const startMs = performance.now();
  for (let i = 0; i < ticks; i++) {
    tickAll(cluster);
    pump(cluster, 0);
  }
  const groupTickUs = ((performance.now() - startMs) * 1000) / ticks;
  return { groupTickUs, replicaTickUs: groupTickUs / ids.length };
}

export async function run(): Promise<void> {
  benchProposals(50_000, 1000); // Warm up the JIT.
  for (const batch of [64, 1024, 8192]) {
    const { perSecond, seconds } = benchProposals(500_000, batch);
    console.log(
      `raft-core: 500000 16-byte proposals, batch ${batch}: ${Math.round(perSecond).toLocaleString("en-US")} committed/s (${seconds.toFixed(2)} s)`,
    );
  }
  benchIdleTick(2_000);
  const { groupTickUs, replicaTickUs } = benchIdleTick(20_000);
  const groupsPer100Ms = Math.floor(100_000 / replicaTickUs);
  console.log(
    `raft-core: idle 3-node group, heartbeat every tick: ${groupTickUs.toFixed(2)} µs per group tick ` +
      `(${replicaTickUs.toFixed(2)} µs per replica, messages included) → ~${groupsPer100Ms.toLocaleString("en-US")} ` +
      "idle groups per process per 100 ms tick (one replica of each per process)",
  );
}

if (import.meta.main) await run();

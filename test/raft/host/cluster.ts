import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../../src/clock.ts";
import type { NodeId } from "../../../src/raft/core/types.ts";
import type { GroupOptions } from "../../../src/raft/host/group-env.ts";
import { RaftHost } from "../../../src/raft/host/raft-host.ts";
import { type HostScheduler, type OpenGroupStorage, realScheduler } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import type { NodeTransport } from "../../../src/raft/transport/types.ts";
import { MemoryNetwork } from "./memory-transport.ts";

export interface ClusterOptions {
  size?: number;
  groups?: number[];
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  snapshotEntries?: number;
  compactionOverheadEntries?: number;
  snapshotBytes?: number;
  raftLogMaxBytes?: number;
  raftLogBudgetBytes?: number;
  requestTimeoutMs?: number;
  /** A state machine per (member, group); a fresh one on every start. */
  stateMachine: (id: NodeId, groupId: number) => StateMachine;
  /** A transport per member; the in-memory network by default. */
  transport?: (id: NodeId) => NodeTransport;
  /** Opens each member's group storage (default: raft/storage under the member's data dir). */
  openStorage?: (id: NodeId, dataDir: string) => OpenGroupStorage;
  /** Options of every group (e.g. the leader's check of forwarded proposals). */
  groupOptions?: GroupOptions;
  /** Leader balancing every N ticks (off by default). */
  leaderBalanceTicks?: number;
}

/** tmpfs when there is one: fsyncs there cost microseconds, so tests stay fast. */
async function tempRoot(): Promise<string> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  return mkdtemp(join(base, "dkv-host-"));
}

/** Polls `condition` every few ms; fails naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  // Bounded by the deadline.
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/**
 * Raft hosts of one cluster in this process, over an in-memory network (or given
 * transports), with data dirs under one temp root and one ManualClock stamping entries.
 */
export class TestCluster {
  readonly network = new MemoryNetwork();
  readonly clock = new ManualClock();
  readonly ids: NodeId[];
  readonly members: Map<NodeId, string>;
  readonly hosts = new Map<NodeId, RaftHost>();
  readonly groups: number[];
  /** What the hosts reported to onFatal (a real process would have exited). */
  readonly fatalErrors: { id: NodeId; error: Error }[] = [];
  /** While set, every member's tick timer fires without ticking (holdTicks). */
  private ticksHeld = false;
  /** Real timers whose ticks holdTicks can suspend: tests that count messages exclude a tick's own. */
  private readonly scheduler: HostScheduler = {
    ...realScheduler,
    startTicks: (tickMs, onTick) =>
      realScheduler.startTicks(tickMs, () => {
        if (!this.ticksHeld) onTick();
      }),
  };

  private constructor(
    readonly root: string,
    private readonly options: ClusterOptions,
  ) {
    const size = options.size ?? 3;
    this.ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    this.members = new Map(this.ids.map((id, i) => [id, `127.0.0.1:${63001 + i}`]));
    this.groups = options.groups ?? [1];
  }

  static async start(options: ClusterOptions): Promise<TestCluster> {
    const cluster = new TestCluster(await tempRoot(), options);
    for (const id of cluster.ids) await cluster.startMember(id);
    // Elect n1 at once instead of waiting out a randomised timeout.
    for (const group of cluster.groups) cluster.host("n1").campaign(group);
    for (const group of cluster.groups) await cluster.waitForLeader(group);
    return cluster;
  }

  /**
   * Suspends every member's ticks (no heartbeat, election or lease tick) until the returned
   * function is called: a test counting the messages of a request sees only the request's.
   */
  holdTicks(): () => void {
    this.ticksHeld = true;
    return () => {
      this.ticksHeld = false;
    };
  }

  host(id: NodeId): RaftHost {
    const host = this.hosts.get(id);
    if (host === undefined) throw new Error(`member ${id} is not running`);
    return host;
  }

  async startMember(id: NodeId): Promise<RaftHost> {
    const o = this.options;
    const host = new RaftHost({
      self: id,
      members: this.members,
      dataDir: join(this.root, id),
      tickMs: o.tickMs ?? 5,
      electionTicks: o.electionTicks ?? 10,
      heartbeatTicks: o.heartbeatTicks ?? 2,
      snapshotEntries: o.snapshotEntries ?? 0,
      compactionOverheadEntries: o.compactionOverheadEntries ?? 50,
      ...(o.snapshotBytes === undefined ? {} : { snapshotBytes: o.snapshotBytes }),
      ...(o.raftLogMaxBytes === undefined ? {} : { raftLogMaxBytes: o.raftLogMaxBytes }),
      ...(o.raftLogBudgetBytes === undefined ? {} : { raftLogBudgetBytes: o.raftLogBudgetBytes }),
      ...(o.openStorage === undefined ? {} : { openStorage: o.openStorage(id, join(this.root, id)) }),
      clock: this.clock,
      scheduler: this.scheduler,
      transport: o.transport?.(id) ?? this.network.transport(id),
      requestTimeoutMs: o.requestTimeoutMs ?? 3000,
      onFatal: (error) => this.fatalErrors.push({ id, error }),
      leaderBalanceTicks: o.leaderBalanceTicks ?? 0,
    });
    await host.start();
    for (const group of this.groups) await host.addGroup(group, o.stateMachine(id, group), o.groupOptions);
    this.hosts.set(id, host);
    return host;
  }

  /** Closes a member's host (a clean stop; its data dir stays for a restart). */
  async stopMember(id: NodeId): Promise<void> {
    const host = this.hosts.get(id);
    this.hosts.delete(id);
    await host?.close();
  }

  /** The leader all running members agree on, or undefined. */
  leader(group: number): NodeId | undefined {
    let leader: NodeId | undefined;
    for (const host of this.hosts.values()) {
      const status = host.status(group).raft;
      if (status.leader === null) return undefined;
      if (leader !== undefined && leader !== status.leader) return undefined;
      leader = status.leader;
    }
    return leader !== undefined && this.hosts.has(leader) ? leader : undefined;
  }

  async waitForLeader(group: number, timeoutMs = 5000): Promise<NodeId> {
    await waitFor(() => this.leader(group) !== undefined, `a leader of group ${group}`, timeoutMs);
    return this.leader(group)!;
  }

  follower(group: number): NodeId {
    const leader = this.leader(group);
    const follower = [...this.hosts.keys()].find((id) => id !== leader);
    if (follower === undefined) throw new Error("no follower running");
    return follower;
  }

  async close(): Promise<void> {
    for (const id of [...this.hosts.keys()]) await this.stopMember(id);
    await rm(this.root, { recursive: true, force: true });
  }
}

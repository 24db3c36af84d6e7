import type { DkvError } from "../errors.ts";
import type { GroupStatus, RaftHostObserver } from "../raft/host/types.ts";
import type { FrameHeader } from "../rpc/protocol/frame.ts";
import { wireOpNameByCode } from "../rpc/protocol/types.ts";
import type { ConnectionObserver, RequestObserver } from "../rpc/server/index.ts";
import {
  type Counter,
  type CounterChild,
  type GaugeChild,
  type GaugeSample,
  type Histogram,
  type HistogramChild,
  MetricsRegistry,
} from "./registry.ts";

/** Op codes fit in u16; the wire's ops are all below this, larger ones share one slot. */
const OP_SLOTS = 64;
const OK_CODE = "OK";

interface RequestSlot {
  count: CounterChild;
  latency: HistogramChild;
}

interface GroupSlot {
  proposals: CounterChild;
  fsync: HistogramChild;
}

/**
 * The metrics of one dkv node and the observers that feed them. Label sets are resolved
 * on first use into slots indexed by number (op code, result code, group id), so an
 * observation after that is an array or map lookup and a few additions.
 */
export class NodeMetrics implements RaftHostObserver, RequestObserver, ConnectionObserver {
  readonly registry = new MetricsRegistry();
  private readonly requests: Counter;
  private readonly requestLatency: Histogram;
  /** [op slot] → result code → slot. */
  private readonly requestSlots: Map<string, RequestSlot>[] = [];
  private readonly proposals: Counter;
  private readonly walFsync: Histogram;
  private readonly snapshots: Counter;
  private readonly snapshotDuration: Histogram;
  private readonly groupSlots = new Map<number, GroupSlot>();
  private readonly connections: GaugeChild;
  private readonly connectionsAccepted: CounterChild;
  private groupStatus: () => readonly (GroupStatus & { applyRules?: number })[] = () => [];

  constructor() {
    const r = this.registry;
    this.requests = r.counter("dkv_requests_total", "Requests answered, by operation and result code", [
      "op",
      "code",
    ]);
    this.requestLatency = r.histogram(
      "dkv_request_duration_seconds",
      "Time from taking a request to sending its reply, by operation and result code",
      ["op", "code"],
    );
    this.connections = r.gauge("dkv_connections", "Client connections open (tcp and unix)").labels();
    this.connectionsAccepted = r
      .counter("dkv_connections_accepted_total", "Client connections accepted (tcp and unix)")
      .labels();
    this.proposals = r.counter(
      "dkv_raft_proposals_total",
      "Proposals this member's Raft core accepted as leader, per shard",
      ["shard"],
    );
    this.walFsync = r.histogram(
      "dkv_raft_wal_fsync_duration_seconds",
      "Wait for a Ready's entries and hard state to be durable (WAL write and fsync, group commit), per shard",
      ["shard"],
    );
    this.snapshots = r.counter(
      "dkv_raft_snapshots_total",
      'Raft snapshots saved here ("save") or installed from a leader ("install"), per shard and result',
      ["shard", "kind", "result"],
    );
    this.snapshotDuration = r.histogram(
      "dkv_raft_snapshot_duration_seconds",
      "Time to write a Raft snapshot to disk, per shard and kind",
      ["shard", "kind"],
    );
    const perGroup = (
      name: string,
      help: string,
      value: (status: GroupStatus & { applyRules?: number }) => number,
    ) =>
      r.collected(name, help, ["shard"], () =>
        this.groupStatus().map((s): GaugeSample => ({ labels: [String(s.groupId)], value: value(s) })),
      );
    perGroup("dkv_raft_term", "Current Raft term, per shard", (s) => s.raft.term);
    perGroup("dkv_raft_is_leader", "1 when this member leads the shard's group", (s) =>
      s.raft.role === "leader" ? 1 : 0,
    );
    perGroup("dkv_raft_has_leader", "1 when this member knows a leader of the shard's group", (s) =>
      s.raft.leader === null ? 0 : 1,
    );
    perGroup("dkv_raft_commit_index", "Highest log index known committed, per shard", (s) => s.raft.commit);
    perGroup(
      "dkv_raft_applied_index",
      "Highest log index applied to the state machine, per shard",
      (s) => s.appliedIndex,
    );
    perGroup(
      "dkv_apply_rules",
      "Apply rules in force on the shard (raised in the log once every member runs a release implementing them)",
      (s) => s.applyRules ?? 1,
    );
    perGroup("dkv_raft_last_index", "Last index in this member's log, per shard", (s) => s.raft.lastIndex);
    perGroup(
      "dkv_raft_snapshot_index",
      "Index of the latest snapshot saved here, per shard",
      (s) => s.snapshotIndex,
    );
    r.collected(
      "dkv_raft_leader",
      "The member this member believes leads the shard (value 1)",
      ["shard", "leader"],
      () =>
        this.groupStatus()
          .filter((s) => s.raft.leader !== null)
          .map((s): GaugeSample => ({ labels: [String(s.groupId), s.raft.leader ?? ""], value: 1 })),
    );
    r.collected(
      "dkv_process_memory_bytes",
      "Process memory by kind (rss, heap_total, heap_used, external)",
      ["kind"],
      () => {
        const usage = process.memoryUsage();
        return [
          { labels: ["rss"], value: usage.rss },
          { labels: ["heap_total"], value: usage.heapTotal },
          { labels: ["heap_used"], value: usage.heapUsed },
          { labels: ["external"], value: usage.external },
        ];
      },
    );
    const startedAtSeconds = Date.now() / 1000;
    r.collected("dkv_process_start_time_seconds", "When the process started (Unix time)", [], () => [
      { labels: [], value: startedAtSeconds },
    ]);
  }

  /** Where the per-shard Raft gauges are read from at scrape time. */
  watchGroups(status: () => readonly (GroupStatus & { applyRules?: number })[]): void {
    this.groupStatus = status;
  }

  // ---- RequestObserver ----

  replied(header: FrameHeader, error: DkvError | undefined, startMs: number): void {
    const seconds = (performance.now() - startMs) / 1000;
    const slot = this.requestSlot(header.op, error === undefined ? OK_CODE : error.code);
    slot.count.inc();
    slot.latency.observe(seconds);
  }

  private requestSlot(op: number, code: string): RequestSlot {
    const index = Math.min(op, OP_SLOTS);
    let byCode = this.requestSlots[index];
    if (byCode === undefined) {
      byCode = new Map();
      this.requestSlots[index] = byCode;
    }
    let slot = byCode.get(code);
    if (slot === undefined) {
      const name = (op < OP_SLOTS ? wireOpNameByCode(op) : undefined) ?? "unknown";
      slot = { count: this.requests.labels(name, code), latency: this.requestLatency.labels(name, code) };
      byCode.set(code, slot);
    }
    return slot;
  }

  // ---- ConnectionObserver ----

  connectionOpened(): void {
    this.connections.inc();
    this.connectionsAccepted.inc();
  }

  connectionClosed(): void {
    this.connections.dec();
  }

  // ---- RaftHostObserver ----

  proposed(groupId: number): void {
    this.group(groupId).proposals.inc();
  }

  walSynced(groupId: number, ms: number): void {
    this.group(groupId).fsync.observe(ms / 1000);
  }

  snapshotDone(groupId: number, kind: "save" | "install", ms: number, ok: boolean): void {
    // Rare (one per thousands of entries): resolving labels here costs nothing that matters.
    const shard = String(groupId);
    this.snapshots.labels(shard, kind, ok ? "ok" : "failed").inc();
    if (ok) this.snapshotDuration.labels(shard, kind).observe(ms / 1000);
  }

  private group(groupId: number): GroupSlot {
    let slot = this.groupSlots.get(groupId);
    if (slot === undefined) {
      const shard = String(groupId);
      slot = { proposals: this.proposals.labels(shard), fsync: this.walFsync.labels(shard) };
      this.groupSlots.set(groupId, slot);
    }
    return slot;
  }
}

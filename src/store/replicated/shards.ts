import { type Clock, systemClock } from "../../clock.ts";
import { AUTO_PROMOTE_LAG_ENTRIES_DEFAULT, EXPIRY_TICK_MS_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import { LockManager } from "../../lockmgr/lock-manager.ts";
import { readLeaseMs } from "../../raft/core/reads.ts";
import type { NodeId, RaftLogger } from "../../raft/core/types.ts";
import { ClusterMembership, MEMBERSHIP_GROUP_ID } from "../../raft/host/membership.ts";
import { bootstrapConf, loadMembershipSeed } from "../../raft/host/membership-seed.ts";
import type { MembershipView } from "../../raft/host/membership-types.ts";
import { RaftHost } from "../../raft/host/raft-host.ts";
import type { GroupStatus, RaftHostObserver } from "../../raft/host/types.ts";
import type { TcpNodeTransportOptions } from "../../raft/transport/options.ts";
import { TcpNodeTransport } from "../../raft/transport/tcp-transport.ts";
import type { NodeTransport } from "../../raft/transport/types.ts";
import { SharedTicks } from "../purge-loop.ts";
import type { StoreLimits } from "../types.ts";
import type { WatchHubOptions } from "../watch.ts";
import { APPLY_RULES_VERSION, ApplyRulesMonitor } from "./apply-rules.ts";
import { DStore } from "./dstore.ts";
import { type DedupOptions, DStoreStateMachine } from "./state-machine.ts";

export type ReplicatedShardType = "dstore" | "lockmgr(dstore)";

/**
 * What `dkv serve` knows: its flags, for the replicated shards only, resolved once by
 * resolveNodeOptions (src/config/node-options.ts): taken as they are, not re-defaulted or
 * re-checked here (the RaftHost checks its own config at construction). A library caller
 * starts from REPLICATED_TUNING_DEFAULT (src/config/defaults.ts).
 */
export interface ReplicatedShardsConfig {
  /** --replica-id: this member's id, a key of clusterMembers. */
  replicaId: NodeId;
  /** --cluster-members: every member's id → "host:port" of its node transport. */
  clusterMembers: ReadonlyMap<NodeId, string>;
  /** --data-dir: each shard's Raft log and snapshots go to `<dataDir>/group-<shard id>/`. */
  dataDir: string;
  /** The dstore and lockmgr(dstore) shards of --shards; every member must list the same. */
  shards: readonly { id: number; type: ReplicatedShardType }[];
  /** --rtt-millisecond: the Raft tick. */
  rttMs: number;
  /** --election-rtt-factor: election timeout in ticks. */
  electionRttFactor: number;
  /** --heartbeat-rtt-factor: heartbeat interval in ticks. */
  heartbeatRttFactor: number;
  /** --snapshot-entries: snapshot every N applied entries (0: never). */
  snapshotEntries: number;
  /** --compaction-overhead: entries kept behind a snapshot. */
  compactionOverheadEntries: number;
  /** --leader-balance-interval in ms: spread leaders over the members (raft/host/leader-balance.ts); 0 or absent: off. */
  leaderBalanceIntervalMs?: number;
  /** --raft-log-gather-turns (raft/storage/group-commit.ts); absent: its default. */
  logGatherTurns?: number;
  /** --snapshot-bytes: also snapshot once the log applied since the last one holds N bytes. */
  snapshotBytes: number;
  /** --raft-log-max-bytes: bound on each group's in-memory log (0: none). */
  raftLogMaxBytes: number;
  /** --raft-log-budget-bytes: bound on all shards' logs together (raft/host/log-budget.ts); absent: off. */
  raftLogBudgetBytes?: number;
  /** --read-lease: leader lease reads (RaftHostConfig.readLease). Default false. */
  readLease?: boolean;
  /** --timeout: deadline of one store call, retries included, in ms. */
  requestTimeoutMs: number;
  limits?: Partial<StoreLimits>;
  dedup?: Partial<DedupOptions>;
  /** Watch history, per-watcher buffer and progress interval of every shard. */
  watch?: Partial<WatchHubOptions>;
  /** Stamps log entries (the leader's clock decides TTLs). Default the system clock. */
  clock?: Clock;
  logger?: RaftLogger;
  /** The node transport; by default `makeTransport`'s, or a TcpNodeTransport listening on this member's address. */
  transport?: NodeTransport;
  /** Makes the node transport once the member list is known (this member's address and its peers). */
  makeTransport?: (listen: string, peers: ReadonlyMap<NodeId, string>) => NodeTransport;
  /** A disk write failed or an invariant broke: by default log it and exit the process (status 70). */
  onFatal?: (error: Error) => void;
  /** Peer-link security of the default transport: cluster id, mutual TLS, --insecure. */
  peerSecurity?: Pick<TcpNodeTransportOptions, "clusterId" | "insecure" | "tls">;
  /** Metrics hooks of the Raft host. */
  observer?: RaftHostObserver;
  /**
   * The apply rules this member implements and advertises (apply-rules.ts). Default
   * APPLY_RULES_VERSION; tests inject a lower one to play a member of an older release.
   */
  applyRulesVersion?: number;
  /** Cluster membership: --join, --auto-promote-lag, --auto-promote (see raft/host/membership.ts). */
  membership?: {
    /** --join: fetches the membership from the running cluster (this member's data dir is new). */
    join?: () => Promise<MembershipView>;
    autoPromoteLagEntries?: number;
    autoPromote?: boolean;
    /** --cluster-members was given (not the embedded default): warn when it differs from the replicated list. */
    flagsGiven?: boolean;
  };
}

export interface ReplicatedShard {
  id: number;
  type: ReplicatedShardType;
  store: DStore;
  /** Present for lockmgr(dstore) shards. */
  locks: LockManager | undefined;
}

export interface ReplicatedShardStatus extends GroupStatus {
  type: ReplicatedShardType;
  /** The apply rules in force on the shard (apply-rules.ts). */
  applyRules: number;
}

export interface ReplicatedShards {
  readonly host: RaftHost;
  /** The apply rules in force on each shard (apply-rules.ts), by shard id. */
  rulesVersion(shard: number): number;
  /** Cluster-wide membership (`dkv cluster add|promote|remove|transfer-leader`). */
  readonly membership: ClusterMembership;
  readonly shards: ReadonlyMap<number, ReplicatedShard>;
  /** Per shard: leader, term, commit and applied index, members and their state. */
  status(): ReplicatedShardStatus[];
  /** Stops the Raft groups (failing waiting requests), flushes storage, closes the transport. */
  close(): Promise<void>;
}

/**
 * --join, refusing a member whose replicated shards differ from the cluster's: every member
 * is added to every group the cluster runs, so a shard it does not run would never catch
 * up (the cluster stays DEGRADED), and one the cluster lacks would have no other member.
 * An answer without `shards` (an older member) is taken as it is.
 */
function joinChecked(
  join: () => Promise<MembershipView>,
  shards: readonly { id: number; type: string }[],
): () => Promise<MembershipView> {
  return async () => {
    const view = await join();
    if (view.shards === undefined) return view;
    const cluster = [...view.shards].sort((a, b) => a - b);
    const mine = shards.map((shard) => shard.id).sort((a, b) => a - b);
    if (cluster.join(",") !== mine.join(",")) {
      throw new DkvError(
        "USAGE",
        `--join: the cluster runs replicated shards ${cluster.join(", ") || "none"}, but --shards gives this member ${mine.join(", ") || "none"}; ` +
          "start it with the same replicated shards (ids and types) as the other members",
      );
    }
    return view;
  };
}

/**
 * Starts this member's side of every replicated shard: one RaftHost (one transport, one
 * tick) with one Raft group per shard. A one-member cluster elects itself at once.
 */
export async function startReplicatedShards(config: ReplicatedShardsConfig): Promise<ReplicatedShards> {
  if (config.shards.some((shard) => shard.id === MEMBERSHIP_GROUP_ID)) {
    throw new DkvError(
      "USAGE",
      `shard id ${MEMBERSHIP_GROUP_ID} is reserved for the cluster's membership group; give the replicated shard another id`,
    );
  }
  const logger: RaftLogger = config.logger ?? { debug() {}, info() {}, warn() {} };
  // Membership from the data dir once it exists; from the cluster (--join) or the flags only at first start.
  const seed = await loadMembershipSeed({
    dataDir: config.dataDir,
    self: config.replicaId,
    flagMembers: config.clusterMembers,
    ...(config.membership?.join === undefined
      ? {}
      : { join: joinChecked(config.membership.join, config.shards) }),
    logger: logger,
  });
  const clusterMembers = seed.members;
  const listen = clusterMembers.get(config.replicaId);
  if (listen === undefined) {
    throw new DkvError(
      "USAGE",
      `--replica-id "${config.replicaId}" is not in --cluster-members (${[...clusterMembers.keys()].join(", ") || "empty"}); add it, e.g. --cluster-members "${config.replicaId}=127.0.0.1:63001"`,
    );
  }
  const { rttMs, requestTimeoutMs } = config;
  const electionTicks = config.electionRttFactor;
  const heartbeatTicks = config.heartbeatRttFactor;
  if (config.readLease === true && readLeaseMs(rttMs, electionTicks) <= 0) {
    throw new DkvError(
      "USAGE",
      `--read-lease on needs an election timeout of at least 3 ticks to leave room for a lease; --election-rtt-factor ${electionTicks} leaves none: raise it, or run --read-lease off`,
    );
  }
  const peers = new Map([...clusterMembers].filter(([id]) => id !== config.replicaId));
  // The member list is known only now (data dir, --join or flags), so the transport is made here.
  const transport =
    config.transport ??
    config.makeTransport?.(listen, peers) ??
    new TcpNodeTransport({
      ...config.peerSecurity,
      self: config.replicaId,
      listen,
      peers,
      ...(config.logger === undefined ? {} : { logger: config.logger }),
    });
  const host = new RaftHost({
    self: config.replicaId,
    members: clusterMembers,
    bootstrapConf: bootstrapConf(seed),
    dataDir: config.dataDir,
    tickMs: rttMs,
    electionTicks,
    heartbeatTicks,
    snapshotEntries: config.snapshotEntries,
    compactionOverheadEntries: config.compactionOverheadEntries,
    leaderBalanceTicks: Math.ceil((config.leaderBalanceIntervalMs ?? 0) / rttMs),
    logGatherTurns: config.logGatherTurns,
    snapshotBytes: config.snapshotBytes,
    raftLogMaxBytes: config.raftLogMaxBytes,
    raftLogBudgetBytes: config.raftLogBudgetBytes ?? 0,
    readLease: config.readLease ?? false,
    clock: config.clock ?? systemClock,
    transport,
    requestTimeoutMs,
    onFatal: config.onFatal ?? exitOnFatal,
    ...(config.logger === undefined ? {} : { logger: config.logger }),
    ...(config.observer === undefined ? {} : { observer: config.observer }),
  });
  const applyRulesVersion = config.applyRulesVersion ?? APPLY_RULES_VERSION;
  const membership = new ClusterMembership({
    host,
    transport,
    self: config.replicaId,
    dataDir: config.dataDir,
    seed,
    flagMembers: config.membership?.flagsGiven === true ? config.clusterMembers : undefined,
    autoPromoteLagEntries: config.membership?.autoPromoteLagEntries ?? AUTO_PROMOTE_LAG_ENTRIES_DEFAULT,
    autoPromote: config.membership?.autoPromote ?? true,
    tickMs: rttMs,
    electionTicks,
    requestTimeoutMs,
    applyRulesVersion,
    logger: logger,
  });
  const shards = new Map<number, ReplicatedShard>();
  const machines = new Map<number, DStoreStateMachine>();
  // Each shard's leader raises its apply rules once every member advertises this
  // member's; the rules in force (restored from disk, raised by the log) refuse members
  // below them from the entry on.
  const rulesMonitor = new ApplyRulesMonitor(
    host,
    machines,
    membership,
    applyRulesVersion,
    requestTimeoutMs,
    logger,
  );
  let rulesTimer: ReturnType<typeof setInterval> | undefined;
  // One expiry timer for every dstore of this member, not one per shard.
  const expiryTicks = new SharedTicks(config.clock ?? systemClock, EXPIRY_TICK_MS_DEFAULT);
  try {
    // Listening first: peers' messages for a group not yet opened are dropped and resent.
    await host.start();
    await membership.start();
    for (const spec of config.shards) {
      const machine = new DStoreStateMachine(config.dedup, config.limits, config.watch, applyRulesVersion);
      machines.set(spec.id, machine);
      machine.onRulesChange = () => rulesMonitor.updateInForce();
      await host.addGroup(spec.id, machine, { validateProposal: (bytes) => machine.validateProposal(bytes) });
      const store = new DStore(host, spec.id, {
        timeoutMs: requestTimeoutMs,
        expiryTicks,
        ...(config.clock === undefined ? {} : { clock: config.clock }),
        ...(config.limits === undefined ? {} : { limits: config.limits }),
      });
      const locks =
        spec.type === "lockmgr(dstore)"
          ? new LockManager(store, config.clock === undefined ? {} : { clock: config.clock })
          : undefined;
      shards.set(spec.id, { id: spec.id, type: spec.type, store, locks });
    }
    rulesMonitor.check();
    rulesTimer = setInterval(() => rulesMonitor.check(), RULES_CHECK_INTERVAL_MS);
    rulesTimer.unref?.();
  } catch (error) {
    if (rulesTimer !== undefined) clearInterval(rulesTimer);
    await membership.close().catch(() => {});
    await host.close().catch(() => {});
    throw error;
  }
  return {
    host,
    membership,
    shards,
    rulesVersion: (shard) => machines.get(shard)?.rulesVersion ?? 1,
    status: () =>
      [...shards.values()].map((shard) => ({
        ...host.status(shard.id),
        type: shard.type,
        applyRules: machines.get(shard.id)?.rulesVersion ?? 1,
      })),
    close: async () => {
      clearInterval(rulesTimer);
      for (const shard of shards.values()) await shard.store.close();
      await membership.close();
      await host.close();
    },
  };
}

/** How often each shard's leader looks whether its apply rules can be raised (apply-rules.ts). */
const RULES_CHECK_INTERVAL_MS = 1_000;

/** Exit status after a fatal host error (EX_SOFTWARE): a supervisor should restart the member. */
const FATAL_EXIT_CODE = 70;

/** Production's answer to a fatal host error: say what happened and what to do, then exit. */
export function exitOnFatal(error: Error): void {
  console.error(`dkv: fatal: ${error.message}`);
  process.exit(FATAL_EXIT_CODE);
}

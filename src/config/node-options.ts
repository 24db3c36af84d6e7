import { DkvError } from "../errors.ts";
import type { ClientSecuritySettings } from "../rpc/client/tls-connect.ts";
import {
  type SerializerName,
  serializerNames,
  type TransportName,
  transportNames,
} from "../rpc/protocol/types.ts";
import type { ClientListenerSecurityFlags } from "../server/client-security.ts";
import type { StoreLimits } from "../store/types.ts";
import {
  assertDeclared,
  NODE_FRAME_BYTES_MAX_DEFAULT,
  NODE_FRAME_OVERHEAD_BYTES,
  NODE_QUEUE_BYTES_MAX_DEFAULT,
  SHUTDOWN_GRACE_MS,
  WATCH_HISTORY_BYTES_MIN,
} from "./defaults.ts";
import type { PeerSecurityFlags } from "./peer-security-options.ts";
import {
  defaultEndpointFor,
  LOG_LEVELS,
  type LogLevelName,
  type OptionValues,
  type serveOptions,
} from "./schema.ts";
import {
  isReplicated,
  parsePeerAddressOverrides,
  parseShardSpecs,
  resolveCluster,
  type ShardSpec,
} from "./shards.ts";

/** `dkv serve`'s flags as the parser returns them (defaults filled in, bounds checked). */
export type ServeOptionValues = OptionValues<typeof serveOptions>;

/** Where the RPC server listens and how it answers. */
export interface RpcListenOptions {
  readonly transport: TransportName;
  /** "host:port" (port 0: any free port) or a unix socket path; the transport's default when not given. */
  readonly endpoint: string;
  readonly serializer: SerializerName;
  readonly maxFrameBytes: number;
  /** Server-side deadline of one request. */
  readonly requestTimeoutMs: number;
  /** How long a stopping server waits for in-flight requests. */
  readonly drainTimeoutMs: number;
  /** TLS, --auth-file, connection bounds and --insecure of the client listener (files are read by startNode). */
  readonly security: Readonly<ClientListenerSecurityFlags>;
}

/** The Raft side of a node: present only when a dstore or lockmgr(dstore) shard is served. */
export interface RaftNodeOptions {
  readonly replicaId: string;
  /** Every member's id → node transport "host:port"; this member's own address is where it listens. */
  readonly members: ReadonlyMap<string, string>;
  /** True when --cluster-members was empty: a one-member cluster on a free loopback port. */
  readonly embedded: boolean;
  /** Each group keeps its log and snapshots in `dataDir/group-<shard id>/` (as given, not yet resolved). */
  readonly dataDir: string;
  readonly rttMs: number;
  readonly electionRttFactor: number;
  readonly heartbeatRttFactor: number;
  readonly snapshotEntries: number;
  readonly compactionOverheadEntries: number;
  /** --leader-balance-interval in ms (0: off). */
  readonly leaderBalanceIntervalMs: number;
  /** --raft-log-gather-turns: the shared log's gather (raft/storage/group-commit.ts). */
  readonly logGatherTurns: number;
  /** --snapshot-bytes, --raft-log-max-bytes: each group's in-memory log bounded by bytes. */
  readonly snapshotBytes: number;
  readonly raftLogMaxBytes: number;
  /** --raft-log-budget-bytes: all groups' logs together (raft/host/log-budget.ts). */
  readonly raftLogBudgetBytes: number;
  /** --read-lease: leader lease reads instead of a ReadIndex round per read batch. */
  readonly readLease: boolean;
  /** Deadline of one replicated store call, retries included. */
  readonly requestTimeoutMs: number;
  /** --dedup-retention: how long, in log time, each dstore shard remembers a write's request id. */
  readonly dedupRetentionMs: number;
  /** Largest node transport frame: holds one largest entry (key + value + framing). */
  readonly nodeFrameBytesMax: number;
  /** Bytes queued per peer: at least one largest frame. */
  readonly nodeQueueBytesMax: number;
  /** --join: client endpoints of current members, asked for the membership at a first start. */
  readonly join: readonly string[] | undefined;
  /** --cacert, --cert, --key, --insecure-skip-tls-verify, --token(-file) of the --join request (files are read by startNode). */
  readonly joinSecurity: Readonly<ClientSecuritySettings>;
  /** --peer-address-override: id → the address this member dials it at instead of the replicated one. */
  readonly peerAddressOverrides: ReadonlyMap<string, string>;
  /** --auto-promote-lag, --auto-promote */
  readonly autoPromoteLagEntries: number;
  readonly autoPromote: boolean;
  /** --cluster-id, --insecure and the --peer-*-file flags (files are loaded by startNode). */
  readonly peerSecurity: Readonly<PeerSecurityFlags>;
}

/**
 * Everything a node needs, resolved once at the edge and frozen: `startNode` and the
 * layers under it take these values as they are (no re-defaulting, no re-validation).
 * Others extend a node by adding a field here and one step in `startNode`.
 */
export interface NodeOptions {
  readonly shards: readonly ShardSpec[];
  readonly rpc: RpcListenOptions;
  readonly limits: Readonly<StoreLimits>;
  readonly raft: RaftNodeOptions | undefined;
  /** --metrics-endpoint ("" = off) and --slow-request-threshold (ms, 0 = off). */
  readonly ops: Readonly<{ metricsEndpoint: string; slowRequestThresholdMs: number }>;
  /** How long stopping may take before the node gives up waiting (the process then exits anyway). */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevelName;
  /**
   * --watch-history-bytes (each shard's share of --watch-history-total-bytes at most),
   * --watch-buffer-bytes, --watch-progress-interval, --watchers-per-connection.
   */
  readonly watch?: Readonly<WatchSettings>;
  /** --lock-queue-lease (ms) of every lock shard's blocked acquires. */
  readonly locks?: Readonly<{ queueLeaseMs: number }>;
}

/** The watch bounds of every shard of a node (see src/store/watch.ts). */
export interface WatchSettings {
  /** Each shard's history: the smaller of --watch-history-bytes and its share of the total. */
  historyBytesMax: number;
  bufferBytesMax: number;
  progressIntervalMs: number;
  watchersPerConnection: number;
}

function isOneOf<T extends string>(names: readonly T[], value: string): value is T {
  return (names as readonly string[]).includes(value);
}

/**
 * Resolves `dkv serve`'s parsed flags into NodeOptions: parses --shards and (only when a
 * replicated shard is served, as before) --replica-id / --cluster-members, fills the
 * transport's default endpoint, and checks the relations between tunables. Bad input is
 * a USAGE error that says what to change; nothing is touched on disk or network.
 */
export function resolveNodeOptions(values: ServeOptionValues): NodeOptions {
  // The parser already checked choices: a mismatch here is a schema bug, not bad input.
  assertDeclared(isOneOf(transportNames, values.transport), `transport choices drifted: ${values.transport}`);
  assertDeclared(
    isOneOf(serializerNames, values.serializer),
    `serializer choices drifted: ${values.serializer}`,
  );
  assertDeclared(
    isOneOf(LOG_LEVELS, values["log-level"]),
    `log level choices drifted: ${values["log-level"]}`,
  );
  const shards = Object.freeze(parseShardSpecs(values.shards).map((spec) => Object.freeze(spec)));
  const rpc: RpcListenOptions = Object.freeze({
    transport: values.transport,
    endpoint: values["transport-endpoint"] ?? defaultEndpointFor(values.transport),
    serializer: values.serializer,
    maxFrameBytes: values["max-frame-bytes"],
    requestTimeoutMs: values.timeout,
    drainTimeoutMs: values.timeout,
    security: Object.freeze({
      "cert-file": values["cert-file"],
      "key-file": values["key-file"],
      "trusted-ca-file": values["trusted-ca-file"],
      "client-cert-auth": values["client-cert-auth"],
      "auth-file": values["auth-file"],
      "max-client-connections": values["max-client-connections"],
      "client-idle-timeout": values["client-idle-timeout"],
      insecure: values.insecure,
    }),
  });
  const shutdownTimeoutMs = values.timeout + SHUTDOWN_GRACE_MS;
  // Stopping drains the RPC server first; the node's own deadline must leave it that time.
  assertDeclared(rpc.drainTimeoutMs < shutdownTimeoutMs, "the shutdown deadline leaves room to drain");
  return Object.freeze({
    shards,
    rpc,
    limits: Object.freeze({ maxKeyBytes: values["max-key-bytes"], maxValueBytes: values["max-value-bytes"] }),
    raft: shards.some(isReplicated) ? resolveRaft(values) : undefined,
    ops: Object.freeze({
      metricsEndpoint: values["metrics-endpoint"],
      slowRequestThresholdMs: values["slow-request-threshold"],
    }),
    shutdownTimeoutMs,
    logLevel: values["log-level"],
    watch: Object.freeze({
      historyBytesMax: shardHistoryBytes(
        values["watch-history-bytes"],
        values["watch-history-total-bytes"],
        shards.length,
      ),
      bufferBytesMax: values["watch-buffer-bytes"],
      progressIntervalMs: values["watch-progress-interval"],
      watchersPerConnection: values["watchers-per-connection"],
    }),
    locks: Object.freeze({ queueLeaseMs: values["lock-queue-lease"] }),
  });
}

/**
 * One shard's watch history: `perShardBytes`, or less when `shards` of that would pass
 * `totalBytes` (each then keeps an equal share, never under WATCH_HISTORY_BYTES_MIN).
 */
export function shardHistoryBytes(perShardBytes: number, totalBytes: number, shards: number): number {
  const share = Math.floor(totalBytes / Math.max(1, shards));
  return Math.max(WATCH_HISTORY_BYTES_MIN, Math.min(perShardBytes, share));
}

function resolveRaft(values: ServeOptionValues): RaftNodeOptions {
  const cluster = resolveCluster({
    replicaId: values["replica-id"],
    clusterMembers: values["cluster-members"],
  });
  const electionRttFactor = values["election-rtt-factor"];
  const heartbeatRttFactor = values["heartbeat-rtt-factor"];
  // A heartbeat must arrive within an election timeout, or followers depose a live leader.
  // Bounds are the parser's job (schema min/max); only relations are checked here.
  if (!(heartbeatRttFactor < electionRttFactor)) {
    throw new DkvError(
      "USAGE",
      `--election-rtt-factor (${electionRttFactor}) must be greater than --heartbeat-rtt-factor (${heartbeatRttFactor}), both whole numbers > 0`,
    );
  }
  const snapshotBytes = values["snapshot-bytes"];
  const raftLogMaxBytes = values["raft-log-max-bytes"];
  // The leader refuses writes at the bound until a snapshot compacts the log: snapshots by
  // bytes must come well before it, or writes would stall for good.
  if (raftLogMaxBytes > 0 && (snapshotBytes === 0 || snapshotBytes * 2 > raftLogMaxBytes)) {
    throw new DkvError(
      "USAGE",
      `--raft-log-max-bytes (${raftLogMaxBytes}) must be at least twice --snapshot-bytes (${snapshotBytes}, which must be > 0 then); raise the former, lower the latter, or set --raft-log-max-bytes 0 for no bound`,
    );
  }
  return Object.freeze({
    replicaId: cluster.replicaId,
    members: cluster.members,
    embedded: cluster.embedded,
    dataDir: values["data-dir"],
    rttMs: values["rtt-millisecond"],
    electionRttFactor,
    heartbeatRttFactor,
    snapshotEntries: values["snapshot-entries"],
    compactionOverheadEntries: values["compaction-overhead"],
    leaderBalanceIntervalMs: values["leader-balance-interval"],
    logGatherTurns: values["raft-log-gather-turns"],
    snapshotBytes,
    raftLogMaxBytes,
    raftLogBudgetBytes: values["raft-log-budget-bytes"],
    readLease: values["read-lease"] === "on",
    requestTimeoutMs: values.timeout,
    dedupRetentionMs: values["dedup-retention"],
    join: values.join.length === 0 ? undefined : Object.freeze([...values.join]),
    joinSecurity: Object.freeze({
      cacert: values.cacert,
      cert: values.cert,
      key: values.key,
      "insecure-skip-tls-verify": values["insecure-skip-tls-verify"],
      token: values.token,
      "token-file": values["token-file"],
    }),
    peerAddressOverrides: parsePeerAddressOverrides(values["peer-address-override"]),
    autoPromoteLagEntries: values["auto-promote-lag"],
    autoPromote: values["auto-promote"],
    peerSecurity: Object.freeze({
      clusterId: values["cluster-id"],
      insecure: values.insecure,
      peerCertFile: values["peer-cert-file"],
      peerKeyFile: values["peer-key-file"],
      peerTrustedCaFile: values["peer-trusted-ca-file"],
    }),
    ...nodeTransportBounds(values),
  });
}

/**
 * A Raft append carries whole entries: a node frame smaller than a largest key plus value
 * would leave such a write accepted by the leader but never replicated. The defaults hold
 * one (asserted in defaults.ts); larger --max-key-bytes / --max-value-bytes raise them.
 */
function nodeTransportBounds(values: ServeOptionValues): {
  nodeFrameBytesMax: number;
  nodeQueueBytesMax: number;
} {
  const entryBytesMax = values["max-key-bytes"] + values["max-value-bytes"] + NODE_FRAME_OVERHEAD_BYTES;
  const nodeFrameBytesMax = Math.max(NODE_FRAME_BYTES_MAX_DEFAULT, entryBytesMax);
  return { nodeFrameBytesMax, nodeQueueBytesMax: Math.max(NODE_QUEUE_BYTES_MAX_DEFAULT, nodeFrameBytesMax) };
}

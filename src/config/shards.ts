import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Clock } from "../clock.ts";
import { MapleDB } from "../db/maple/index.ts";
import { DkvError } from "../errors.ts";
import { LockManager } from "../lockmgr/lock-manager.ts";
import type { RaftLogger } from "../raft/core/types.ts";
import type { MembershipView } from "../raft/host/membership-types.ts";
import type { ClusterStatusReport, ShardHandler, ShardStatusReport } from "../rpc/server/index.ts";
import { LocalStore } from "../store/local.ts";
import {
  type ReplicatedShards,
  type ReplicatedShardType,
  startReplicatedShards,
} from "../store/replicated/shards.ts";
import type { StoreLimits } from "../store/types.ts";
import { replicatedShardHandler } from "./replicated-handlers.ts";

export const SHARD_TYPES = ["lstore", "dstore", "lockmgr(lstore)", "lockmgr(dstore)"] as const;
export type ShardType = (typeof SHARD_TYPES)[number];

export interface ShardSpec {
  readonly id: number;
  readonly type: ShardType;
}

/** What a server serves on one shard id. */
export type BuiltShard = ShardHandler;

const MAX_SHARD_ID = 0xffff_ffff;

function usage(message: string): DkvError {
  return new DkvError("USAGE", message);
}

/**
 * Parses `--shards`: a comma list of `ID=TYPE` (the Go seed's `ID:TYPE` too), e.g.
 * `100=lstore,200=lockmgr(lstore)`. Whitespace and case in the type are forgiven;
 * anything else wrong is a USAGE error that names the bad entry.
 */
export function parseShardSpecs(text: string): ShardSpec[] {
  const entries = text
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) {
    throw usage(
      `--shards is empty; give at least one ID=TYPE, e.g. --shards "100=lstore,200=lockmgr(lstore)".`,
    );
  }
  const specs: ShardSpec[] = [];
  const seen = new Set<number>();
  for (const entry of entries) {
    const separator = entry.search(/[=:]/);
    if (separator <= 0) {
      throw usage(`--shards entry "${entry}" is not ID=TYPE; write it like 100=lstore.`);
    }
    const idText = entry.slice(0, separator).trim();
    const typeText = entry
      .slice(separator + 1)
      .replace(/\s+/g, "")
      .toLowerCase();
    const id = Number(idText);
    if (!/^\d+$/.test(idText) || !Number.isSafeInteger(id) || id > MAX_SHARD_ID) {
      throw usage(
        `--shards entry "${entry}": the shard id must be a whole number from 0 to ${MAX_SHARD_ID}.`,
      );
    }
    if (!isShardType(typeText)) {
      throw usage(
        `--shards entry "${entry}": unknown type "${typeText}"; use one of ${SHARD_TYPES.join(", ")}.`,
      );
    }
    if (seen.has(id)) throw usage(`--shards lists shard ${id} twice; give each shard id once.`);
    seen.add(id);
    specs.push({ id, type: typeText });
  }
  return specs;
}

function isShardType(text: string): text is ShardType {
  return (SHARD_TYPES as readonly string[]).includes(text);
}

export function formatShardSpecs(specs: readonly ShardSpec[]): string {
  return specs.map((spec) => `${spec.id}=${spec.type}`).join(",");
}

export interface BuildShardsOptions {
  clock?: Clock;
  limits?: Partial<StoreLimits>;
}

/**
 * Builds the local stores and lock managers of a server: each `lstore` shard gets its own
 * LocalStore; each `lockmgr(lstore)` a LockManager over a LocalStore of its own, so lock
 * keys never mix with data keys. Replicated types need a Raft host: use `startShards`.
 */
export function buildShards(
  specs: readonly ShardSpec[],
  options: BuildShardsOptions = {},
): Map<number, BuiltShard> {
  const replicated = specs.filter(isReplicated);
  if (replicated.length > 0) {
    throw usage(
      `--shards: ${formatShardSpecs(replicated)} are replicated shards; they need a Raft host, so start them with startShards (as \`dkv serve\` does).`,
    );
  }
  const shards = new Map<number, BuiltShard>();
  for (const spec of specs) {
    const store = new LocalStore({ db: new MapleDB(), clock: options.clock, limits: options.limits });
    shards.set(
      spec.id,
      spec.type === "lstore"
        ? { kind: "store", store }
        : { kind: "lock", locks: new LockManager(store, { clock: options.clock }), store },
    );
  }
  return shards;
}

/** Closes every store of a shard map (stops their background purges). */
export async function closeShards(shards: ReadonlyMap<number, BuiltShard>): Promise<void> {
  await Promise.all([...shards.values()].map((shard) => shard.store.close()));
}

export function isReplicated(spec: ShardSpec): spec is ShardSpec & { type: ReplicatedShardType } {
  return spec.type === "dstore" || spec.type === "lockmgr(dstore)";
}

// ---------------------------------------------------------------------------------------
// Replicated shards: the cluster flags of `dkv serve`
// ---------------------------------------------------------------------------------------

/** The member id of the embedded one-member cluster when --replica-id is not given. */
export const DEFAULT_REPLICA_ID = "node-1";
/** Where the embedded one-member cluster's node transport listens: nobody dials it, so any free port. */
export const EMBEDDED_RAFT_ADDRESS = "127.0.0.1:0";

/** The Raft side of `dkv serve`'s flags. */
export interface ClusterOptions {
  /** --replica-id; "" means DEFAULT_REPLICA_ID (embedded) or an error (with members). */
  replicaId: string;
  /** --cluster-members text, `ID=HOST:PORT,...`; "" runs a one-member cluster. */
  clusterMembers: string;
  dataDir: string;
  rttMs: number;
  electionRttFactor: number;
  heartbeatRttFactor: number;
  snapshotEntries: number;
  compactionOverheadEntries: number;
  /** Deadline of one replicated store call, retries included. */
  requestTimeoutMs: number;
  logger?: RaftLogger;
  /** --join: fetches the membership from a running cluster (a new member's first start). */
  join?: () => Promise<MembershipView>;
  /** --auto-promote-lag */
  autoPromoteLagEntries?: number;
  /** --auto-promote */
  autoPromote?: boolean;
}

const MEMBER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * Parses --cluster-members: `node-1=127.0.0.1:63001,node-2=...` (the seed's `ID:HOST:PORT`
 * is not accepted: the id would be ambiguous with the address). Every entry needs an id
 * and a host:port; ids and addresses must be unique.
 */
export function parseClusterMembers(text: string): Map<string, string> {
  const entries = text
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  const example =
    'e.g. --cluster-members "node-1=127.0.0.1:63001,node-2=127.0.0.1:63002,node-3=127.0.0.1:63003"';
  if (entries.length === 0)
    throw usage(`--cluster-members is empty; list every member as ID=HOST:PORT, ${example}.`);
  const members = new Map<string, string>();
  const addresses = new Set<string>();
  for (const entry of entries) {
    const separator = entry.indexOf("=");
    const id = entry.slice(0, Math.max(0, separator)).trim();
    const address = entry.slice(separator + 1).trim();
    if (separator <= 0 || !MEMBER_ID.test(id)) {
      throw usage(
        `--cluster-members entry "${entry}" is not ID=HOST:PORT with an id of letters, digits, '.', '_' or '-'; ${example}.`,
      );
    }
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    const host = address.slice(0, Math.max(0, address.lastIndexOf(":")));
    if (host.length === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw usage(
        `--cluster-members entry "${entry}": "${address}" is not HOST:PORT with a port from 1 to 65535 (peers must know where to dial); ${example}.`,
      );
    }
    if (members.has(id)) throw usage(`--cluster-members lists "${id}" twice; give each member once.`);
    if (addresses.has(address)) {
      throw usage(`--cluster-members gives ${address} to two members; each member needs its own address.`);
    }
    members.set(id, address);
    addresses.add(address);
  }
  return members;
}

/** --replica-id and --cluster-members resolved: who this member is and who its peers are. */
export function resolveCluster(options: Pick<ClusterOptions, "replicaId" | "clusterMembers">): {
  replicaId: string;
  members: Map<string, string>;
  embedded: boolean;
} {
  const replicaId = options.replicaId.trim();
  if (options.clusterMembers.trim() === "") {
    const id = replicaId === "" ? DEFAULT_REPLICA_ID : replicaId;
    if (!MEMBER_ID.test(id)) {
      throw usage(`--replica-id "${id}" must be letters, digits, '.', '_' or '-' (at most 63), e.g. node-1.`);
    }
    return { replicaId: id, members: new Map([[id, EMBEDDED_RAFT_ADDRESS]]), embedded: true };
  }
  const members = parseClusterMembers(options.clusterMembers);
  if (replicaId === "") {
    throw usage(
      `--cluster-members is set but --replica-id is not; say which member this server is, one of: ${[...members.keys()].join(", ")}.`,
    );
  }
  if (!members.has(replicaId)) {
    throw usage(
      `--replica-id "${replicaId}" is not in --cluster-members (${[...members.keys()].join(", ")}); use one of those ids or add this member to the list on every server.`,
    );
  }
  return { replicaId, members, embedded: false };
}

/** Creates the data directory and proves it writable now, so a bad path fails at start, not at the first write. */
export async function checkDataDir(dataDir: string): Promise<string> {
  const absolute = resolve(dataDir);
  const probe = join(absolute, `.dkv-write-check-${process.pid}`);
  try {
    await mkdir(absolute, { recursive: true });
    await writeFile(probe, "ok");
    await rm(probe, { force: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw usage(
      `--data-dir ${dataDir} is not usable (${reason}); pass a directory this user can create and write, e.g. --data-dir ./data/node-1.`,
    );
  }
  return absolute;
}

/** Every shard a server serves, local and replicated, ready for the RPC server. */
export interface ServedShards {
  readonly handlers: Map<number, ShardHandler>;
  /** Shard id → its type, for status output. */
  readonly shardTypes: ReadonlyMap<number, ShardType>;
  /** Present when any shard is replicated. */
  readonly replicated: ReplicatedShards | undefined;
  /** This member's id (present with replicated shards). */
  readonly replicaId: string | undefined;
  /** True when a one-member cluster was started because --cluster-members was empty. */
  readonly embedded: boolean;
  /** What the clusterStatus op answers. */
  status(): ClusterStatusReport;
  /** Answers the membership op; absent without replicated shards. */
  membership: ((requestJson: string) => Promise<string>) | undefined;
  /** Closes local stores and stops the Raft host (flushing its storage). */
  close(): Promise<void>;
}

/**
 * Starts every shard of `specs`: local ones in memory, replicated ones as Raft groups of
 * one RaftHost (all on this member's node transport). Without replicated shards the
 * cluster options are ignored and no data directory is touched.
 */
export async function startShards(
  specs: readonly ShardSpec[],
  options: BuildShardsOptions & { cluster?: ClusterOptions } = {},
): Promise<ServedShards> {
  const localSpecs = specs.filter((spec) => !isReplicated(spec));
  const replicatedSpecs = specs.filter(isReplicated);
  const handlers = buildShards(localSpecs, options);
  const shardTypes = new Map(specs.map((spec) => [spec.id, spec.type]));
  let replicated: ReplicatedShards | undefined;
  let replicaId: string | undefined;
  let embedded = false;
  if (replicatedSpecs.length > 0) {
    const cluster = options.cluster;
    if (cluster === undefined) {
      await closeShards(handlers);
      throw usage(
        `--shards ${formatShardSpecs(replicatedSpecs)} needs the cluster options (replica id, members, data dir).`,
      );
    }
    try {
      const resolved = resolveCluster(cluster);
      replicaId = resolved.replicaId;
      embedded = resolved.embedded && cluster.join === undefined;
      replicated = await startReplicatedShards({
        replicaId: resolved.replicaId,
        clusterMembers: resolved.members,
        dataDir: await checkDataDir(cluster.dataDir),
        shards: replicatedSpecs.map((spec) => ({ id: spec.id, type: spec.type })),
        rttMs: cluster.rttMs,
        electionRttFactor: cluster.electionRttFactor,
        heartbeatRttFactor: cluster.heartbeatRttFactor,
        snapshotEntries: cluster.snapshotEntries,
        compactionOverheadEntries: cluster.compactionOverheadEntries,
        requestTimeoutMs: cluster.requestTimeoutMs,
        membership: {
          ...(cluster.join === undefined ? {} : { join: cluster.join }),
          ...(cluster.autoPromoteLagEntries === undefined
            ? {}
            : { autoPromoteLagEntries: cluster.autoPromoteLagEntries }),
          ...(cluster.autoPromote === undefined ? {} : { autoPromote: cluster.autoPromote }),
          flagsGiven: !resolved.embedded,
        },
        ...(options.limits === undefined ? {} : { limits: options.limits }),
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        ...(cluster.logger === undefined ? {} : { logger: cluster.logger }),
      });
    } catch (error) {
      await closeShards(handlers);
      throw error;
    }
    for (const shard of replicated.shards.values()) {
      handlers.set(shard.id, replicatedShardHandler(shard, options.clock));
    }
  }
  const running = replicated;
  return {
    handlers,
    shardTypes,
    replicated,
    replicaId,
    embedded,
    status: () => clusterStatusOf(specs, running, replicaId ?? ""),
    membership: running === undefined ? undefined : (json) => running.membership.handle(json),
    close: async () => {
      await closeShards(new Map([...handlers].filter(([id]) => running?.shards.has(id) !== true)));
      await running?.close();
    },
  };
}

/** The clusterStatus report: replicated shards from their Raft group, local ones as local. */
function clusterStatusOf(
  specs: readonly ShardSpec[],
  replicated: ReplicatedShards | undefined,
  replicaId: string,
): ClusterStatusReport {
  const groups = new Map((replicated?.status() ?? []).map((status) => [status.groupId, status]));
  const shards: ShardStatusReport[] = specs.map((spec) => {
    const group = groups.get(spec.id);
    if (group === undefined) return { shard: spec.id, type: spec.type, replicated: false };
    return {
      shard: spec.id,
      type: spec.type,
      replicated: true,
      role: group.raft.role,
      leader: group.raft.leader,
      term: group.raft.term,
      commitIndex: group.raft.commit,
      appliedIndex: group.appliedIndex,
      lastIndex: group.raft.lastIndex,
      snapshotIndex: group.snapshotIndex,
      members: group.members.map((member) => ({
        ...member,
        address: member.address ?? null,
        ...(member.match === undefined ? {} : { lag: Math.max(0, group.raft.lastIndex - member.match) }),
      })),
    };
  });
  const membership = replicated?.membership.status();
  return membership === undefined ? { replicaId, shards } : { replicaId, shards, membership };
}

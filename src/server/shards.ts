import { type Clock, systemClock } from "../clock.ts";
import { formatShardSpecs, isReplicated, type ShardSpec } from "../config/shards.ts";
import { DkvError } from "../errors.ts";
import { LockManager, LockWaiters } from "../lockmgr/lock-manager.ts";
import { MEMBERSHIP_GROUP_ID } from "../raft/host/membership-types.ts";
import { attemptOriginOf } from "../rpc/server/dispatcher.ts";
import type { ClusterStatusReport, ShardHandler, ShardStatusReport } from "../rpc/server/index.ts";
import { LocalStore, lstoreEngine } from "../store/local.ts";
import type { ReplicatedShard, ReplicatedShards } from "../store/replicated/shards.ts";
import type { StoreLimits } from "../store/types.ts";
import type { WatchHubOptions } from "../store/watch.ts";

export interface LocalShardsOptions {
  clock?: Clock;
  limits?: Partial<StoreLimits>;
  watch?: Partial<WatchHubOptions>;
  /** --lock-queue-lease of the lock shards' blocked acquires (LockManager's default when left out). */
  queueLeaseMs?: number;
}

/**
 * Builds the local stores and lock managers of a server: each `lstore` shard gets its own
 * LocalStore; each `lockmgr(lstore)` a LockManager over a LocalStore of its own, so lock
 * keys never mix with data keys. Replicated types need a Raft host: start them with
 * `startNode`.
 */
export function buildShards(
  specs: readonly ShardSpec[],
  options: LocalShardsOptions = {},
): Map<number, ShardHandler> {
  const replicated = specs.filter(isReplicated);
  if (replicated.length > 0) {
    throw new DkvError(
      "USAGE",
      `--shards: ${formatShardSpecs(replicated)} are replicated shards; they need a Raft host, so start them with startNode (as \`dkv serve\` does).`,
    );
  }
  const shards = new Map<number, ShardHandler>();
  for (const spec of specs) {
    const store = new LocalStore({
      db: lstoreEngine(),
      clock: options.clock,
      limits: options.limits,
      ...(options.watch === undefined ? {} : { watch: options.watch }),
    });
    shards.set(
      spec.id,
      spec.type === "lstore"
        ? { kind: "store", store }
        : {
            kind: "lock",
            locks: new LockManager(store, { clock: options.clock, queueLeaseMs: options.queueLeaseMs }),
            store,
          },
    );
  }
  return shards;
}

/** Closes every store of a shard map (stops their background purges). */
export async function closeShards(shards: ReadonlyMap<number, ShardHandler>): Promise<void> {
  await Promise.all([...shards.values()].map((shard) => shard.store.close()));
}

/** Creates the data directory and proves it writable now, so a bad path fails at start, not at the first write. */
export async function checkDataDir(dataDir: string): Promise<string> {
  // Loaded only with a data dir (replicated shards): any node module costs a server of
  // lstore shards ~4-8 MiB of RSS.
  const [{ mkdir, rm, writeFile }, { join, resolve }] = await Promise.all([
    import("node:fs/promises"),
    import("node:path"),
  ]);
  if (dataDir.trim() === "") {
    // resolve("") is the working directory: the log and snapshots would land among other files.
    throw new DkvError(
      "USAGE",
      '--data-dir is empty (an unset variable, or DKV_DATA_DIR=""?); give a directory, e.g. --data-dir ./data/node-1, or leave the flag out for ./data',
    );
  }
  const absolute = resolve(dataDir);
  const probe = join(absolute, `.dkv-write-check-${process.pid}`);
  try {
    await mkdir(absolute, { recursive: true, mode: 0o700 });
    await writeFile(probe, "ok");
    await rm(probe, { force: true });
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `--data-dir ${dataDir} is not usable (${DkvError.from(error, "not-applied").message}); pass a directory this user can create and write, e.g. --data-dir ./data/node-1.`,
      { cause: error },
    );
  }
  return absolute;
}

/**
 * Compares the replicated groups a data dir holds (`group-N`) with `--shards`: a shard with
 * replicated data that `--shards` makes local (lstore, lockmgr(lstore)) would be served
 * empty from memory while its data sits on disk, so that is refused; one left out of
 * `--shards` is kept and not served, which is said in the returned warnings.
 */
export async function checkShardsOnDisk(
  dataDir: string,
  specs: readonly ShardSpec[],
): Promise<{ warnings: string[]; record: () => Promise<void> }> {
  const { readdir, readFile, rename, writeFile } = await import("node:fs/promises");
  const onDisk = (await readdir(dataDir))
    .map((name) => /^group-(\d+)$/.exec(name)?.[1])
    .filter((id): id is string => id !== undefined)
    .map(Number)
    .filter((id) => id !== MEMBERSHIP_GROUP_ID);
  const warnings: string[] = [];
  for (const id of onDisk.sort((a, b) => a - b)) {
    const spec = specs.find((candidate) => candidate.id === id);
    if (spec === undefined) {
      warnings.push(
        `${dataDir}/group-${id} holds replicated shard ${id}, which --shards leaves out: its data is kept, not served`,
      );
    } else if (!isReplicated(spec)) {
      throw new DkvError(
        "USAGE",
        `--shards makes shard ${id} ${spec.type}, but ${dataDir}/group-${id} holds its replicated data; ` +
          `start with the type it was created with (e.g. ${id}=dstore), or use another shard id or --data-dir`,
      );
    }
  }
  // The replicated types are recorded, so a dstore's keys are never served as a lock
  // manager's locks (or the other way round) after a restart with another --shards.
  const recordPath = `${dataDir}/${SHARD_TYPES_FILE}`;
  const recorded = parseShardTypes(await readFile(recordPath, "utf8").catch(() => undefined), recordPath);
  const record = new Map(recorded);
  for (const spec of specs.filter(isReplicated)) {
    const before = recorded.get(spec.id);
    // Only a group with data on disk holds its type: a start that failed before the group
    // was created must not keep a mistyped flag.
    if (before !== undefined && before !== spec.type && onDisk.includes(spec.id)) {
      throw new DkvError(
        "USAGE",
        `--shards makes shard ${spec.id} ${spec.type}, but ${dataDir}/group-${spec.id} was created as ${before}; ` +
          `start it as ${spec.id}=${before}, or use another shard id or --data-dir (its data would be read as the wrong kind)`,
      );
    }
    record.set(spec.id, spec.type);
  }
  // Written once the shards started: a start refused later (a --join refused, a port in
  // use) leaves the data dir as it found it.
  const write = async (): Promise<void> => {
    if (![...record].some(([id, type]) => recorded.get(id) !== type)) return;
    const text = `${JSON.stringify(Object.fromEntries([...record].sort(([a], [b]) => a - b)))}\n`;
    await writeFile(`${recordPath}.tmp`, text, { mode: 0o600 });
    await rename(`${recordPath}.tmp`, recordPath);
  };
  return { warnings, record: write };
}

/** The file in a data dir that records each replicated shard's type (`{"200":"dstore"}`). */
export const SHARD_TYPES_FILE = "shard-types.json";

/** The recorded types (empty when the file is missing); a damaged file is refused by name. */
function parseShardTypes(text: string | undefined, path: string): Map<number, string> {
  const types = new Map<number, string>();
  if (text === undefined) return types;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new DkvError(
      "CORRUPT",
      `${path} is not a JSON object of shard id to type; fix it (e.g. {"200":"dstore"}) or delete it (it is written again from --shards)`,
    );
  }
  for (const [id, type] of Object.entries(parsed)) {
    if (!/^[1-9]\d*$/.test(id) || typeof type !== "string") {
      throw new DkvError(
        "CORRUPT",
        `${path}: entry ${JSON.stringify(id)} is not a shard id with a type; fix or delete the file`,
      );
    }
    types.set(Number(id), type);
  }
  return types;
}

/**
 * The RPC handler of a dstore or lockmgr(dstore) shard. Reads go to the DStore (ReadIndex
 * on whichever member serves them); writes that carry a client id are served through
 * `forOrigin`, so the replicated state machine dedups a retry even when it reaches
 * another member than the first attempt.
 */
export function replicatedShardHandler(
  shard: ReplicatedShard,
  clock: Clock = systemClock,
  queueLeaseMs?: number,
): ShardHandler {
  const store = shard.store;
  if (shard.type === "dstore") {
    return {
      kind: "store",
      store,
      forOrigin: (origin) => ({ kind: "store", store: store.withOrigin(origin) }),
      originWrites: store,
    };
  }
  // One set of waiters for the shard: one watch per lock wakes the blocked acquires of every
  // request (their order is the replicated queue's, see store/lock-queue.ts).
  const waiters = new LockWaiters();
  return {
    kind: "lock",
    store,
    // Anonymous requests (human HTTP JSON): the DStore's own ids, random owner ids.
    locks: new LockManager(store, { clock, waiters, queueLeaseMs }),
    forOrigin: (origin) => {
      const view = store.withOrigin(origin);
      return {
        kind: "lock",
        store: view,
        // Release and refresh dedup under the request's origin; each claim of an acquire
        // under its attempt's own (the dispatcher supplies the owner id derived from origin).
        locks: new LockManager(view, {
          clock,
          waiters,
          queueLeaseMs,
          storeForAttempt: (attempt) => store.withOrigin(attemptOriginOf(origin, attempt)),
        }),
      };
    },
  };
}

/** The clusterStatus report: replicated shards from their Raft group, local ones as local. */
export function clusterStatusOf(
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
      applyRules: group.applyRules,
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

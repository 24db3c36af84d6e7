import type { Clock } from "../clock.ts";
import { MapleDB } from "../db/maple/index.ts";
import { DkvError } from "../errors.ts";
import { LockManager } from "../lockmgr/lock-manager.ts";
import type { ShardHandler } from "../rpc/server/index.ts";
import { LocalStore } from "../store/local.ts";
import type { StoreLimits } from "../store/types.ts";

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
 * Builds the stores and lock managers a server serves: each `lstore` shard gets its own
 * LocalStore; each `lockmgr(lstore)` a LockManager over a LocalStore of its own, so lock
 * keys never mix with data keys. The replicated types are refused until they exist.
 */
export function buildShards(
  specs: readonly ShardSpec[],
  options: BuildShardsOptions = {},
): Map<number, BuiltShard> {
  const replicated = specs.filter((spec) => spec.type === "dstore" || spec.type === "lockmgr(dstore)");
  if (replicated.length > 0) {
    throw usage(
      `--shards: ${formatShardSpecs(replicated)} needs the replicated store (dstore), which this dkv build does not have yet; ` +
        "it comes with the Raft issues. Use lstore or lockmgr(lstore) for now.",
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

import { DkvError } from "../errors.ts";
import { tryParseHostPort } from "../host-port.ts";
import type { ReplicatedShardType } from "../store/replicated/shards.ts";
import { EMBEDDED_RAFT_ADDRESS, REPLICA_ID_DEFAULT, SHARD_ID_MAX } from "./defaults.ts";

export const SHARD_TYPES = ["lstore", "dstore", "lockmgr(lstore)", "lockmgr(dstore)"] as const;
export type ShardType = (typeof SHARD_TYPES)[number];

export interface ShardSpec {
  readonly id: number;
  readonly type: ShardType;
}

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
    if (!/^\d+$/.test(idText) || !Number.isSafeInteger(id) || id > SHARD_ID_MAX) {
      throw usage(
        `--shards entry "${entry}": the shard id must be a whole number from 0 to ${SHARD_ID_MAX}.`,
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

export function isReplicated(spec: ShardSpec): spec is ShardSpec & { type: ReplicatedShardType } {
  return spec.type === "dstore" || spec.type === "lockmgr(dstore)";
}

// ---------------------------------------------------------------------------------------
// Replicated shards: the cluster flags of `dkv serve` (started by src/server/)
// ---------------------------------------------------------------------------------------

/** The member id of the embedded one-member cluster when --replica-id is not given. */
export const DEFAULT_REPLICA_ID = REPLICA_ID_DEFAULT;
export { EMBEDDED_RAFT_ADDRESS };

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
    if (tryParseHostPort(address, { portMin: 1 }) === undefined) {
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
export function resolveCluster(options: {
  /** --replica-id; "" means DEFAULT_REPLICA_ID (embedded) or an error (with members). */
  replicaId: string;
  /** --cluster-members text, `ID=HOST:PORT,...`; "" runs a one-member cluster. */
  clusterMembers: string;
}): {
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

/**
 * Parses --peer-address-override: `ID=HOST:PORT` entries (a list flag), each id once.
 * Unlike --cluster-members, two ids may share an address (one proxy may front several).
 */
export function parsePeerAddressOverrides(entries: readonly string[]): Map<string, string> {
  const example = 'e.g. --peer-address-override "node-2=127.0.0.1:7002,node-3=127.0.0.1:7003"';
  const overrides = new Map<string, string>();
  for (const entry of entries) {
    const separator = entry.indexOf("=");
    const id = entry.slice(0, Math.max(0, separator)).trim();
    const address = entry.slice(separator + 1).trim();
    if (separator <= 0 || !MEMBER_ID.test(id)) {
      throw usage(`--peer-address-override entry "${entry}" is not ID=HOST:PORT; ${example}.`);
    }
    if (tryParseHostPort(address, { portMin: 1 }) === undefined) {
      throw usage(
        `--peer-address-override entry "${entry}": "${address}" is not HOST:PORT with a port from 1 to 65535; ${example}.`,
      );
    }
    if (overrides.has(id)) throw usage(`--peer-address-override lists "${id}" twice; give each id once.`);
    overrides.set(id, address);
  }
  return overrides;
}

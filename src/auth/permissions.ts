import type { Message, WireOpName } from "../rpc/protocol/types.ts";

/** What a token may do; each role includes the ones before it. */
export type Role = "read" | "write" | "admin";

export const roles: readonly Role[] = ["read", "write", "admin"];

const roleRank: Record<Role, number> = { read: 0, write: 1, admin: 2 };

export function roleIncludes(held: Role, needed: Role): boolean {
  return roleRank[held] >= roleRank[needed];
}

/**
 * Which keys a request touches, for tokens scoped by key prefixes:
 * - `key`: one key; `keys`: several (e.g. a transaction);
 * - `prefix`: every key starting with it (a list or watch by prefix);
 * - `range`: keys in [from, to) (`to` "" = to the end of the keyspace);
 * - `shard`: the shard as a whole (its statistics, its backup): only tokens without prefixes;
 * - `cluster`: every shard, or the cluster itself (membership): only tokens scoped neither
 *   by shards nor by prefixes.
 */
export type KeyScope =
  | { kind: "key"; key: string }
  | { kind: "keys"; keys: readonly string[] }
  | { kind: "prefix"; prefix: string }
  | { kind: "range"; from: string; to: string }
  | { kind: "shard" }
  | { kind: "cluster" };

/**
 * - `server`: about the server, not any shard's data or the cluster's make-up: only the
 *   role counts (cluster status).
 * - a function: the request's keys in one shard; checked against the token's shards and
 *   prefixes.
 */
export interface OpRule {
  readonly permission: Role;
  readonly scope: "server" | ((message: Message) => KeyScope);
}

const oneKey = (message: Message): KeyScope => ({ kind: "key", key: String(message.key ?? "") });

/** A listing or count: by prefix, by [from, to), or (neither) the whole shard. */
const rangeScope = (message: Message): KeyScope => {
  const text = (name: string): string | undefined =>
    typeof message[name] === "string" ? (message[name] as string) : undefined;
  const prefix = text("prefix");
  if (prefix !== undefined) return { kind: "prefix", prefix };
  const from = text("from");
  const to = text("to");
  if (from !== undefined || to !== undefined) return { kind: "range", from: from ?? "", to: to ?? "" };
  return { kind: "prefix", prefix: "" };
};

/** A transaction: every key its comparisons and both branches name. */
const txnKeys = (message: Message): KeyScope => {
  const keys: string[] = [];
  for (const field of ["compare", "success", "failure"]) {
    const records = message[field];
    if (!Array.isArray(records)) continue;
    for (const record of records) keys.push(String((record as { key?: unknown }).key ?? ""));
  }
  return { kind: "keys", keys };
};
const wholeShard = (): KeyScope => ({ kind: "shard" });
const wholeCluster = (): KeyScope => ({ kind: "cluster" });

/** Operations served outside the dispatcher's table (streamed replies), checked by the same rules. */
export type StreamOpName = "snapshotSave" | "watch";

/** Every name a permission is checked under. */
export type OpName = WireOpName | StreamOpName;

/**
 * Every operation's permission, keyed by op name: a new op is one line here (the type
 * makes a missing line a compile error, so no op is reachable without a rule).
 */
export const opRules: Record<OpName, OpRule> = {
  get: { permission: "read", scope: oneKey },
  has: { permission: "read", scope: oneKey },
  info: { permission: "read", scope: wholeShard },
  clusterStatus: { permission: "read", scope: "server" },
  set: { permission: "write", scope: oneKey },
  setE: { permission: "write", scope: oneKey },
  setEIfUnset: { permission: "write", scope: oneKey },
  expire: { permission: "write", scope: oneKey },
  delete: { permission: "write", scope: oneKey },
  claim: { permission: "write", scope: oneKey },
  deleteIfEquals: { permission: "write", scope: oneKey },
  renewIfEquals: { permission: "write", scope: oneKey },
  acquire: { permission: "write", scope: oneKey },
  release: { permission: "write", scope: oneKey },
  refresh: { permission: "write", scope: oneKey },
  // A read: it changes nothing, needs the (secret) owner id, and answers only about that owner.
  watchLost: { permission: "read", scope: oneKey },
  list: { permission: "read", scope: rangeScope },
  count: { permission: "read", scope: rangeScope },
  txn: { permission: "write", scope: txnKeys },
  membership: { permission: "admin", scope: wholeCluster },
  // A backup holds every key of its shard: `{shard}` names one, `{}` means every shard.
  snapshotSave: {
    permission: "admin",
    scope: (message) => (typeof message.shard === "number" ? wholeShard() : wholeCluster()),
  },
  // A read: the key, or with prefix every key under it, must be within the token's prefixes.
  watch: {
    permission: "read",
    scope: (message) =>
      message.prefix === true
        ? { kind: "prefix", prefix: String(message.key ?? "") }
        : { kind: "key", key: String(message.key ?? "") },
  },
};

/** True when every key of `scope` starts with one of `prefixes`. */
export function scopeWithinPrefixes(scope: KeyScope, prefixes: readonly string[]): boolean {
  switch (scope.kind) {
    case "key":
      return prefixes.some((p) => scope.key.startsWith(p));
    case "keys":
      return scope.keys.every((key) => prefixes.some((p) => key.startsWith(p)));
    case "prefix":
      return prefixes.some((p) => scope.prefix.startsWith(p));
    case "range":
      return prefixes.some((p) => rangeWithinPrefix(scope.from, scope.to, p));
    case "shard":
    case "cluster":
      return false;
  }
}

/**
 * [from, to) holds only keys starting with `prefix` when `from` starts with it and `to`
 * is at most the first string past every such key. Compared as UTF-16 code units, which
 * for the prefix test agrees with UTF-8 byte order.
 */
function rangeWithinPrefix(from: string, to: string, prefix: string): boolean {
  if (!from.startsWith(prefix)) return false;
  const end = prefixEnd(prefix);
  if (end === undefined) return true;
  return to !== "" && to <= end;
}

/** The least string greater than every string starting with `prefix`; undefined: none. */
function prefixEnd(prefix: string): string | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const code = prefix.charCodeAt(i);
    if (code < 0xffff) return prefix.slice(0, i) + String.fromCharCode(code + 1);
  }
  return undefined;
}

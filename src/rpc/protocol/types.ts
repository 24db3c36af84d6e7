import type { ValueInput } from "../../store/types.ts";

export type TransportName = "tcp" | "unix" | "http";
export type SerializerName = "binary" | "msgpack" | "json";

export const transportNames: readonly TransportName[] = ["tcp", "unix", "http"];
export const serializerNames: readonly SerializerName[] = ["binary", "msgpack", "json"];

/** The wire id of each serializer (header byte 2). */
export const serializerIds: Record<SerializerName, number> = { binary: 1, msgpack: 2, json: 3 };

/** Every operation's request body. Times are milliseconds; 0 means never. */
export interface Requests {
  set: { key: string; value: ValueInput };
  setE: { key: string; value: ValueInput; expireInMs: number; deleteInMs: number };
  setEIfUnset: { key: string; value: ValueInput; expireInMs: number; deleteInMs: number };
  get: { key: string };
  has: { key: string };
  expire: { key: string };
  delete: { key: string };
  info: Record<string, never>;
  claim: { key: string; value: ValueInput; expireInMs: number; deleteInMs: number };
  deleteIfEquals: { key: string; expected: ValueInput };
  renewIfEquals: { key: string; expected: ValueInput; expireInMs: number; deleteInMs: number };
  acquire: { key: string; ttlMs: number; waitMs: number };
  release: { key: string; ownerId: string };
  refresh: { key: string; ownerId: string; ttlMs: number };
  /** Waits up to waitMs for `ownerId` to lose the lock `key` (a long poll). */
  watchLost: { key: string; ownerId: string; waitMs: number };
  /** limit 0 = no limit; absent bounds are open. */
  list: {
    prefix: string | undefined;
    from: string | undefined;
    to: string | undefined;
    after: string | undefined;
    limit: number;
    keysOnly: boolean;
  };
  count: { prefix: string | undefined; from: string | undefined; to: string | undefined };
  txn: { compare: WireCompare[]; success: WireTxnOp[]; failure: WireTxnOp[] };
}

/** A transaction's comparison: `value` for target "value", `number` otherwise ("exists": 1 or 0). */
export interface WireCompare {
  key: string;
  target: string;
  op: string;
  value: Uint8Array | undefined;
  number: number;
}

/** A transaction's operation; fields an op does not use are empty/0. */
export interface WireTxnOp {
  op: string;
  key: string;
  value: Uint8Array | undefined;
  expireInMs: number;
  deleteInMs: number;
}

/** A transaction op's result: for a get, found and the entry; revisions 0 otherwise. */
export interface WireTxnResult {
  op: string;
  key: string;
  found: boolean;
  value: Uint8Array | undefined;
  version: number;
  createRevision: number;
  modRevision: number;
}

/** One key of a listing or a get, with its revisions; value absent in a keys-only listing. */
export interface WireEntry {
  key: string;
  value: Uint8Array | undefined;
  version: number;
  createRevision: number;
  modRevision: number;
}

export type Empty = Record<string, never>;

/** Every operation's reply body. */
export interface Responses {
  set: Empty;
  setE: Empty;
  setEIfUnset: { written: boolean };
  /** The revisions are 0 when the key is not found. */
  get: { value: Uint8Array | undefined; version: number; createRevision: number; modRevision: number };
  has: { found: boolean };
  expire: Empty;
  delete: Empty;
  info: { kind: string; keys: number; keysWithDeadline: number; approxBytes: number; shards: number };
  claim: { written: boolean; revision: bigint };
  deleteIfEquals: { ok: boolean };
  renewIfEquals: { ok: boolean };
  acquire: { acquired: boolean; ownerId: string | undefined; fencingToken: bigint | undefined };
  release: { released: boolean };
  refresh: { refreshed: boolean };
  /** "released" | "expired" | "lost" (not held by that owner), or "held" when the wait ended first. */
  watchLost: { reason: string };
  list: { items: WireEntry[]; more: boolean; next: string | undefined };
  count: { count: number };
  txn: { succeeded: boolean; revision: number; results: WireTxnResult[] };
}

export type OpName = keyof Requests;

/** Op codes on the wire (header bytes 16-17). Never renumber: old clients depend on them. */
export const opCodes: Record<OpName, number> = {
  set: 1,
  setE: 2,
  setEIfUnset: 3,
  get: 4,
  has: 5,
  expire: 6,
  delete: 7,
  info: 8,
  claim: 9,
  deleteIfEquals: 10,
  renewIfEquals: 11,
  acquire: 20,
  release: 21,
  refresh: 22,
  watchLost: 23,
  list: 40,
  count: 41,
  txn: 42,
};

export const opNames = Object.keys(opCodes) as OpName[];

const opNameByCodeTable: (OpName | undefined)[] = [];
for (const name of opNames) opNameByCodeTable[opCodes[name]] = name;

export function opNameByCode(code: number): OpName | undefined {
  return opNameByCodeTable[code];
}

/**
 * Server-level operations: about the server, not one shard's data (the header's shard id
 * is ignored; clients send 0). Kept out of OpName so every store and lock adapter need
 * not handle them.
 */
export interface AdminRequests {
  clusterStatus: Empty;
  /** A cluster membership request as JSON (`{"action":"add"|"promote"|"remove"|"transfer"|"members",...}`). */
  membership: { json: string };
}

export interface AdminResponses {
  /** The ClusterStatusReport as JSON text: nested and rarely asked for, so not worth a schema. */
  clusterStatus: { json: string };
  /** The membership request's answer as JSON. */
  membership: { json: string };
}

export type AdminOpName = keyof AdminRequests;

/** Every op a frame can carry. */
export type WireOpName = OpName | AdminOpName;
export type WireRequests = Requests & AdminRequests;
export type WireResponses = Responses & AdminResponses;

export const adminOpCodes: Record<AdminOpName, number> = { clusterStatus: 30, membership: 31 };

/**
 * The first frame of a tcp/unix connection to a server run with --auth-file: its body is
 * the token's raw UTF-8 bytes (no serializer), request id 0. The listener answers with an
 * empty response, or an UNAUTHENTICATED error; the connection then carries that identity.
 * Handled at the listener's edge, never dispatched, so it has no schema.
 */
export const authenticateOpCode = 64;

export const wireOpCodes: Record<WireOpName, number> = { ...opCodes, ...adminOpCodes };

const wireOpNameByCodeTable: (WireOpName | undefined)[] = [...opNameByCodeTable];
for (const name of Object.keys(adminOpCodes) as AdminOpName[]) {
  wireOpNameByCodeTable[adminOpCodes[name]] = name;
}

export function wireOpNameByCode(code: number): WireOpName | undefined {
  return wireOpNameByCodeTable[code];
}

export function isAdminOp(op: WireOpName): op is AdminOpName {
  return op === "clusterStatus" || op === "membership";
}

/** Operations that change state: they are deduplicated by client request id on the server. */
export const writeOps: ReadonlySet<OpName> = new Set<OpName>([
  "set",
  "setE",
  "setEIfUnset",
  "expire",
  "delete",
  "claim",
  "deleteIfEquals",
  "renewIfEquals",
  "acquire",
  "release",
  "refresh",
  "txn",
]);

/** Operations only a lock-manager shard serves. */
export const lockOps: ReadonlySet<OpName> = new Set<OpName>(["acquire", "release", "refresh", "watchLost"]);

/**
 * Field types of the schema every serializer follows. "bytes" accepts a string when
 * encoding (sent as UTF-8) and always decodes to a fresh Uint8Array.
 */
export type FieldType =
  | "str"
  | "optStr"
  | "bytes"
  | "optBytes"
  | "num"
  | "bool"
  | "u64"
  | "optU64"
  | "records";

/**
 * A field of a message. "records" is a list of nested messages, each following `of`:
 * binary writes a u32 count then the records; msgpack an array of arrays; JSON an array
 * of objects. Its length is bounded by the frame size, not by a count.
 */
export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  readonly of?: readonly FieldSpec[];
}

/** One value of a decoded field. */
export type FieldValue = string | Uint8Array | number | boolean | bigint | undefined | Message[];

/** The untyped form of a message the serializers work with. */
export type Message = Record<string, FieldValue>;

const f = (name: string, type: FieldType): FieldSpec => ({ name, type });
const records = (name: string, of: readonly FieldSpec[]): FieldSpec => ({ name, type: "records", of });
const key = f("key", "str");
const value = f("value", "bytes");
const expected = f("expected", "bytes");
const expireInMs = f("expireInMs", "num");
const deleteInMs = f("deleteInMs", "num");

const txnOpFields = [f("op", "str"), key, f("value", "optBytes"), expireInMs, deleteInMs];

/** Field order is the binary and msgpack order: append new fields only at the end. */
export const requestSchemas: Record<OpName, readonly FieldSpec[]> = {
  set: [key, value],
  setE: [key, value, expireInMs, deleteInMs],
  setEIfUnset: [key, value, expireInMs, deleteInMs],
  get: [key],
  has: [key],
  expire: [key],
  delete: [key],
  info: [],
  claim: [key, value, expireInMs, deleteInMs],
  deleteIfEquals: [key, expected],
  renewIfEquals: [key, expected, expireInMs, deleteInMs],
  acquire: [key, f("ttlMs", "num"), f("waitMs", "num")],
  release: [key, f("ownerId", "str")],
  refresh: [key, f("ownerId", "str"), f("ttlMs", "num")],
  watchLost: [key, f("ownerId", "str"), f("waitMs", "num")],
  list: [
    f("prefix", "optStr"),
    f("from", "optStr"),
    f("to", "optStr"),
    f("after", "optStr"),
    f("limit", "num"),
    f("keysOnly", "bool"),
  ],
  count: [f("prefix", "optStr"), f("from", "optStr"), f("to", "optStr")],
  txn: [
    records("compare", [key, f("target", "str"), f("op", "str"), f("value", "optBytes"), f("number", "num")]),
    records("success", txnOpFields),
    records("failure", txnOpFields),
  ],
};

export const responseSchemas: Record<OpName, readonly FieldSpec[]> = {
  set: [],
  setE: [],
  setEIfUnset: [f("written", "bool")],
  get: [f("value", "optBytes"), f("version", "num"), f("createRevision", "num"), f("modRevision", "num")],
  has: [f("found", "bool")],
  expire: [],
  delete: [],
  info: [
    f("kind", "str"),
    f("keys", "num"),
    f("keysWithDeadline", "num"),
    f("approxBytes", "num"),
    f("shards", "num"),
  ],
  claim: [f("written", "bool"), f("revision", "u64")],
  deleteIfEquals: [f("ok", "bool")],
  renewIfEquals: [f("ok", "bool")],
  acquire: [f("acquired", "bool"), f("ownerId", "optStr"), f("fencingToken", "optU64")],
  release: [f("released", "bool")],
  refresh: [f("refreshed", "bool")],
  watchLost: [f("reason", "str")],
  list: [
    records("items", [
      key,
      f("value", "optBytes"),
      f("version", "num"),
      f("createRevision", "num"),
      f("modRevision", "num"),
    ]),
    f("more", "bool"),
    f("next", "optStr"),
  ],
  count: [f("count", "num")],
  txn: [
    f("succeeded", "bool"),
    f("revision", "num"),
    records("results", [
      f("op", "str"),
      key,
      f("found", "bool"),
      f("value", "optBytes"),
      f("version", "num"),
      f("createRevision", "num"),
      f("modRevision", "num"),
    ]),
  ],
};

export const wireRequestSchemas: Record<WireOpName, readonly FieldSpec[]> = {
  ...requestSchemas,
  clusterStatus: [],
  membership: [f("json", "str")],
};

export const wireResponseSchemas: Record<WireOpName, readonly FieldSpec[]> = {
  ...responseSchemas,
  clusterStatus: [f("json", "str")],
  membership: [f("json", "str")],
};

/**
 * Streamed operations: answered by a sequence of response frames with raw bodies, not by
 * one serialized reply (see src/backup/stream-server.ts). Handled before the dispatcher.
 */
export const streamOpCodes = { snapshotStream: 50, watch: 51, watchCancel: 52 } as const;

/**
 * The watch stream (op `watch`): one request frame with this body (serializer-encoded;
 * fromRevision 0 = from now, progressIntervalMs 0 = the server's default), answered by
 * response frames each carrying one `watchEventSchema` record until the client sends
 * `watchCancel` with the same request id (empty body) or an error frame ends it. The
 * first event is a progress event with the revision the watch starts after (the serving
 * member's revision when the watch starts beyond it: progress never runs ahead of it).
 */
export const watchRequestSchema: readonly FieldSpec[] = [
  f("key", "str"),
  f("prefix", "bool"),
  f("fromRevision", "num"),
  f("progressIntervalMs", "num"),
];

/**
 * The watch request with the requireLeader flag (the stream ends with UNAVAILABLE "no
 * leader" once the serving member has had no leader for over an election timeout). A
 * client sends this longer form only when it sets the flag, so servers that predate it
 * still serve every other watch; a server reads this form first, then the short one.
 */
export const watchRequestLeaderSchema: readonly FieldSpec[] = [
  ...watchRequestSchema,
  f("requireLeader", "bool"),
];

/** The schema of a watch request body: the long form only when it asks for requireLeader. */
export function watchRequestSchemaFor(message: Message): readonly FieldSpec[] {
  return message.requireLeader === true ? watchRequestLeaderSchema : watchRequestSchema;
}

/** One watch event: type put|delete|expire|progress; key "" and no value for progress. */
export const watchEventSchema: readonly FieldSpec[] = [
  f("type", "str"),
  key,
  f("value", "optBytes"),
  f("revision", "num"),
];

import { TXN_RESULT_BYTES_MAX } from "../config/defaults.ts";
import type { KVDB } from "../db/kvdb.ts";
import { DkvError } from "../errors.ts";
import type { StoreLimits, ValueInput } from "./types.ts";
import { checkDuration, checkKey, toValueBytes } from "./validate.ts";

/**
 * Transactions: compare keys, then apply one branch of operations atomically in one
 * shard (lstore: one synchronous engine call sequence; dstore: one Raft entry). Bounded
 * by bytes (the frame or proposal limit), not by a count of operations.
 *
 * Compare semantics (as etcd v3): a missing or expired key has version 0, modRevision 0,
 * createRevision 0 and exists false; a `value` comparison against a missing key is false
 * whatever the op. Values compare as bytes (lexicographically, a prefix sorts first).
 */
export const txnTargets = ["value", "version", "createRevision", "modRevision", "exists"] as const;
export type TxnTarget = (typeof txnTargets)[number];
export const txnCompareOps = ["==", "!=", "<", ">"] as const;
export type TxnCompareOp = (typeof txnCompareOps)[number];
export const txnOpKinds = ["set", "setE", "delete", "get"] as const;
export type TxnOpKind = (typeof txnOpKinds)[number];

export type TxnCompare =
  | { key: string; target: "value"; op: TxnCompareOp; value: ValueInput }
  | { key: string; target: "version" | "createRevision" | "modRevision"; op: TxnCompareOp; value: number }
  | { key: string; target: "exists"; op: "==" | "!="; value: boolean };

export type TxnOp =
  | { op: "set"; key: string; value: ValueInput }
  | { op: "setE"; key: string; value: ValueInput; expireInMs: number; deleteInMs: number }
  | { op: "delete"; key: string }
  | { op: "get"; key: string };

export interface TxnRequest {
  compare: TxnCompare[];
  success: TxnOp[];
  failure: TxnOp[];
}

/** One operation's result; for a get: whether found, and the value with its revisions. */
export interface TxnOpResult {
  op: TxnOpKind;
  key: string;
  found?: boolean;
  value?: Uint8Array;
  version?: number;
  createRevision?: number;
  modRevision?: number;
}

export interface TxnResult {
  succeeded: boolean;
  /** The store's revision after the transaction (dstore: the Raft index of its entry). */
  revision: number;
  results: TxnOpResult[];
}

/** A validated transaction: values are bytes the engine may keep. */
export interface CheckedTxn {
  compare: CheckedCompare[];
  success: CheckedOp[];
  failure: CheckedOp[];
}
export type CheckedCompare =
  | { key: string; target: "value"; op: TxnCompareOp; value: Uint8Array }
  | { key: string; target: "version" | "createRevision" | "modRevision"; op: TxnCompareOp; value: number }
  | { key: string; target: "exists"; op: "==" | "!="; value: boolean };
export type CheckedOp =
  | { op: "set"; key: string; value: Uint8Array }
  | { op: "setE"; key: string; value: Uint8Array; expireInMs: number; deleteInMs: number }
  | { op: "delete"; key: string }
  | { op: "get"; key: string };

function bad(message: string): DkvError {
  return new DkvError("BAD_REQUEST", `${message} Nothing was applied.`, { outcome: "not-applied" });
}

/** Checks a whole transaction before anything is applied; throws BAD_REQUEST naming the part. */
export function checkTxn(txn: TxnRequest, limits: StoreLimits): CheckedTxn {
  if (typeof txn !== "object" || txn === null)
    throw bad("a transaction is an object {compare, success, failure}.");
  for (const part of ["compare", "success", "failure"] as const) {
    if (!Array.isArray(txn[part])) throw bad(`"${part}" must be a list (it may be empty).`);
  }
  return {
    compare: txn.compare.map((c, i) => checkCompare(c, i, limits)),
    success: txn.success.map((op, i) => checkOp(op, `success[${i}]`, limits)),
    failure: txn.failure.map((op, i) => checkOp(op, `failure[${i}]`, limits)),
  };
}

function checkCompare(c: TxnCompare, index: number, limits: StoreLimits): CheckedCompare {
  const where = `compare[${index}]`;
  if (typeof c !== "object" || c === null) throw bad(`${where} must be an object.`);
  checkKey(c.key, limits);
  if (!(txnTargets as readonly string[]).includes(c.target)) {
    throw bad(`${where}.target must be one of ${txnTargets.join(", ")}; got ${JSON.stringify(c.target)}.`);
  }
  if (!(txnCompareOps as readonly string[]).includes(c.op)) {
    throw bad(`${where}.op must be one of ${txnCompareOps.join(" ")}; got ${JSON.stringify(c.op)}.`);
  }
  switch (c.target) {
    case "value":
      if (typeof c.value !== "string" && !(c.value instanceof Uint8Array)) {
        throw bad(`${where}.value must be a string or bytes for target "value".`);
      }
      return { key: c.key, target: "value", op: c.op, value: toValueBytes(c.value, limits) };
    case "exists":
      if (c.op !== "==" && c.op !== "!=") throw bad(`${where}: "exists" compares with == or != only.`);
      if (typeof c.value !== "boolean")
        throw bad(`${where}.value must be true or false for target "exists".`);
      return { key: c.key, target: "exists", op: c.op, value: c.value };
    default:
      if (!Number.isSafeInteger(c.value) || (c.value as number) < 0) {
        throw bad(`${where}.value must be a whole number >= 0 for target "${c.target}".`);
      }
      return { key: c.key, target: c.target, op: c.op, value: c.value as number };
  }
}

function checkOp(op: TxnOp, where: string, limits: StoreLimits): CheckedOp {
  if (typeof op !== "object" || op === null) throw bad(`${where} must be an object.`);
  checkKey(op.key, limits);
  switch (op.op) {
    case "set":
      return { op: "set", key: op.key, value: toValueBytes(op.value, limits) };
    case "setE":
      checkDuration("expireInMs", op.expireInMs);
      checkDuration("deleteInMs", op.deleteInMs);
      return {
        op: "setE",
        key: op.key,
        value: toValueBytes(op.value, limits),
        expireInMs: op.expireInMs,
        deleteInMs: op.deleteInMs,
      };
    case "delete":
    case "get":
      return { op: op.op, key: op.key };
    default:
      throw bad(
        `${where}.op must be one of ${txnOpKinds.join(", ")}; got ${JSON.stringify((op as { op: unknown }).op)}.`,
      );
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function holds(order: number, op: TxnCompareOp): boolean {
  switch (op) {
    case "==":
      return order === 0;
    case "!=":
      return order !== 0;
    case "<":
      return order < 0;
    case ">":
      return order > 0;
  }
}

/** Whether every comparison holds at `nowMs`. Reads only. */
export function txnSucceeds(db: KVDB, compare: readonly CheckedCompare[], nowMs: number): boolean {
  for (const c of compare) {
    const entry = db.getEntry(c.key, nowMs);
    let ok: boolean;
    switch (c.target) {
      case "value":
        ok = entry?.value !== undefined && holds(compareBytes(entry.value, c.value), c.op);
        break;
      case "exists":
        ok = holds((entry !== undefined) === c.value ? 0 : 1, c.op);
        break;
      default:
        ok = holds((entry?.[c.target] ?? 0) - c.value, c.op);
    }
    if (!ok) return false;
  }
  return true;
}

/**
 * Applies a checked transaction to the engine: compares, then the chosen branch in
 * order (a get sees the branch's earlier writes). Deterministic: the same state, time
 * and transaction give the same result on every replica. The caller sets the revision
 * the writes stamp (KVDB.pinRevision) and reports it. `boundResult` false: no bound on
 * what the gets return (a dstore shard under apply rules 1, see apply-rules.ts).
 */
export function applyTxn(
  db: KVDB,
  txn: CheckedTxn,
  nowMs: number,
  boundResult = true,
): Omit<TxnResult, "revision"> {
  const succeeded = txnSucceeds(db, txn.compare, nowMs);
  const branch = succeeded ? txn.success : txn.failure;
  if (boundResult) checkResultBytes(db, branch, nowMs);
  const results: TxnOpResult[] = [];
  for (const op of branch) {
    switch (op.op) {
      case "set":
        db.set(op.key, op.value, nowMs);
        results.push({ op: "set", key: op.key });
        break;
      case "setE":
        db.setE(op.key, op.value, op.expireInMs, op.deleteInMs, nowMs);
        results.push({ op: "setE", key: op.key });
        break;
      case "delete":
        db.delete(op.key, nowMs);
        results.push({ op: "delete", key: op.key });
        break;
      case "get": {
        const entry = db.getEntry(op.key, nowMs);
        if (entry === undefined) results.push({ op: "get", key: op.key, found: false });
        else {
          const { value, version, createRevision, modRevision } = entry;
          results.push({ op: "get", key: op.key, found: true, value, version, createRevision, modRevision });
        }
        break;
      }
    }
  }
  return { succeeded, results };
}

/**
 * Refuses (TOO_LARGE, nothing applied) a branch whose gets would return more than
 * TXN_RESULT_BYTES_MAX of keys and values together, before any of its writes applies: a
 * small request of many gets of a large value would otherwise build a result of any size
 * on every replica. A get sees the branch's earlier writes, so their sizes count.
 */
function checkResultBytes(db: KVDB, branch: readonly CheckedOp[], nowMs: number): void {
  // A lone get may return any value: the common transactions (writes and at most one get)
  // skip the walk below, which reads (on an lstore, copies) each get's value once more.
  let getOps = 0;
  for (const op of branch) if (op.op === "get") getOps++;
  if (getOps < 2) return;
  let gets = 0;
  let bytes = 0;
  // Keys the branch wrote before a get: the value's length, or -1 once deleted.
  const written = new Map<string, number>();
  for (const op of branch) {
    if (op.op === "set" || op.op === "setE") written.set(op.key, op.value.byteLength);
    else if (op.op === "delete") written.set(op.key, -1);
    else {
      gets++;
      const own = written.get(op.key);
      const valueBytes =
        own !== undefined ? Math.max(own, 0) : (db.getEntry(op.key, nowMs)?.value?.byteLength ?? 0);
      bytes += op.key.length + valueBytes;
      if (bytes > TXN_RESULT_BYTES_MAX && gets > 1) {
        throw new DkvError(
          "TOO_LARGE",
          `the transaction was refused and changed nothing: its gets would return more than ${TXN_RESULT_BYTES_MAX} bytes of keys and values together (one get may return any one value); read the large values with separate gets`,
          { outcome: "not-applied" },
        );
      }
    }
  }
}

/** Whether a branch writes (a read-only transaction takes no revision on lstore). */
export function branchWrites(ops: readonly CheckedOp[]): boolean {
  return ops.some((op) => op.op !== "get");
}

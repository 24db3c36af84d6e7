import type { KVDB } from "../db/kvdb.ts";
import { DkvError } from "../errors.ts";

/**
 * The wait queue of a lock, kept in the lock store itself so it is replicated, in
 * snapshots, and decided from log time like every other key (etcd's concurrency.Mutex
 * idea: the waiter with the lowest revision goes first).
 *
 * A waiter is a key `queuePrefix(lock) + seq` holding its owner id, with a delete deadline
 * (its lease): `seq` is the revision at which it joined (on dstore the Raft index), as 16
 * hex digits, so the byte order of the keys is the order of arrival and the head of the
 * queue is the first key of the prefix (O(log n)). A waiter that stops renewing its entry
 * (its process died) leaves the queue when the lease runs out, at log time.
 *
 * One atomic step (`applyLockQueue`) on the engine decides a claim:
 * - "try" (no wait): claims only when the lock is free and nobody waits.
 * - "wait": claims when the lock is free and the queue is empty or this waiter is its head;
 *   otherwise joins the queue (or renews its place) and reports its seq.
 * - "leave": drops this waiter's entry (a wait that ended without the lock).
 * A successful claim removes the waiter's entry in the same step.
 */
export type LockQueueMode = "try" | "wait" | "leave";
export const lockQueueModes: readonly LockQueueMode[] = ["try", "wait", "leave"];

export interface LockQueueRequest {
  mode: LockQueueMode;
  /** The lock key. */
  key: string;
  /** Lowercase hex owner id. */
  ownerId: string;
  /** The lock's lease once claimed (0: until released). */
  ttlMs: number;
  /** "wait": how long the queue entry lives without renewal (> 0). */
  leaseMs: number;
  /** The waiter's place from an earlier answer (0n: not queued yet). */
  seq: bigint;
}

export interface LockQueueResult {
  written: boolean;
  /** When written: the fencing token (the revision of the claim); 0n otherwise. */
  revision: bigint;
  /** "wait" without the lock: the waiter's place in the queue; 0n otherwise. */
  seq: bigint;
}

/** Waiters one lock may have; one more is refused (RESOURCE_EXHAUSTED), changing nothing. */
export const LOCK_WAITERS_MAX = 1024;
/** Queue keys start with NUL: lock keys that do are refused, so they never collide. */
const RESERVED_PREFIX = "\u0000";
const SEQ_HEX_DIGITS = 16;

/**
 * The prefix of a lock's queue entries. The lock key's length comes first, so no lock's
 * prefix starts with another's ("a" vs "a\u0000b"): prefix scans never mix two queues.
 */
export function queuePrefix(lockKey: string): string {
  return `${RESERVED_PREFIX}q${lockKey.length}${RESERVED_PREFIX}${lockKey}${RESERVED_PREFIX}`;
}

export function queueKey(lockKey: string, seq: bigint): string {
  return queuePrefix(lockKey) + seq.toString(16).padStart(SEQ_HEX_DIGITS, "0");
}

/** Why `key` cannot name a lock (undefined when it can). */
export function lockKeyProblem(key: string): string | undefined {
  if (typeof key !== "string" || key.length === 0)
    return "the lock key is empty; give a non-empty string key";
  if (key.startsWith(RESERVED_PREFIX)) {
    return "a lock key must not start with a NUL character (reserved for the lock's wait queue)";
  }
  return undefined;
}

/** Checks a request's fields; every member decides alike on the same request. */
export function lockQueueRequestProblem(request: LockQueueRequest): string | undefined {
  const keyProblem = lockKeyProblem(request.key);
  if (keyProblem !== undefined) return keyProblem;
  if (!lockQueueModes.includes(request.mode)) return `unknown lock queue mode ${String(request.mode)}`;
  if (!/^[0-9a-f]{1,128}$/.test(request.ownerId)) return "the owner id must be 1 to 128 lowercase hex digits";
  for (const [name, ms] of [
    ["ttlMs", request.ttlMs],
    ["leaseMs", request.leaseMs],
  ] as const) {
    if (!Number.isSafeInteger(ms) || ms < 0) return `${name} must be a whole number of ms >= 0; got ${ms}`;
  }
  if (request.mode === "wait" && request.leaseMs === 0) return "a waiter needs a queue lease (leaseMs > 0)";
  if (request.seq < 0n || request.seq >= 1n << 64n) return `the queue seq ${request.seq} is out of range`;
  return undefined;
}

const latin1 = (text: string): Uint8Array => Buffer.from(text, "latin1");

/**
 * One atomic lock-queue step on `db` at `nowMs`. `nextRevision` gives the revision of this
 * step's write (dstore: the entry's Raft index, for the token and a new seq alike; lstore:
 * the store's counter), asked at most once. Throws RESOURCE_EXHAUSTED (nothing changed)
 * when a new waiter would pass LOCK_WAITERS_MAX.
 */
export function applyLockQueue(
  db: KVDB,
  request: LockQueueRequest,
  nowMs: number,
  nextRevision: () => bigint,
): LockQueueResult {
  const problem = lockQueueRequestProblem(request);
  if (problem !== undefined) throw new DkvError("BAD_REQUEST", `the lock request was refused: ${problem}`);
  const { key, mode, ttlMs, leaseMs } = request;
  const owner = latin1(request.ownerId);
  const prefix = queuePrefix(key);
  const mine = request.seq === 0n ? undefined : queueKey(key, request.seq);
  const queued = mine !== undefined && bytesEqual(db.get(mine, nowMs), owner);
  if (mode === "leave") {
    if (mine !== undefined) db.deleteIfEquals(mine, owner, nowMs);
    return { written: false, revision: 0n, seq: 0n };
  }
  const head = db.list({ prefix, limit: 1, keysOnly: true }, nowMs).items[0]?.key;
  const first = head === undefined || (queued && head === mine);
  // A lock is free when absent (past its delete deadline counts as absent), as for a claim.
  if (first && !db.has(key, nowMs)) {
    const written = db.setEIfUnset(key, owner, 0, ttlMs, nowMs);
    if (!written)
      throw new DkvError("INTERNAL", "a free lock could not be claimed; the engine broke an invariant");
    if (queued) db.delete(mine!, nowMs);
    return { written: true, revision: nextRevision(), seq: 0n };
  }
  if (mode === "try") return { written: false, revision: 0n, seq: 0n };
  if (bytesEqual(db.get(key, nowMs), owner)) {
    // This owner holds the lock already (a duplicate of a request that got it): no place to keep.
    if (queued) db.delete(mine!, nowMs);
    return { written: false, revision: 0n, seq: 0n };
  }
  if (queued) {
    db.renewIfEquals(mine!, owner, 0, leaseMs, nowMs);
    return { written: false, revision: 0n, seq: request.seq };
  }
  // New (or its lease ran out): joins at the back.
  if (db.count({ prefix }, nowMs) >= LOCK_WAITERS_MAX) {
    throw new DkvError(
      "RESOURCE_EXHAUSTED",
      `the lock ${JSON.stringify(key)} already has ${LOCK_WAITERS_MAX} waiters; nothing was changed. Retry later or use fewer waiters`,
    );
  }
  const seq = nextRevision();
  db.setE(queueKey(key, seq), owner, 0, leaseMs, nowMs);
  return { written: false, revision: 0n, seq };
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (a === undefined || a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---- the request and result as bytes (the replicated log's Op.LockQueue value) -----
// value:  u8 mode | u8[7] 0 | f64 leaseMs | u64 seq | owner id (ASCII hex)
//         (the command's key is the lock key, its deleteInMs the lock's ttl)
// result: u8 written | u64 (written: the revision; else the seq) — as small as a claim's

const VALUE_HEADER_BYTES = 24;

export function encodeLockQueueValue(request: LockQueueRequest): Uint8Array {
  const owner = latin1(request.ownerId);
  const out = new Uint8Array(VALUE_HEADER_BYTES + owner.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, lockQueueModes.indexOf(request.mode));
  view.setFloat64(8, request.leaseMs, true);
  view.setBigUint64(16, request.seq, true);
  out.set(owner, VALUE_HEADER_BYTES);
  return out;
}

/** The request in a command's value; `fail` makes the error for bytes that do not frame one. */
export function decodeLockQueueValue(
  key: string,
  ttlMs: number,
  value: Uint8Array,
  fail: (detail: string) => DkvError,
): LockQueueRequest {
  if (value.byteLength < VALUE_HEADER_BYTES) throw fail(`a lock queue value of ${value.byteLength} bytes`);
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const mode = lockQueueModes[view.getUint8(0)];
  for (let i = 1; i < 8; i++) if (value[i] !== 0) throw fail("lock queue padding is not zero");
  if (mode === undefined) throw fail(`unknown lock queue mode ${view.getUint8(0)}`);
  const request: LockQueueRequest = {
    mode,
    key,
    ownerId: Buffer.from(value.subarray(VALUE_HEADER_BYTES)).toString("latin1"),
    ttlMs,
    leaseMs: view.getFloat64(8, true),
    seq: view.getBigUint64(16, true),
  };
  const problem = lockQueueRequestProblem(request);
  if (problem !== undefined) throw fail(problem);
  return request;
}

export function encodeLockQueueResult(result: LockQueueResult): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = result.written ? 1 : 0;
  new DataView(out.buffer).setBigUint64(1, result.written ? result.revision : result.seq, true);
  return out;
}

export function decodeLockQueueResult(result: Uint8Array): LockQueueResult | undefined {
  if (result.byteLength !== 9) return undefined;
  const number = new DataView(result.buffer, result.byteOffset, result.byteLength).getBigUint64(1, true);
  return result[0] === 1
    ? { written: true, revision: number, seq: 0n }
    : { written: false, revision: 0n, seq: number };
}

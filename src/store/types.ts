import { KEY_BYTES_MAX_DEFAULT, VALUE_BYTES_MAX_DEFAULT } from "../config/defaults.ts";
import type { DbInfo, EntryInfo, KeyRange, ListOptions, ListPage } from "../db/kvdb.ts";
import type { LockQueueRequest, LockQueueResult } from "./lock-queue.ts";
import type { TxnRequest, TxnResult } from "./txn.ts";
import type { WatchEvent, WatchOptions } from "./watch.ts";

export type { EntryInfo, KeyRange, ListOptions, ListPage } from "../db/kvdb.ts";
export type { LockQueueMode, LockQueueRequest, LockQueueResult } from "./lock-queue.ts";
export type { TxnCompare, TxnOp, TxnOpResult, TxnRequest, TxnResult } from "./txn.ts";
export type { WatchChange, WatchEvent, WatchOptions, WatchProgress } from "./watch.ts";

/** Values are bytes; strings are accepted and stored as UTF-8. */
export type ValueInput = Uint8Array | string;

export interface StoreInfo extends DbInfo {
  /** "lstore", "dstore", "rpc" — which implementation answered. */
  kind: string;
}

/** The result of a conditional insert used for locks: the revision is a fencing token. */
export interface ClaimResult {
  written: boolean;
  /**
   * When written: a number that strictly increases across successful writes of this store
   * (lstore: a per-store counter; dstore: the Raft index of the entry). 0n otherwise.
   */
  revision: bigint;
}

/**
 * IStore: the async store every layer speaks (lstore, dstore, the RPC client).
 * Times are milliseconds relative to now; 0 means never. See KVDB for the semantics.
 */
export interface IStore {
  set(key: string, value: ValueInput): Promise<void>;
  setE(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<void>;
  /** Writes only if absent; reports whether it wrote. */
  setEIfUnset(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean>;
  expire(key: string): Promise<void>;
  delete(key: string): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  has(key: string): Promise<boolean>;
  info(): Promise<StoreInfo>;

  // The data API (see the README's "Data API").
  /** What `get` returns, with the key's version, createRevision and modRevision. */
  getEntry(key: string): Promise<EntryInfo | undefined>;
  /** Live keys of a range in ascending UTF-8 byte order, one page at a time. Linearizable on dstore. */
  list(options: ListOptions): Promise<ListPage>;
  /** How many live keys a range holds. */
  count(range: KeyRange): Promise<number>;
  /** Compares, then applies one branch atomically (see txn.ts); a bad transaction changes nothing. */
  txn(request: TxnRequest): Promise<TxnResult>;
  /**
   * Changes of `key`, or with `prefix` of every key starting with it, in commit order:
   * `for await (const ev of store.watch("svc/", { prefix: true }))`. From `fromRevision`
   * when given (COMPACTED when older than the kept history), else from now; progress
   * events when idle; aborting `signal` or leaving the loop ends it.
   */
  watch(key: string, options?: WatchOptions): AsyncIterableIterator<WatchEvent>;

  // Atomic primitives for the lock manager (each one store operation).
  /** setEIfUnset that also returns the revision of the write (the fencing token). */
  claim(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<ClaimResult>;
  /** Compare-and-delete; false only when the key holds a live, different value. */
  deleteIfEquals(key: string, expected: ValueInput): Promise<boolean>;
  /** Compare-and-renew: new deadlines only when the live value equals `expected`. */
  renewIfEquals(key: string, expected: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean>;
  /**
   * One step of a lock's wait queue (see lock-queue.ts), one atomic store operation. Stores
   * that keep the queue in their own state implement it (LocalStore, DStore: replicated, so
   * the order is cluster-wide); LockManager then grants waiters in the store's order.
   */
  lockQueue?(request: LockQueueRequest): Promise<LockQueueResult>;

  close(): Promise<void>;
}

export interface StoreLimits {
  /** Largest key in UTF-8 bytes. */
  maxKeyBytes: number;
  /** Largest value in bytes. */
  maxValueBytes: number;
}

export const defaultStoreLimits: StoreLimits = {
  maxKeyBytes: KEY_BYTES_MAX_DEFAULT,
  maxValueBytes: VALUE_BYTES_MAX_DEFAULT,
};

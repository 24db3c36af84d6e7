import { type Clock, systemClock } from "../clock.ts";
import type { KVDB } from "../db/kvdb.ts";
import { RecordDB } from "../db/records/record-db.ts";
import { DkvError } from "../errors.ts";
import { checkListOptions, checkRange, rangeOf } from "./list-options.ts";
import { applyLockQueue, type LockQueueRequest, type LockQueueResult } from "./lock-queue.ts";
import { orderReadied } from "./ordered-read.ts";
import { PurgeLoop } from "./purge-loop.ts";
import { applyTxn, branchWrites, checkTxn, type TxnRequest, type TxnResult, txnSucceeds } from "./txn.ts";
import type { EntryInfo, KeyRange, ListOptions, ListPage } from "./types.ts";
import {
  type ClaimResult,
  defaultStoreLimits,
  type IStore,
  type StoreInfo,
  type StoreLimits,
  type ValueInput,
} from "./types.ts";
import { checkDuration, checkedValueBytes, checkKey, toValueBytes } from "./validate.ts";
import { type WatchEvent, WatchHub, type WatchHubOptions, type WatchOptions, watchCopies } from "./watch.ts";

/**
 * The engine of an lstore: a RecordDB (keys and values in arena records, no JS object,
 * string or array per key: about half of MapleDB's bytes per small key) whose ordered
 * index is built by the first list (a cache that is never listed pays no bytes or CPU per
 * key for it) and kept from then on.
 */
export function lstoreEngine(): RecordDB {
  return new RecordDB();
}

export interface LocalStoreOptions {
  /** The engine; by default lstoreEngine()'s, whose ordered index is built by the first list. */
  db?: KVDB;
  /** Wall clock by default; tests inject a ManualClock. */
  clock?: Clock;
  limits?: Partial<StoreLimits>;
  /** How often expired entries are purged in the background; 0 turns the purge off. Default 250 ms. */
  purgeIntervalMs?: number;
  /** Most entries one purge slice may remove, so a slice stays well under a millisecond. Default 4096. */
  purgeSliceEntries?: number;
  /** Watch history, per-watcher buffer and progress interval (see watch.ts). */
  watch?: Partial<WatchHubOptions>;
}

const DEFAULT_PURGE_INTERVAL_MS = 250;
const DEFAULT_PURGE_SLICE_ENTRIES = 4096;
const REVISIONS_PER_MS = 1_000_000n;

/**
 * lstore: an IStore over one in-process KVDB and the wall clock. Every operation is one
 * synchronous engine call, so each is atomic with respect to the others; the async
 * surface matches the replicated store and the RPC client so callers can swap them.
 */
export class LocalStore implements IStore {
  readonly limits: StoreLimits;
  /** Maple keeps the arrays it is given and returns them uncopied, so this store copies at its edge. */
  private readonly db: KVDB;
  private readonly clock: Clock;
  private readonly purge: PurgeLoop | undefined;
  private readonly purgeSliceEntries: number;
  /** Bumped on every successful write; a claim's revision is the fencing token. */
  private revision: bigint;
  private closed = false;
  private readonly hub: WatchHub;

  constructor(options: LocalStoreOptions = {}) {
    this.db = options.db ?? lstoreEngine();
    this.clock = options.clock ?? systemClock;
    // Seeded from the clock so tokens keep growing across a restart of this in-memory store:
    // a resource that saw a token before the restart must not reject every later holder.
    // Room for a million writes per millisecond; fits in a signed 64-bit integer until 2262.
    this.revision = BigInt(Math.floor(this.clock.now())) * REVISIONS_PER_MS;
    this.limits = { ...defaultStoreLimits, ...options.limits };
    for (const [name, limit] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(limit) || limit <= 0) {
        throw new DkvError(
          "BAD_REQUEST",
          `limits.${name} must be a positive whole number of bytes; got ${limit}.`,
        );
      }
    }
    this.hub = new WatchHub(this.db.revision, options.watch);
    this.db.onChange((type, key, value, revision) => {
      this.hub.publish(type, key, value, revision);
      // The engine tells before it records the deadline: start the loop on any write, and
      // its first slice stops it again when there is nothing to delete (at most one
      // timer per interval under writes without deadlines; none at all while idle).
      if (type !== "delete" && this.purge !== undefined && !this.purge.running && !this.closed) {
        this.purge.start();
      }
    });
    const intervalMs = options.purgeIntervalMs ?? DEFAULT_PURGE_INTERVAL_MS;
    this.purgeSliceEntries = options.purgeSliceEntries ?? DEFAULT_PURGE_SLICE_ENTRIES;
    checkDuration("purgeIntervalMs", intervalMs);
    if (!Number.isSafeInteger(this.purgeSliceEntries) || this.purgeSliceEntries <= 0) {
      throw new DkvError(
        "BAD_REQUEST",
        `purgeSliceEntries must be a positive whole number; got ${this.purgeSliceEntries}.`,
      );
    }
    if (intervalMs > 0) {
      this.purge = new PurgeLoop(this.clock, intervalMs, () => this.backgroundPurge());
      if (this.db.nextDeadlineMs() !== Number.POSITIVE_INFINITY) this.purge.start();
    }
  }

  async set(key: string, value: ValueInput): Promise<void> {
    this.checkOpen();
    checkKey(key, this.limits);
    const bytes = toValueBytes(value, this.limits);
    this.db.set(key, bytes, this.clock.now());
    this.revision++;
  }

  /**
   * set without a promise or a copy, for a caller that hands `value` over (a fresh array
   * nobody else holds or changes): the RPC server's path for a decoded request.
   */
  setOwned(key: string, value: ValueInput): void {
    this.checkOpen();
    checkKey(key, this.limits);
    this.db.set(key, checkedValueBytes(value, this.limits), this.clock.now());
    this.revision++;
  }

  /** delete without a promise (the RPC server's path). */
  deleteNow(key: string): void {
    this.checkOpen();
    checkKey(key, this.limits);
    this.db.delete(key, this.clock.now());
    this.revision++;
  }

  /**
   * getEntry without a promise or a copy of the value, for a caller that only reads the
   * value before it returns control (the RPC server encodes it into the reply at once).
   */
  getEntryNow(key: string): EntryInfo | undefined {
    this.checkOpen();
    checkKey(key, this.limits);
    return this.db.getEntry(key, this.clock.now());
  }

  /** has without a promise (the RPC server's path). */
  hasNow(key: string): boolean {
    this.checkOpen();
    checkKey(key, this.limits);
    return this.db.has(key, this.clock.now());
  }

  async setE(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<void> {
    this.checkOpen();
    checkKey(key, this.limits);
    checkDuration("expireInMs", expireInMs);
    checkDuration("deleteInMs", deleteInMs);
    const bytes = toValueBytes(value, this.limits);
    this.db.setE(key, bytes, expireInMs, deleteInMs, this.clock.now());
    this.revision++;
  }

  async setEIfUnset(
    key: string,
    value: ValueInput,
    expireInMs: number,
    deleteInMs: number,
  ): Promise<boolean> {
    return (await this.claim(key, value, expireInMs, deleteInMs)).written;
  }

  async claim(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<ClaimResult> {
    this.checkOpen();
    checkKey(key, this.limits);
    checkDuration("expireInMs", expireInMs);
    checkDuration("deleteInMs", deleteInMs);
    const bytes = toValueBytes(value, this.limits);
    if (!this.db.setEIfUnset(key, bytes, expireInMs, deleteInMs, this.clock.now())) {
      return { written: false, revision: 0n };
    }
    this.revision++;
    return { written: true, revision: this.revision };
  }

  /** A lock-queue step (lock-queue.ts): one synchronous engine sequence, so atomic here. */
  async lockQueue(request: LockQueueRequest): Promise<LockQueueResult> {
    this.checkOpen();
    checkKey(request.key, this.limits);
    // A step lists only its queue (reserved keys, indexed on every write): nothing to wait for.
    return applyLockQueue(this.db, request, this.clock.now(), () => ++this.revision);
  }

  async expire(key: string): Promise<void> {
    this.checkOpen();
    checkKey(key, this.limits);
    this.db.expire(key, this.clock.now());
    this.revision++;
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    checkKey(key, this.limits);
    this.db.delete(key, this.clock.now());
    this.revision++;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    this.checkOpen();
    checkKey(key, this.limits);
    // A copy: the caller may mutate what it gets without corrupting the stored value.
    return this.db.get(key, this.clock.now())?.slice();
  }

  async has(key: string): Promise<boolean> {
    this.checkOpen();
    checkKey(key, this.limits);
    return this.db.has(key, this.clock.now());
  }

  async getEntry(key: string): Promise<EntryInfo | undefined> {
    this.checkOpen();
    checkKey(key, this.limits);
    const entry = this.db.getEntry(key, this.clock.now());
    return entry === undefined ? undefined : { ...entry, value: entry.value?.slice() };
  }

  async list(options: ListOptions): Promise<ListPage> {
    this.checkOpen();
    checkListOptions(options, this.limits);
    const pageLimit = options.limit ?? Number.POSITIVE_INFINITY;
    if (!this.db.orderReady(pageLimit)) {
      // The ordered index is built in slices between event-loop turns, not in this one.
      await orderReadied(this.db, pageLimit);
      this.checkOpen();
    }
    const page = this.db.list(options, this.clock.now());
    for (const item of page.items) item.value = item.value?.slice();
    return page;
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.checkOpen();
    const txn = checkTxn(request, this.limits);
    const nowMs = this.clock.now();
    // One revision for the whole transaction, taken only when its branch writes.
    const writes = branchWrites(txnSucceeds(this.db, txn.compare, nowMs) ? txn.success : txn.failure);
    if (writes) this.db.pinRevision(this.db.revision + 1);
    try {
      const result = applyTxn(this.db, txn, nowMs);
      for (const item of result.results) item.value = item.value?.slice();
      return { ...result, revision: this.db.revision };
    } finally {
      if (writes) this.db.unpinRevision();
    }
  }

  async count(range: KeyRange): Promise<number> {
    this.checkOpen();
    checkRange(range, this.limits);
    if (!this.db.orderReady(0)) {
      await orderReadied(this.db, 0);
      this.checkOpen();
    }
    return this.db.count(rangeOf(range), this.clock.now());
  }

  async deleteIfEquals(key: string, expected: ValueInput): Promise<boolean> {
    this.checkOpen();
    checkKey(key, this.limits);
    const bytes = toValueBytes(expected, this.limits);
    const result = this.db.deleteIfEquals(key, bytes, this.clock.now());
    this.revision++;
    return result;
  }

  async renewIfEquals(
    key: string,
    expected: ValueInput,
    expireInMs: number,
    deleteInMs: number,
  ): Promise<boolean> {
    this.checkOpen();
    checkKey(key, this.limits);
    checkDuration("expireInMs", expireInMs);
    checkDuration("deleteInMs", deleteInMs);
    const bytes = toValueBytes(expected, this.limits);
    const renewed = this.db.renewIfEquals(key, bytes, expireInMs, deleteInMs, this.clock.now());
    if (renewed) this.revision++;
    return renewed;
  }

  async info(): Promise<StoreInfo> {
    this.checkOpen();
    return { ...this.db.info(this.clock.now()), kind: "lstore" };
  }

  /**
   * Changes of `key` (or of every key starting with it, with `prefix`) in commit order,
   * including expiry by the background purge; see watch.ts for history and bounds.
   */
  watch(key: string, options: WatchOptions = {}): AsyncIterableIterator<WatchEvent> {
    this.checkOpen();
    if (!options.prefix) checkKey(key, this.limits);
    return watchCopies(this.hub.watch(key, options));
  }

  /** Watches open on this store now (monitoring, tests). */
  get watcherCount(): number {
    return this.hub.watcherCount;
  }

  /** Stops the background purge and ends every watch; later calls fail with CLOSED. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.purge?.stop();
    this.hub.close();
    this.db.onChange(undefined);
    // Frees a build of the ordered index under way (waiting lists resume and see CLOSED).
    this.db.dropOrder();
  }

  /** One bounded purge step; returns how many entries it removed. The background loop calls it. */
  purgeSlice(): number {
    return this.db.purgeExpired(this.clock.now(), this.purgeSliceEntries);
  }

  /**
   * One step of the background loop: true when a full slice left more to do. The loop runs
   * only while some key has a delete deadline: a write starts it, and it stops once none
   * is left. An idle store then runs no timer at all (four ticks a second ran enough code
   * for the JIT to compile it after a few seconds: ~2 MiB more RSS for an idle server,
   * and wake-ups for nothing).
   */
  private backgroundPurge(): boolean {
    const removed = this.purgeSlice();
    if (this.db.nextDeadlineMs() === Number.POSITIVE_INFINITY) {
      this.purge?.stop();
      return false;
    }
    return removed >= this.purgeSliceEntries;
  }

  private checkOpen(): void {
    if (this.closed) throw new DkvError("CLOSED", "This LocalStore is closed; create a new one.");
  }
}

/**
 * DStore.withOrigin's view (dstore.ts): an IStore whose writes carry a caller's origin
 * (an RPC client's id and request id), so that client's retry through any member applies
 * once; reads and watches are the store's own.
 */
import type { LockQueueRequest, LockQueueResult } from "../lock-queue.ts";
import type { TxnRequest, TxnResult } from "../txn.ts";
import type {
  ClaimResult,
  EntryInfo,
  IStore,
  KeyRange,
  ListOptions,
  ListPage,
  StoreInfo,
  ValueInput,
} from "../types.ts";
import type { WatchEvent, WatchOptions } from "../watch.ts";
import type { RequestOrigin } from "./command.ts";
import type { DStore } from "./dstore.ts";

/** DStore.withOrigin's view: writes carry the caller's origin. */
export class OriginStore implements IStore {
  constructor(
    private readonly store: DStore,
    private readonly origin: RequestOrigin,
  ) {}
  set(key: string, value: ValueInput): Promise<void> {
    return this.store.set(key, value, this.origin);
  }
  setE(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<void> {
    return this.store.setE(key, value, expireInMs, deleteInMs, this.origin);
  }
  setEIfUnset(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean> {
    return this.store.setEIfUnset(key, value, expireInMs, deleteInMs, this.origin);
  }
  claim(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<ClaimResult> {
    return this.store.claim(key, value, expireInMs, deleteInMs, this.origin);
  }
  lockQueue(request: LockQueueRequest): Promise<LockQueueResult> {
    return this.store.lockQueue(request, this.origin);
  }
  expire(key: string): Promise<void> {
    return this.store.expire(key, this.origin);
  }
  delete(key: string): Promise<void> {
    return this.store.delete(key, this.origin);
  }
  deleteIfEquals(key: string, expected: ValueInput): Promise<boolean> {
    return this.store.deleteIfEquals(key, expected, this.origin);
  }
  renewIfEquals(key: string, expected: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean> {
    return this.store.renewIfEquals(key, expected, expireInMs, deleteInMs, this.origin);
  }
  get(key: string): Promise<Uint8Array | undefined> {
    return this.store.get(key);
  }
  has(key: string): Promise<boolean> {
    return this.store.has(key);
  }
  info(): Promise<StoreInfo> {
    return this.store.info();
  }
  getEntry(key: string): Promise<EntryInfo | undefined> {
    return this.store.getEntry(key);
  }
  list(options: ListOptions): Promise<ListPage> {
    return this.store.list(options);
  }
  count(range: KeyRange): Promise<number> {
    return this.store.count(range);
  }
  txn(request: TxnRequest): Promise<TxnResult> {
    return this.store.txn(request, this.origin);
  }
  watch(key: string, options?: WatchOptions): AsyncIterableIterator<WatchEvent> {
    return this.store.watch(key, options);
  }
  /** The view owns nothing: closing it leaves the store open. */
  async close(): Promise<void> {}
}

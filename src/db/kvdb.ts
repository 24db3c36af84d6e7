/**
 * KVDB: the engine interface. Synchronous and clock-free: every call that depends on
 * time takes `nowMs` (wall-clock ms for the local store, the leader's log timestamp for
 * the replicated store), so replicas that apply the same commands agree exactly.
 *
 * Times: `expireInMs` / `deleteInMs` are relative to `nowMs`; 0 means never. After the
 * expire deadline `get` misses but `has` is true; after the delete deadline the key is
 * gone. A delete deadline alone also expires the value then. A deadline is reached when
 * `nowMs >= deadline`.
 */
export interface KVDB {
  /** Upsert; clears any expiry or deletion deadline. */
  set(key: string, value: Uint8Array, nowMs: number): void;
  setE(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): void;
  /** Writes only if the key is absent (past its delete deadline counts as absent). Returns whether it wrote. */
  setEIfUnset(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): boolean;
  /** The value is gone for `get` at once; `has` stays true. No-op on a missing key. */
  expire(key: string, nowMs: number): void;
  delete(key: string, nowMs: number): void;
  get(key: string, nowMs: number): Uint8Array | undefined;
  has(key: string, nowMs: number): boolean;
  /**
   * Atomic compare-and-delete. Deletes when the key is present (not past its delete
   * deadline) and its value equals `expected`, expired or not. Returns false only when the
   * key is present with a different value; true when it deleted or the key was absent.
   */
  deleteIfEquals(key: string, expected: Uint8Array, nowMs: number): boolean;
  /** Atomic compare-and-renew: sets new deadlines only when the live value equals `expected`. */
  renewIfEquals(
    key: string,
    expected: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean;
  /**
   * Purges entries whose delete deadline has passed, doing at most `maxEntries` of work
   * so one call never blocks the event loop for long. Returns how many it removed.
   */
  purgeExpired(nowMs: number, maxEntries: number): number;
  /** Streams a versioned, checksummed snapshot into `sink` without copying the whole data set. */
  save(sink: ByteSink, nowMs: number): Promise<void>;
  /** Replaces the contents with a snapshot; a truncated or corrupt one is rejected and nothing changes. */
  load(source: AsyncIterable<Uint8Array>): Promise<void>;
  info(nowMs: number): DbInfo;
}

export interface ByteSink {
  write(chunk: Uint8Array): void | Promise<void>;
}

export interface DbInfo {
  /** Keys present (including expired-but-not-deleted ones not yet purged). */
  keys: number;
  /** Keys carrying an expire or delete deadline. */
  keysWithDeadline: number;
  /** Approximate bytes of keys and values held. */
  approxBytes: number;
  /** Number of internal map shards. */
  shards: number;
}

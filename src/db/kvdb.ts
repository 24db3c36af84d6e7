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
  /** What `get` sees plus the key's revisions; a fresh object. */
  getEntry(key: string, nowMs: number): EntryInfo | undefined;
  has(key: string, nowMs: number): boolean;
  /** Live keys of a range in ascending UTF-8 byte order, a page at a time: O(log n + page). */
  list(options: ListOptions, nowMs: number): ListPage;
  /** How many live keys the range holds. */
  count(range: KeyRange, nowMs: number): number;
  /**
   * Whether `list` and `count` would answer now within a bounded slice of work, or, given
   * `pageLimit` (the most keys the read returns: a list's limit, 0 for a count), without
   * building the ordered index in one piece (an engine may serve some reads without its
   * index; Maple keeps its index from the first write and ignores it). When false they
   * still answer correctly, but may first fold or build the ordered index in one piece:
   * a caller that can wait awaits `prepareOrder`.
   */
  orderReady(pageLimit?: number): boolean;
  /**
   * Readies the ordered index in slices between event-loop turns; resolves once
   * `orderReady()` was true (writes may follow before the caller lists: `list` folds
   * those few in itself). Concurrent callers share the work.
   */
  prepareOrder(): Promise<void>;
  /** Drops the ordered index and any build under way (waiters resume; the next list builds again). */
  dropOrder(): void;
  /** The store's revision: the highest revision stamped on any write so far. */
  readonly revision: number;
  /**
   * Makes every later write stamp `revision` (>= the current one): the replicated store
   * pins the Raft index of each entry it applies. Unpinned, each write takes the next
   * revision of a per-store counter.
   */
  pinRevision(revision: number): void;
  /** Ends a pin: later writes take the next revision of the counter again. */
  unpinRevision(): void;
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
  /**
   * Calls `listener` synchronously for every change, in order, with the revision it was
   * stamped with (the watch's source; one listener, undefined removes it). Reads never call it.
   */
  onChange(listener: ChangeListener | undefined): void;
  /** The earliest delete deadline of any key (+Infinity when none): due expiry events. */
  nextDeadlineMs(): number;
}

/**
 * One change to a key: "put" for every write (value set, deadlines set or renewed),
 * "delete" for a delete, "expire" when the value is hidden by `expire` or the key is
 * removed at its delete deadline. `value` only for "put" (the engine's array: copy to keep it).
 */
export type ChangeListener = (
  type: "put" | "delete" | "expire",
  key: string,
  value: Uint8Array | undefined,
  revision: number,
) => void;

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

/** A key's value with its revisions (see the Data API in the README). */
export interface EntryInfo {
  key: string;
  /** Undefined only in a keys-only listing. */
  value: Uint8Array | undefined;
  /** Writes since the key was created: 1 after the creating write. */
  version: number;
  createRevision: number;
  modRevision: number;
}

/**
 * A range of keys: `prefix`, or `[from, to)` (either end open when absent), or every key.
 * Order is that of the keys' UTF-8 bytes.
 */
export interface KeyRange {
  prefix?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

export interface ListOptions extends KeyRange {
  /** At most this many items; all when absent. */
  limit?: number | undefined;
  /** Continue after this key (the `next` of the previous page). */
  after?: string | undefined;
  /** Leave values out. */
  keysOnly?: boolean | undefined;
}

export interface ListPage {
  items: EntryInfo[];
  /** Whether keys of the range follow this page. */
  more: boolean;
  /** When `more`: the last key of this page, to pass as `after`. */
  next?: string;
}

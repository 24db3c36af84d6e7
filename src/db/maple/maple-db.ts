import { DkvError } from "../../errors.ts";
import type {
  ByteSink,
  ChangeListener,
  DbInfo,
  EntryInfo,
  KeyRange,
  KVDB,
  ListOptions,
  ListPage,
} from "../kvdb.ts";
import { DeadlineHeap } from "./deadline-heap.ts";
import { DeferredOrder } from "./deferred-order.ts";
import {
  bytesEqual,
  checkDurations,
  checkPinnedRevision,
  deadline,
  entryInfo,
  liveValue,
  presentValue,
  saveAlreadyRunning,
} from "./entry-reads.ts";
import type { DeferredOrderOptions, OrderStats } from "./order-costs.ts";
import { OrderedKeys } from "./ordered-keys.ts";
import { FirstKeys } from "./ordered-keys-builder.ts";
import {
  collectPage,
  countVisited,
  indexOutOfStep,
  pastRangeEnd,
  type ScanRange,
  scanKeyRange,
  type Visit,
} from "./range-scan.ts";
import { shardHash, shardHashWide } from "./shard-hash.ts";
import {
  checkShardCount,
  DEFAULT_SHARDS,
  detachForSave,
  isSkewed,
  largestShardSize,
  newShards,
  type Routing,
  reshard,
  type Shard,
  SKEW_CHECK_MIN_KEYS,
  type Slot,
  splitShard,
} from "./shard-routing.ts";
import { loadKeyspace, streamSnapshot } from "./snapshot-io.ts";
import { Entry, isDeleted, isExpired, NEVER, TimedEntry } from "./timed-entry.ts";

export interface MapleOptions {
  /**
   * Number of internal map shards to start with: a power of two from 1 to 4096. Default 64.
   * A shard that reaches SPLIT_KEYS keys splits in two.
   */
  shards?: number;
  /** How the ordered index is built in slices (see DeferredOrder); tests pass a scheduler. */
  order?: DeferredOrderOptions;
  /**
   * Whether the ordered index is kept from the first write (default) or built, in slices,
   * by the first list or count and kept from then on (a cache that is never listed pays
   * nothing for it: an lstore, see LocalStore). A snapshot load builds it either way.
   */
  indexFromStart?: boolean;
}

/**
 * Maple: the in-memory engine behind every store. Keys are the real strings (no hash as
 * identity); values are bytes. It never reads a clock: every call takes `nowMs`, so the
 * same commands at the same times give the same state on every replica.
 *
 * Ownership: the engine keeps the `Uint8Array` it is given and `get` returns the stored
 * array, both without copying. Callers must not modify a value after `set`, nor a value
 * returned by `get`; copy first when the bytes live in a reused buffer (e.g. a socket
 * read buffer).
 *
 * Reads never change state: a key past its deadline is hidden by `get`/`has` and
 * removed by `purgeExpired` or by the next write to it.
 *
 * Data API: every key carries its version and create/mod revisions (see Entry); the
 * store's revision advances by one per write, or is pinned per replicated entry
 * (`pinRevision`). Beside the hash shards an ordered index of the keys (OrderedKeys),
 * kept from the first write, serves `list` and `count` in O(log n + page) amortised: its
 * upkeep is off the write path (DeferredOrder: writes note keys, folded in between
 * turns); a save writes the keys in index order and a load builds the index from that
 * order in O(n) as it reads (or sorts them, for an older snapshot in hash order).
 *
 * Why an Entry object per key and not a column table of slots (tried: the map held a
 * slot number, values and revisions lived in arrays): with the ordered index off the
 * write path, the object cost inserts 1.25x the pre-data-API engine and the slot table
 * 1.44x at 100k keys (1.24x vs 1.50x at 1M), in alternating rounds of CPU time.
 */
export class MapleDB implements KVDB {
  /** Each shard once (for sizes, saves, scans); `directory` routes keys to them. */
  private shards: Shard[];
  private directory: Shard[];
  private mask: number;
  /** Shards of a new keyspace (a load, a re-routing), before any split. */
  private readonly baseShards: number;
  private heap = new DeadlineHeap();
  /**
   * Every present key (including ones past their delete deadline not purged yet), in byte
   * order once settled (see DeferredOrder).
   */
  private ordered: DeferredOrder;
  private readonly orderOptions: DeferredOrderOptions;
  /**
   * Whether keys are routed by shardHashWide instead of the sampled shardHash. Switched
   * on, once and for good, when the sampled hash piles keys into one shard (see
   * checkSkew), so map sizes stay bounded even for key shapes the samples miss.
   */
  private wideRouting = false;
  private skewCheckAtKeys = SKEW_CHECK_MIN_KEYS;
  private approxBytes = 0;
  private saving = false;
  /** The store's revision: the last one stamped on a write (or pinned by `pinRevision`). */
  private rev = 0;
  /** While set (by pinRevision), every write stamps this revision instead of the next one. */
  private pinned = false;
  private listener: ChangeListener | undefined;

  constructor(options: MapleOptions = {}) {
    const count = options.shards ?? DEFAULT_SHARDS;
    checkShardCount(count);
    this.baseShards = count;
    this.mask = count - 1;
    this.shards = newShards(count);
    this.directory = this.shards.slice();
    this.orderOptions = options.order ?? {};
    // Built (empty) from the start, so every write keeps it (see DeferredOrder); or left
    // unbuilt until the first reader builds it.
    this.ordered = this.newOrder(options.indexFromStart === false ? undefined : new OrderedKeys());
  }

  /** Keys present, expired or not: the maps' sizes summed (for the ordered index's bounds). */
  private keyCount(): number {
    let count = 0;
    for (const shard of this.shards) count += shard.map.size;
    return count;
  }

  /** An ordered index over this database's maps, given one of every key they hold. */
  private newOrder(settled: OrderedKeys | undefined): DeferredOrder {
    return new DeferredOrder(
      (key) => this.shardOf(key).map.has(key),
      // Live iterators over the maps of the moment, each bounded by the keys it holds now
      // (see FirstKeys, OrderedKeysBuilder and DeferredOrder).
      () => this.shards.map((shard) => new FirstKeys(shard.map.keys(), shard.map.size)),
      settled,
      // Blocks of strings: the maps hold every key's string anyway (see stringIndex).
      { ...this.orderOptions, keyCount: () => this.keyCount(), stringIndex: true },
    );
  }

  /** The store's current revision: the highest revision of any write so far. */
  get revision(): number {
    return this.rev;
  }

  /**
   * Makes every later write stamp `revision` (the replicated store passes the Raft index
   * of the entry it applies, so one entry is one revision on every replica). Without a
   * pin, each write stamps the next revision of a per-store counter. Revisions never go
   * back: a smaller one is a programming error.
   */
  pinRevision(revision: number): void {
    checkPinnedRevision(revision, this.rev);
    this.rev = revision;
    this.pinned = true;
  }

  unpinRevision(): void {
    this.pinned = false;
  }

  onChange(listener: ChangeListener | undefined): void {
    this.listener = listener;
  }

  nextDeadlineMs(): number {
    return this.heap.peek()?.deleteAtMs ?? NEVER;
  }

  private shardOf(key: string): Shard {
    return this.directory[(this.wideRouting ? shardHashWide(key) : shardHash(key)) & this.mask]!;
  }

  private stamp(): number {
    return this.pinned ? this.rev : ++this.rev;
  }

  get(key: string, nowMs: number): Uint8Array | undefined {
    const shard = this.shardOf(key);
    const slot = shard.map.get(key);
    // See Shard.timedCount: with no timed entries in the shard a slot is a plain entry.
    if (slot === undefined) return undefined;
    if (shard.timedCount !== 0 && slot instanceof TimedEntry && isExpired(slot, nowMs)) return undefined;
    return slot.value;
  }

  /** The value with its revisions, as `get` sees it; a fresh object the caller may keep. */
  getEntry(key: string, nowMs: number): EntryInfo | undefined {
    const slot = this.shardOf(key).map.get(key);
    if (slot === undefined || (slot instanceof TimedEntry && isExpired(slot, nowMs))) return undefined;
    return entryInfo(key, slot, slot.value);
  }

  has(key: string, nowMs: number): boolean {
    const shard = this.shardOf(key);
    if (shard.timedCount === 0) return shard.map.has(key);
    const slot = shard.map.get(key);
    if (slot === undefined) return false;
    return !(slot instanceof TimedEntry) || !isDeleted(slot, nowMs);
  }

  set(key: string, value: Uint8Array, nowMs: number): void {
    const shard = this.shardOf(key);
    if (shard.saveView !== null) detachForSave(shard);
    const map = shard.map;
    const old = map.get(key);
    const revision = this.stamp();
    this.listener?.("put", key, value, revision);
    if (old === undefined) {
      this.approxBytes += key.length + value.byteLength;
      map.set(key, new Entry(value, 1, revision, revision));
      this.ordered.added(key);
      if (map.size >= shard.splitAt) this.split(shard);
      if (shard.map.size > this.skewCheckAtKeys) this.checkSkew();
      return;
    }
    this.approxBytes += value.byteLength - old.value.byteLength;
    if (shard.timedCount !== 0 && old instanceof TimedEntry) {
      this.forgetTimed(shard, old);
      const reborn = isDeleted(old, nowMs);
      map.set(
        key,
        new Entry(value, reborn ? 1 : old.version + 1, reborn ? revision : old.createRevision, revision),
      );
      return;
    }
    if (shard.saveView === null) {
      // No save can see this object: change it in place, no allocation.
      old.value = value;
      old.version++;
      old.modRevision = revision;
      return;
    }
    map.set(key, new Entry(value, old.version + 1, old.createRevision, revision));
  }

  setE(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): void {
    checkDurations(expireInMs, deleteInMs);
    if (expireInMs === 0 && deleteInMs === 0) {
      this.set(key, value, nowMs);
      return;
    }
    this.writeWithDurations(this.shardOf(key), key, value, expireInMs, deleteInMs, nowMs);
  }

  setEIfUnset(
    key: string,
    value: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    checkDurations(expireInMs, deleteInMs);
    const shard = this.shardOf(key);
    const old = shard.map.get(key);
    // Past its delete deadline a key is absent even if not purged yet; expired is not.
    if (old !== undefined && !(old instanceof TimedEntry && isDeleted(old, nowMs))) return false;
    this.writeWithDurations(shard, key, value, expireInMs, deleteInMs, nowMs);
    return true;
  }

  expire(key: string, nowMs: number): void {
    const shard = this.shardOf(key);
    const slot = shard.map.get(key);
    if (slot === undefined) return;
    if (slot instanceof TimedEntry) {
      if (isExpired(slot, nowMs)) {
        // Already hidden from get; a key past its delete deadline is gone, so drop it now.
        if (isDeleted(slot, nowMs)) this.remove(shard, key, slot, "expire");
        return;
      }
      if (shard.saveView !== null) detachForSave(shard);
      this.writeTimed(shard, key, slot.value, nowMs, slot.deleteAtMs, nowMs, "expire");
      return;
    }
    if (shard.saveView !== null) detachForSave(shard);
    this.writeTimed(shard, key, slot.value, nowMs, NEVER, nowMs, "expire");
  }

  delete(key: string, _nowMs: number): void {
    const shard = this.shardOf(key);
    const slot = shard.map.get(key);
    if (slot === undefined) return;
    this.remove(shard, key, slot, "delete");
  }

  deleteIfEquals(key: string, expected: Uint8Array, nowMs: number): boolean {
    const shard = this.shardOf(key);
    const slot = shard.map.get(key);
    // Compares the value present even when expired (not past its delete deadline), so a
    // lock owner can still release a lock whose key someone expired.
    const present = presentValue(slot, nowMs);
    if (present === undefined) return true;
    if (!bytesEqual(present, expected)) return false;
    this.remove(shard, key, slot!, "delete");
    return true;
  }

  renewIfEquals(
    key: string,
    expected: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    checkDurations(expireInMs, deleteInMs);
    const shard = this.shardOf(key);
    const live = liveValue(shard.map.get(key), nowMs);
    if (live === undefined || !bytesEqual(live, expected)) return false;
    this.writeWithDurations(shard, key, live, expireInMs, deleteInMs, nowMs);
    return true;
  }

  /**
   * Live keys (those `get` returns) of a range in byte order: O(log n + keys visited).
   * Keys that are expired or past their delete deadline are skipped, not returned.
   */
  list(options: ListOptions, nowMs: number): ListPage {
    return collectPage<Entry>(
      options,
      (visit) => this.scanLive(options, nowMs, visit),
      (key, entry) => entryInfo(key, entry, options.keysOnly ? undefined : entry.value),
    );
  }

  /** How many live keys a range holds (what `list` would return without a limit). */
  count(range: KeyRange, nowMs: number): number {
    return countVisited<Entry>((visit) => this.scanLive({ ...range, after: undefined }, nowMs, visit));
  }

  private scanLive(range: ScanRange, nowMs: number, visit: Visit<Entry>): void {
    const prefix = range.prefix;
    const end = prefix === undefined ? range.to : undefined;
    scanKeyRange(this.ordered, range, (key) => {
      if (pastRangeEnd(key, prefix, end)) return false;
      const slot = this.shardOf(key).map.get(key);
      if (slot === undefined) throw indexOutOfStep(key, "the map");
      if (slot instanceof TimedEntry && isExpired(slot, nowMs)) return true;
      return visit(key, slot);
    });
  }

  /**
   * Whether `list` and `count` would answer now without folding (or, once dropped,
   * building) the ordered index in one piece: it is built and few writes wait to be
   * folded in (one slice of work). When false they still answer (correctly), but by
   * folding or building in one piece: a caller that can wait should `await
   * prepareOrder()` first. (KVDB.orderReady's `pageLimit` is not taken: every page is
   * served by the index, so the size of the read does not change the answer.)
   */
  orderReady(): boolean {
    return this.ordered.ready;
  }

  /**
   * Builds or settles the ordered index in slices between event-loop turns (each at most
   * a few ms); resolves once `orderReady()` (concurrent callers share one build). Writes
   * may come before the caller lists: those few are folded in by the list itself.
   */
  prepareOrder(): Promise<void> {
    return this.ordered.whenReady();
  }

  dropOrder(): void {
    this.ordered = this.ordered.dropped();
  }

  /** What the ordered index has done (slices, builds, one-piece settles); for tests and monitoring. */
  get orderStats(): Readonly<OrderStats> {
    return this.ordered.stats;
  }

  /** Keys the ordered index read or moved for lists and counts so far (see OrderedKeys.work); for tests. */
  get orderWork(): number {
    return this.ordered.work;
  }

  /** Keys in the ordered index, in order; for tests and consistency checks. */
  orderedKeys(): string[] {
    return this.ordered.keys();
  }

  purgeExpired(nowMs: number, maxEntries: number): number {
    let removed = 0;
    while (removed < maxEntries) {
      const due = this.heap.peek();
      if (due === undefined || due.deleteAtMs > nowMs) break;
      const shard = this.shardOf(due.key);
      if (shard.map.get(due.key) !== due) {
        throw new DkvError(
          "INTERNAL",
          `deadline index out of step with the map for key ${JSON.stringify(due.key)}`,
        );
      }
      this.remove(shard, due.key, due, "expire");
      removed++;
    }
    return removed;
  }

  info(nowMs: number): DbInfo {
    let present = 0;
    let timed = 0;
    for (const shard of this.shards) {
      present += shard.map.size;
      timed += shard.timedCount;
    }
    const due = this.heap.countDue(nowMs);
    return {
      keys: present - due,
      keysWithDeadline: timed - due,
      approxBytes: this.approxBytes,
      shards: this.shards.length,
    };
  }

  /** Keys held by each shard (including ones past their delete deadline); for monitoring and tests. */
  shardSizes(): number[] {
    return this.shards.map((shard) => shard.map.size);
  }

  /** Whether the sampled hash was found to pile keys up and keys now route by the wide hash. */
  get routesByWideHash(): boolean {
    return this.wideRouting;
  }

  /** Keys in the deadline index (those with a delete deadline); for monitoring and tests. */
  get deadlineIndexSize(): number {
    return this.heap.size;
  }

  /**
   * Streams a snapshot of the state at the moment of the call: writes made while it
   * streams are not in it (copy-on-write per shard, see Shard.saveView). Every key in the
   * maps is saved, also one past its delete deadline that no purge removed yet: a replica
   * restored from the snapshot must hold exactly what the others hold, or its later purge
   * (a removal takes a revision and is a watch event) would differ from theirs. One save
   * at a time per database. (`_nowMs`, part of the KVDB interface, does not matter here.)
   */
  save(sink: ByteSink, _nowMs: number): Promise<void> {
    if (this.saving) return saveAlreadyRunning();
    this.saving = true;
    // Captured now, before any await, so the snapshot is of this instant. Written in hash
    // order, shard by shard: writing in key order needed the whole index folded and copied
    // in one turn first (0.5 s at 300k keys, every snapshot) and made the load no faster
    // (records in key order reach the hash maps scattered); a load sorts the keys in steps.
    const shards = this.shards;
    for (const shard of shards) shard.saveView = shard.map;
    const written = streamSnapshot(shards, sink, this.rev);
    return written.finally(() => {
      for (const shard of shards) shard.saveView = null;
      this.saving = false;
    });
  }

  /**
   * Parses the whole snapshot into a fresh keyspace and swaps it in only once the
   * trailer and checksum verify, so a bad snapshot throws DkvError("CORRUPT") and
   * leaves the current contents as they were. Reads format versions 1 (no revisions:
   * keys load at version 1, revision 0), 2 and 3 (whose "listed" flag no longer matters:
   * every store keeps its index). The ordered index is built as part of the load: in O(n)
   * as the keys are read when they come in key order, else (what `save` writes: hash
   * order) sorted in steps with turns between them before the load ends; either way the
   * first page after it is served by the index at once.
   */
  async load(source: AsyncIterable<Uint8Array>): Promise<void> {
    const loaded = await loadKeyspace(source, this.baseShards, this.wideRouting ? shardHashWide : shardHash);
    this.ordered.close();
    this.shards = loaded.routing.shards;
    this.directory = loaded.routing.directory;
    this.mask = loaded.routing.mask;
    this.heap = loaded.heap;
    this.ordered = this.newOrder(loaded.settled);
    this.approxBytes = loaded.approxBytes;
    this.rev = loaded.revision;
    this.pinned = false;
    this.skewCheckAtKeys = SKEW_CHECK_MIN_KEYS;
    this.checkSkew();
  }

  /**
   * Stores `value` for `key` (routed to `shard`) with deadlines `expireInMs` and
   * `deleteInMs` from `nowMs` (0: none; with neither, as `set` does).
   */
  private writeWithDurations(
    shard: Shard,
    key: string,
    value: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): void {
    if (expireInMs === 0 && deleteInMs === 0) {
      this.set(key, value, nowMs);
      return;
    }
    if (shard.saveView !== null) detachForSave(shard);
    this.writeTimed(shard, key, value, deadline(nowMs, expireInMs), deadline(nowMs, deleteInMs), nowMs);
  }

  /**
   * Stores `value` with deadlines (at least one finite) over whatever `key` holds.
   * The caller has already detached the shard from a running save.
   */
  private writeTimed(
    shard: Shard,
    key: string,
    value: Uint8Array,
    expireAtMs: number,
    deleteAtMs: number,
    nowMs: number,
    change: "put" | "expire" = "put",
  ): void {
    const old = shard.map.get(key);
    const revision = this.stamp();
    this.listener?.(change, key, change === "put" ? value : undefined, revision);
    if (old instanceof TimedEntry) {
      this.approxBytes += value.byteLength - old.value.byteLength;
      const reborn = isDeleted(old, nowMs);
      const version = reborn ? 1 : old.version + 1;
      const createRevision = reborn ? revision : old.createRevision;
      if (shard.saveView === null) {
        // No save can see this object: change it in place, no allocation.
        old.value = value;
        old.version = version;
        old.createRevision = createRevision;
        old.modRevision = revision;
        old.expireAtMs = expireAtMs;
        old.deleteAtMs = deleteAtMs;
        if (old.heapIndex >= 0) {
          if (deleteAtMs !== NEVER) this.heap.update(old);
          else this.heap.remove(old);
        } else if (deleteAtMs !== NEVER) {
          this.heap.push(old);
        }
        return;
      }
      const next = new TimedEntry(key, value, expireAtMs, deleteAtMs, version, createRevision, revision);
      if (old.heapIndex >= 0) {
        if (deleteAtMs !== NEVER) this.heap.replace(old, next);
        else this.heap.remove(old);
      } else if (deleteAtMs !== NEVER) {
        this.heap.push(next);
      }
      shard.map.set(key, next);
      return;
    }
    this.approxBytes +=
      old === undefined ? key.length + value.byteLength : value.byteLength - old.value.byteLength;
    const entry =
      old === undefined
        ? new TimedEntry(key, value, expireAtMs, deleteAtMs, 1, revision, revision)
        : new TimedEntry(key, value, expireAtMs, deleteAtMs, old.version + 1, old.createRevision, revision);
    if (deleteAtMs !== NEVER) this.heap.push(entry);
    shard.timedCount++;
    shard.map.set(key, entry);
    if (old === undefined) {
      this.ordered.added(key);
      if (shard.map.size >= shard.splitAt) this.split(shard);
      if (shard.map.size > this.skewCheckAtKeys) this.checkSkew();
    }
  }

  /**
   * Re-routes every key by the wide hash when one shard holds far more than its share:
   * the sampled hash reads a few fixed positions and some key shapes vary only
   * elsewhere. A one-off O(keys) pause, paid early (the pile-up shows by a few thousand
   * keys), instead of one unbounded map for the life of the database. Never during a
   * save, whose copy-on-write views are per shard; the next check retries.
   */
  private checkSkew(): void {
    if (!this.wideRouting && !this.saving && isSkewed(this.shards)) {
      const routing = reshard(this.shards, this.baseShards, shardHashWide);
      this.shards = routing.shards;
      this.directory = routing.directory;
      this.mask = routing.mask;
      this.wideRouting = true;
    }
    this.skewCheckAtKeys = Math.max(SKEW_CHECK_MIN_KEYS, largestShardSize(this.shards) * 2);
  }

  /** Splits `shard` in two (see SPLIT_KEYS); not while a save streams (the next insert retries). */
  private split(shard: Shard): void {
    if (this.saving) return;
    const routing: Routing = { directory: this.directory, mask: this.mask, shards: this.shards };
    splitShard(routing, shard, this.wideRouting ? shardHashWide : shardHash);
    this.directory = routing.directory;
    this.mask = routing.mask;
  }

  private remove(shard: Shard, key: string, slot: Slot, change: "delete" | "expire"): void {
    // A removal is a change with a revision of its own (unpinned: lstore's next one).
    const revision = this.stamp();
    this.listener?.(change, key, undefined, revision);
    if (shard.saveView !== null) detachForSave(shard);
    this.approxBytes -= key.length + slot.value.byteLength;
    if (slot instanceof TimedEntry) this.forgetTimed(shard, slot);
    shard.map.delete(key);
    this.ordered.removed(key);
  }

  private forgetTimed(shard: Shard, entry: TimedEntry): void {
    if (entry.heapIndex >= 0) this.heap.remove(entry);
    shard.timedCount--;
  }
}

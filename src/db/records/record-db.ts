/**
 * RecordDB: a KVDB whose keys and values live in records (see RecordTable), not in a JS
 * object, string and array per key, for a store that holds many small keys (the lstore).
 * It answers exactly as MapleDB does, writes the same snapshot format and reads Maple's.
 *
 * Beside the records, small side tables for the few keys that need them: deadlines (a
 * TimedEntry per key with a deadline, in a Map by key and Maple's DeadlineHeap) and large
 * values (kept as the caller's array, in a Map by key, past EXTERNAL_VALUE_BYTES). The
 * ordered index is Maple's DeferredOrder over the keys, built by the first list.
 *
 * Ownership differs from Maple in one way: `set` copies a small value into its record
 * (the caller may reuse its array), and `get` returns a fresh copy.
 */
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
import { DeadlineHeap } from "../maple/deadline-heap.ts";
import { DeferredOrder } from "../maple/deferred-order.ts";
import {
  bytesEqual,
  checkDurations,
  checkPinnedRevision,
  deadline,
  saveAlreadyRunning,
} from "../maple/entry-reads.ts";
import type { KeyRuns } from "../maple/key-runs.ts";
import type { DeferredOrderOptions, OrderStats } from "../maple/order-costs.ts";
import {
  collectPage,
  countVisited,
  indexOutOfStep,
  pastRangeEnd,
  type ScanRange,
  scanKeyRange,
  type Visit,
} from "../maple/range-scan.ts";
import { corrupt, SnapshotDecoder } from "../maple/snapshot-codec.ts";
import { decodeAll, SnapshotWriter, settleLoadedOrder } from "../maple/snapshot-io.ts";
import { StreamedKeysBuilder } from "../maple/streamed-keys-builder.ts";
import { Entry, isExpired, NEVER, TimedEntry } from "../maple/timed-entry.ts";
import { FLAG_EXTERNAL, FLAG_TIMED, VERSION_MAX } from "./record-layout.ts";
import { RecordTable } from "./record-table.ts";

/** Values longer than this stay the caller's array, outside the records. */
export const EXTERNAL_VALUE_BYTES = 4096;
const EMPTY = new Uint8Array(0);

export interface RecordDBOptions {
  /** How the ordered index is built in slices (see DeferredOrder); tests pass a scheduler. */
  order?: DeferredOrderOptions;
}

export class RecordDB implements KVDB {
  private table = new RecordTable();
  /** Deadlines of the keys that have one (their records carry FLAG_TIMED). */
  private timed = new Map<string, TimedEntry>();
  private heap = new DeadlineHeap();
  /** Values over EXTERNAL_VALUE_BYTES (their records carry FLAG_EXTERNAL and no value bytes). */
  private external = new Map<string, Uint8Array>();
  private ordered: DeferredOrder;
  private readonly orderOptions: DeferredOrderOptions;
  private approxBytes = 0;
  private saving = false;
  private rev = 0;
  private pinned = false;
  private listener: ChangeListener | undefined;

  constructor(options: RecordDBOptions = {}) {
    this.orderOptions = options.order ?? {};
    this.ordered = this.newOrder(undefined);
  }

  private newOrder(settled: KeyRuns | undefined): DeferredOrder {
    return new DeferredOrder(
      (key) => this.table.find(key) !== 0,
      // One source per shard, its keys decoded when the build first reads it: keys added
      // or removed since the build began are the notes' business (see DeferredOrder).
      () => {
        const sources: Iterator<string>[] = [];
        for (let i = 0; i < this.table.shardCount; i++) sources.push(lazyKeys(this.table, i));
        return sources;
      },
      settled,
      { ...this.orderOptions, keyCount: () => this.table.size },
    );
  }

  get revision(): number {
    return this.rev;
  }

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

  private stamp(): number {
    return this.pinned ? this.rev : ++this.rev;
  }

  /** The record's value (a fresh copy, or the external array). */
  private valueOf(ref: number, key: string): Uint8Array {
    if ((this.table.flags(ref) & FLAG_EXTERNAL) !== 0) return this.external.get(key)!;
    return this.table.copyValue(ref);
  }

  /** The deadlines of a found record's key, or undefined when it has none. */
  private timedOf(ref: number, key: string): TimedEntry | undefined {
    return (this.table.flags(ref) & FLAG_TIMED) !== 0 ? this.timed.get(key) : undefined;
  }

  get(key: string, nowMs: number): Uint8Array | undefined {
    const ref = this.table.find(key);
    if (ref === 0) return undefined;
    const flags = this.table.flags(ref);
    if (flags !== 0) {
      if ((flags & FLAG_TIMED) !== 0 && isExpired(this.timed.get(key)!, nowMs)) return undefined;
      if ((flags & FLAG_EXTERNAL) !== 0) return this.external.get(key)!;
    }
    return this.table.copyValue(ref);
  }

  getEntry(key: string, nowMs: number): EntryInfo | undefined {
    const table = this.table;
    const ref = table.find(key);
    if (ref === 0) return undefined;
    const flags = table.flags(ref);
    if (flags === 0) return table.entry(key, ref);
    if ((flags & FLAG_TIMED) !== 0 && isExpired(this.timed.get(key)!, nowMs)) return undefined;
    return {
      key,
      value: (flags & FLAG_EXTERNAL) !== 0 ? this.external.get(key)! : table.copyValue(ref),
      version: table.version(ref),
      createRevision: table.createRevision(ref),
      modRevision: table.modRevision(ref),
    };
  }

  has(key: string, nowMs: number): boolean {
    const ref = this.table.find(key);
    if (ref === 0) return false;
    const timed = this.timedOf(ref, key);
    return timed === undefined || nowMs < timed.deleteAtMs;
  }

  set(key: string, value: Uint8Array, nowMs: number): void {
    // Before anything changes: a refused write takes no revision and tells no listener.
    this.table.checkRoom(key);
    const revision = this.stamp();
    this.listener?.("put", key, value, revision);
    const table = this.table;
    const ref = table.find(key);
    const flags = value.length > EXTERNAL_VALUE_BYTES ? FLAG_EXTERNAL : 0;
    if (ref === 0) {
      this.approxBytes += key.length + value.byteLength;
      if (flags !== 0) this.external.set(key, value);
      table.insert(key, value, 1, revision, revision, flags);
      this.ordered.added(key);
      return;
    }
    if (flags === 0) {
      const oldLength = table.valueLength(ref);
      if (table.overwrite(ref, value, revision)) {
        // (A record without flags holds its value: its length is the value's.)
        this.approxBytes += value.byteLength - oldLength;
        return;
      }
    }
    const oldFlags = table.flags(ref);
    let version = table.version(ref) + 1;
    let createRevision = table.createRevision(ref);
    this.approxBytes += value.byteLength - this.valueLengthOf(ref, key, oldFlags);
    if ((oldFlags & FLAG_TIMED) !== 0) {
      const timed = this.timed.get(key)!;
      if (nowMs >= timed.deleteAtMs) {
        version = 1;
        createRevision = revision;
      }
      this.forgetTimed(key, timed);
    }
    this.storeValue(ref, key, value, version, createRevision, revision, flags, oldFlags);
  }

  private valueLengthOf(ref: number, key: string, flags: number): number {
    return (flags & FLAG_EXTERNAL) !== 0 ? this.external.get(key)!.byteLength : this.table.valueLength(ref);
  }

  /** Rewrites a found record with a new value; `flags` says where the value goes and whether it is timed. */
  private storeValue(
    ref: number,
    key: string,
    value: Uint8Array,
    version: number,
    createRevision: number,
    modRevision: number,
    flags: number,
    oldFlags: number,
  ): void {
    if ((flags & FLAG_EXTERNAL) !== 0) this.external.set(key, value);
    else if ((oldFlags & FLAG_EXTERNAL) !== 0) this.external.delete(key);
    this.table.update(ref, value, version, createRevision, modRevision, flags);
  }

  setE(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): void {
    checkDurations(expireInMs, deleteInMs);
    this.writeWithDurations(key, value, expireInMs, deleteInMs, nowMs);
  }

  setEIfUnset(
    key: string,
    value: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    checkDurations(expireInMs, deleteInMs);
    const ref = this.table.find(key);
    if (ref !== 0) {
      const timed = this.timedOf(ref, key);
      // Past its delete deadline a key is absent even if not purged yet; expired is not.
      if (timed === undefined || nowMs < timed.deleteAtMs) return false;
    }
    this.writeWithDurations(key, value, expireInMs, deleteInMs, nowMs);
    return true;
  }

  expire(key: string, nowMs: number): void {
    const ref = this.table.find(key);
    if (ref === 0) return;
    const timed = this.timedOf(ref, key);
    if (timed !== undefined) {
      if (isExpired(timed, nowMs)) {
        // Already hidden from get; a key past its delete deadline is gone, so drop it now.
        if (nowMs >= timed.deleteAtMs) this.remove(key, "expire");
        return;
      }
      this.writeTimed(key, undefined, nowMs, timed.deleteAtMs, nowMs, "expire");
      return;
    }
    this.writeTimed(key, undefined, nowMs, NEVER, nowMs, "expire");
  }

  delete(key: string, _nowMs: number): void {
    if (this.table.find(key) === 0) return;
    this.remove(key, "delete");
  }

  deleteIfEquals(key: string, expected: Uint8Array, nowMs: number): boolean {
    const ref = this.table.find(key);
    if (ref === 0) return true;
    // Compares the value present even when expired (not past its delete deadline).
    const timed = this.timedOf(ref, key);
    if (timed !== undefined && nowMs >= timed.deleteAtMs) return true;
    if (!this.valueEquals(ref, key, expected)) return false;
    this.remove(key, "delete");
    return true;
  }

  private valueEquals(ref: number, key: string, expected: Uint8Array): boolean {
    if ((this.table.flags(ref) & FLAG_EXTERNAL) === 0) return this.table.valueEquals(ref, expected);
    return bytesEqual(this.external.get(key)!, expected);
  }

  renewIfEquals(
    key: string,
    expected: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    checkDurations(expireInMs, deleteInMs);
    const ref = this.table.find(key);
    if (ref === 0) return false;
    const timed = this.timedOf(ref, key);
    if (timed !== undefined && isExpired(timed, nowMs)) return false;
    if (!this.valueEquals(ref, key, expected)) return false;
    this.writeWithDurations(key, this.valueOf(ref, key), expireInMs, deleteInMs, nowMs);
    return true;
  }

  private writeWithDurations(
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
    this.writeTimed(key, value, deadline(nowMs, expireInMs), deadline(nowMs, deleteInMs), nowMs, "put");
  }

  /**
   * Stores `value` (undefined: keeps the value the key holds, which must exist) with
   * deadlines, at least one finite, over whatever `key` holds.
   */
  private writeTimed(
    key: string,
    value: Uint8Array | undefined,
    expireAtMs: number,
    deleteAtMs: number,
    nowMs: number,
    change: "put" | "expire",
  ): void {
    this.table.checkRoom(key);
    const revision = this.stamp();
    if (this.listener !== undefined) {
      this.listener(change, key, change === "put" ? value : undefined, revision);
    }
    const table = this.table;
    const ref = table.find(key);
    const flags =
      FLAG_TIMED | (value !== undefined && value.length > EXTERNAL_VALUE_BYTES ? FLAG_EXTERNAL : 0);
    if (ref === 0) {
      const stored = value!;
      this.approxBytes += key.length + stored.byteLength;
      if ((flags & FLAG_EXTERNAL) !== 0) this.external.set(key, stored);
      table.insert(key, stored, 1, revision, revision, flags);
      this.addTimed(new TimedEntry(key, EMPTY, expireAtMs, deleteAtMs, 0, 0, 0));
      this.ordered.added(key);
      return;
    }
    const oldFlags = table.flags(ref);
    let version = table.version(ref) + 1;
    let createRevision = table.createRevision(ref);
    const old = (oldFlags & FLAG_TIMED) !== 0 ? this.timed.get(key)! : undefined;
    if (old !== undefined && nowMs >= old.deleteAtMs) {
      version = 1;
      createRevision = revision;
    }
    if (value === undefined) {
      table.update(
        ref,
        undefined,
        version,
        createRevision,
        revision,
        (oldFlags & FLAG_EXTERNAL) | FLAG_TIMED,
      );
    } else {
      this.approxBytes += value.byteLength - this.valueLengthOf(ref, key, oldFlags);
      this.storeValue(ref, key, value, version, createRevision, revision, flags, oldFlags);
    }
    const next = new TimedEntry(key, EMPTY, expireAtMs, deleteAtMs, 0, 0, 0);
    if (old === undefined) {
      this.addTimed(next);
      return;
    }
    // A fresh object each time (a running save may hold the old one).
    if (old.heapIndex >= 0) {
      if (deleteAtMs !== NEVER) this.heap.replace(old, next);
      else this.heap.remove(old);
    } else if (deleteAtMs !== NEVER) {
      this.heap.push(next);
    }
    this.timed.set(key, next);
  }

  private addTimed(entry: TimedEntry): void {
    if (entry.deleteAtMs !== NEVER) this.heap.push(entry);
    this.timed.set(entry.key, entry);
  }

  private forgetTimed(key: string, entry: TimedEntry): void {
    if (entry.heapIndex >= 0) this.heap.remove(entry);
    this.timed.delete(key);
  }

  /** Removes a present key (found just before). */
  private remove(key: string, change: "delete" | "expire"): void {
    const revision = this.stamp();
    this.listener?.(change, key, undefined, revision);
    const table = this.table;
    const ref = table.find(key);
    const flags = table.flags(ref);
    this.approxBytes -= key.length + this.valueLengthOf(ref, key, flags);
    if ((flags & FLAG_TIMED) !== 0) this.forgetTimed(key, this.timed.get(key)!);
    if ((flags & FLAG_EXTERNAL) !== 0) this.external.delete(key);
    table.remove(ref);
    this.ordered.removed(key);
  }

  list(options: ListOptions, nowMs: number): ListPage {
    const table = this.table;
    return collectPage<number>(
      options,
      (visit) => this.scanLive(options, nowMs, visit),
      (key, ref) => ({
        key,
        value: options.keysOnly ? undefined : this.valueOf(ref, key),
        version: table.version(ref),
        createRevision: table.createRevision(ref),
        modRevision: table.modRevision(ref),
      }),
    );
  }

  count(range: KeyRange, nowMs: number): number {
    return countVisited<number>((visit) => this.scanLive({ ...range, after: undefined }, nowMs, visit));
  }

  /** The live keys of a range, in order, with their records. */
  private scanLive(range: ScanRange, nowMs: number, visit: Visit<number>): void {
    const prefix = range.prefix;
    const end = prefix === undefined ? range.to : undefined;
    scanKeyRange(this.ordered, range, (key) => {
      if (pastRangeEnd(key, prefix, end)) return false;
      const ref = this.table.find(key);
      if (ref === 0) throw indexOutOfStep(key, "the records");
      const timed = this.timedOf(ref, key);
      if (timed !== undefined && isExpired(timed, nowMs)) return true;
      return visit(key, ref);
    });
  }

  orderReady(): boolean {
    return this.ordered.ready;
  }

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

  /** Keys the ordered index read or moved for lists and counts so far; for tests. */
  get orderWork(): number {
    return this.ordered.work;
  }

  /** Keys in the ordered index, in order; for tests and consistency checks. */
  orderedKeys(): string[] {
    return this.ordered.keys();
  }

  /** Keys held, purged or not; for tests. */
  get size(): number {
    return this.table.size;
  }

  /** Keys in the deadline index; for tests. */
  get deadlineIndexSize(): number {
    return this.heap.size;
  }

  /** Bytes of the records' arena and tables; for tests and benchmarks. */
  footprint(): { arenaBytes: number; tableBytes: number; deadBytes: number } {
    return this.table.footprint();
  }

  purgeExpired(nowMs: number, maxEntries: number): number {
    let removed = 0;
    while (removed < maxEntries) {
      const due = this.heap.peek();
      if (due === undefined || due.deleteAtMs > nowMs) break;
      if (this.timed.get(due.key) !== due) {
        throw new DkvError(
          "INTERNAL",
          `deadline index out of step with the records for key ${JSON.stringify(due.key)}`,
        );
      }
      this.remove(due.key, "expire");
      removed++;
    }
    return removed;
  }

  info(nowMs: number): DbInfo {
    const due = this.heap.countDue(nowMs);
    return {
      keys: this.table.size - due,
      keysWithDeadline: this.timed.size - due,
      approxBytes: this.approxBytes,
      shards: this.table.shardCount,
    };
  }

  /**
   * Streams a snapshot of this instant (Maple's format): the records are frozen (no
   * rewrite in place, no move) until it ends, the side tables copied.
   */
  save(sink: ByteSink, _nowMs: number): Promise<void> {
    if (this.saving) return saveAlreadyRunning();
    this.saving = true;
    const table = this.table;
    const refs = table.freeze();
    const timed = new Map(this.timed);
    const external = new Map(this.external);
    const written = streamRecords(table, refs, timed, external, sink, this.rev);
    return written.finally(() => {
      this.saving = false;
      // A load during the save replaced the table: the old one is simply dropped.
      table.thaw();
    });
  }

  /**
   * Parses the whole snapshot into fresh records and swaps them in only once the trailer
   * and checksum verify; a bad snapshot throws DkvError("CORRUPT") and changes nothing.
   */
  async load(source: AsyncIterable<Uint8Array>): Promise<void> {
    const table = new RecordTable();
    const timedKeys = new Map<string, TimedEntry>();
    const heap = new DeadlineHeap();
    const external = new Map<string, Uint8Array>();
    const order = new StreamedKeysBuilder();
    let approxBytes = 0;
    const decoder = new SnapshotDecoder((key, value, expireAtMs, deleteAtMs, revisions) => {
      table.checkRoom(key);
      if (revisions.version > VERSION_MAX) {
        throw new DkvError(
          "TOO_LARGE",
          `key ${JSON.stringify(key.slice(0, 64))} has version ${revisions.version}, past the ${VERSION_MAX} an lstore keeps`,
        );
      }
      if (table.find(key) !== 0) {
        throw corrupt(`key ${JSON.stringify(key.slice(0, 64))} appears twice`, decoder.currentRecordOffset);
      }
      order.add(key);
      approxBytes += key.length + value.byteLength;
      let flags = 0;
      if (value.byteLength > EXTERNAL_VALUE_BYTES) {
        flags |= FLAG_EXTERNAL;
        external.set(key, value);
      }
      if (expireAtMs !== NEVER || deleteAtMs !== NEVER) {
        flags |= FLAG_TIMED;
        const entry = new TimedEntry(key, EMPTY, expireAtMs, deleteAtMs, 0, 0, 0);
        if (deleteAtMs !== NEVER) heap.push(entry);
        timedKeys.set(key, entry);
      }
      table.insert(key, value, revisions.version, revisions.createRevision, revisions.modRevision, flags);
    });
    await decodeAll(decoder, source);
    const settled = await settleLoadedOrder(order);
    this.ordered.close();
    this.table = table;
    this.timed = timedKeys;
    this.heap = heap;
    this.external = external;
    this.ordered = this.newOrder(settled);
    this.approxBytes = approxBytes;
    this.rev = decoder.storeRevision;
    this.pinned = false;
  }
}

/** The keys of one shard of `table`, decoded at the first `next`. */
function lazyKeys(table: RecordTable, shard: number): Iterator<string> {
  let keys: string[] | undefined;
  let i = 0;
  return {
    next(): IteratorResult<string> {
      keys ??= table.shardKeys(shard);
      if (i < keys.length) return { done: false, value: keys[i++]! };
      return { done: true, value: undefined };
    },
  };
}

async function streamRecords(
  table: RecordTable,
  refs: Uint32Array[],
  timed: Map<string, TimedEntry>,
  external: Map<string, Uint8Array>,
  sink: ByteSink,
  revision: number,
): Promise<void> {
  const writer = new SnapshotWriter(sink, revision);
  const encoder = writer.encoder;
  // One Entry reused for every record: the encoder reads it at once.
  const entry = new Entry(EMPTY, 0, 0, 0);
  for (const shardRefs of refs) {
    for (let i = 0; i < shardRefs.length; i++) {
      const ref = shardRefs[i]!;
      const key = table.key(ref);
      const flags = table.flags(ref);
      entry.value = (flags & FLAG_EXTERNAL) !== 0 ? external.get(key)! : table.valueView(ref);
      entry.version = table.version(ref);
      entry.createRevision = table.createRevision(ref);
      entry.modRevision = table.modRevision(ref);
      const deadlines = (flags & FLAG_TIMED) !== 0 ? timed.get(key)! : undefined;
      encoder.add(key, entry, deadlines?.expireAtMs ?? NEVER, deadlines?.deleteAtMs ?? NEVER);
      if (encoder.hasReady) await writer.flush();
    }
  }
  await writer.finish();
}

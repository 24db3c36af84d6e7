import {
  WATCH_BUFFER_BYTES_DEFAULT,
  WATCH_HISTORY_BYTES_DEFAULT,
  WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
} from "../config/defaults.ts";
import { DkvError } from "../errors.ts";
import { decodeKeyRange } from "../text.ts";

/** A change to a key, in commit order. `value` only for "put". */
export interface WatchChange {
  type: "put" | "delete" | "expire";
  key: string;
  value?: Uint8Array;
  revision: number;
}

/**
 * Every change up to `revision` has been delivered, and the store has reached it: first
 * when the watch starts (the revision it starts after, or the store's revision when the
 * watch starts beyond it), then whenever nothing matched for the progress interval.
 */
export interface WatchProgress {
  type: "progress";
  revision: number;
}

export type WatchEvent = WatchChange | WatchProgress;

export interface WatchOptions {
  /** Watch every key starting with the given string instead of that one key. */
  prefix?: boolean;
  /** Replay from this revision (>= 1); absent: changes after the watch starts. */
  fromRevision?: number;
  /** Aborting ends the iteration (no error) and frees the watcher. */
  signal?: AbortSignal;
  /** Idle time before a progress event, ms; default the store's (0: none). */
  progressIntervalMs?: number;
  /**
   * End the watch with UNAVAILABLE ("no leader") once the serving member has had no Raft
   * leader for longer than an election timeout (etcd's WithRequireLeader): a member cut off
   * from the cluster would otherwise serve a correct but stale stream. Replicated stores
   * only; a local store is its own authority and ignores it.
   */
  requireLeader?: boolean;
}

/** The watch asked for revisions older than the kept history. */
export class WatchCompactedError extends DkvError {
  /** The oldest revision a watch may still start from. */
  readonly compactRevision: number;

  constructor(compactRevision: number, fromRevision: number) {
    super(
      "COMPACTED",
      `revision ${fromRevision} is older than the kept watch history; the oldest available is ${compactRevision}. Read the current state (get/list), then watch from its revision + 1`,
    );
    this.compactRevision = compactRevision;
  }

  override toJSON(): {
    error: "COMPACTED";
    message: string;
    outcome: "not-applied";
    compactRevision: number;
  } {
    return {
      error: "COMPACTED",
      message: this.message,
      outcome: "not-applied",
      compactRevision: this.compactRevision,
    };
  }
}

export interface WatchHubOptions {
  /** Bytes of recent changes kept for watches that start from a past revision. */
  historyBytesMax: number;
  /** Bytes of changes one watcher may have queued but not consumed before it is cut (WATCH_SLOW). */
  bufferBytesMax: number;
  /** Default idle time before a progress event, ms; 0: none. */
  progressIntervalMs: number;
}

export const defaultWatchHubOptions: WatchHubOptions = {
  historyBytesMax: WATCH_HISTORY_BYTES_DEFAULT,
  bufferBytesMax: WATCH_BUFFER_BYTES_DEFAULT,
  progressIntervalMs: WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
};

/** What one change is charged in the history and a watcher's buffer: key, value, bookkeeping. */
const EVENT_OVERHEAD_BYTES = 128;

function eventBytes(change: WatchChange): number {
  return changeBytes(change.key, change.value);
}

type ChangeType = WatchChange["type"];

function changeBytes(key: string, value: Uint8Array | undefined): number {
  return key.length * 2 + (value?.byteLength ?? 0) + EVENT_OVERHEAD_BYTES;
}

const CHANGE_TYPES: readonly ChangeType[] = ["put", "delete", "expire"];
const CHANGE_LOG_CAPACITY_MIN = 64;
/** The kept changes' own copies of small keys and values live in chunks of this size. */
const CHANGE_CHUNK_BYTES = 64 * 1024;
/** A change whose ASCII key and value together are at most this many bytes is copied into a chunk. */
const CHANGE_INLINE_BYTES_MAX = 4096;
/** valueLengths: a copied change without a value (delete, expire). */
const NO_VALUE = -1;
/** valueLengths: a change kept by reference (keys[] and values[]), not copied. */
const BY_REFERENCE = -2;

const keyDecoder = new TextDecoder();

/**
 * The kept changes as a ring of parallel arrays, not one object per change; dropping the
 * oldest allocates nothing and never copies the arrays (the ring only grows, by doubling,
 * while the byte bound lets more changes in). Objects are made when a change is read.
 *
 * A small change (ASCII key, key and value at most CHANGE_INLINE_BYTES_MAX bytes: the
 * common write) keeps a copy of its key and value bytes in shared chunks instead of the
 * published string and array. Held for the whole history (tens of thousands of writes),
 * those would outlive every eden collection and pile up in the old generation as garbage
 * once the engine replaced the value (a one-member dstore writing 100 keys: ~800 B of
 * promoted garbage per write, the heap swinging 16 -> 50 MiB between full collections);
 * the copies are live bytes in a few 64 KiB chunks, reused as the oldest are dropped. A
 * larger or non-ASCII change is kept by reference, as before (its copy would cost more
 * than its cell). A read gets a fresh string and a fresh copy of the value.
 */
class ChangeLog {
  private types = new Uint8Array(CHANGE_LOG_CAPACITY_MIN);
  private revisions = new Float64Array(CHANGE_LOG_CAPACITY_MIN);
  /** Where a change's copied bytes start: a position in the stream of chunks (chunk number × CHANGE_CHUNK_BYTES + offset). */
  private starts = new Float64Array(CHANGE_LOG_CAPACITY_MIN);
  private keyLengths = new Uint16Array(CHANGE_LOG_CAPACITY_MIN);
  /** The copied value's length, NO_VALUE, or BY_REFERENCE. */
  private valueLengths = new Int16Array(CHANGE_LOG_CAPACITY_MIN);
  /** Only changes kept by reference: their key and value ("" and undefined otherwise). */
  private keys: string[] = new Array<string>(CHANGE_LOG_CAPACITY_MIN).fill("");
  private values: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(
    CHANGE_LOG_CAPACITY_MIN,
  ).fill(undefined);
  /** Ring position of the oldest kept change. */
  private head = 0;
  private count = 0;
  /** Chunks numbered firstChunk, firstChunk + 1, ...; the last is being written. */
  private chunks: Uint8Array[] = [];
  private firstChunk = 0;
  /** The chunk being written (-1: none yet) and the offset of its next free byte. */
  private writeChunk = -1;
  private writeOffset = CHANGE_CHUNK_BYTES;
  /** A dropped chunk kept for the next one needed, so a steady stream of writes allocates none. */
  private spareChunk: Uint8Array | undefined;

  get size(): number {
    return this.count;
  }

  /** Bytes of chunks held (for tests of the memory bound). */
  get chunkBytes(): number {
    return (this.chunks.length + (this.spareChunk === undefined ? 0 : 1)) * CHANGE_CHUNK_BYTES;
  }

  push(type: ChangeType, key: string, value: Uint8Array | undefined, revision: number): void {
    if (this.count === this.types.length) this.grow();
    const at = (this.head + this.count) & (this.types.length - 1);
    this.types[at] = type === "put" ? 0 : type === "delete" ? 1 : 2;
    this.revisions[at] = revision;
    const keyLength = key.length;
    const valueLength = value === undefined ? 0 : value.length;
    if (keyLength + valueLength <= CHANGE_INLINE_BYTES_MAX && isAscii(key)) {
      if (this.chunks.length === 0 || this.writeOffset + keyLength + valueLength > CHANGE_CHUNK_BYTES)
        this.nextChunk();
      const chunk = this.chunks[this.chunks.length - 1]!;
      const offset = this.writeOffset;
      for (let i = 0; i < keyLength; i++) chunk[offset + i] = key.charCodeAt(i);
      if (value !== undefined) chunk.set(value, offset + keyLength);
      this.starts[at] = this.writeChunk * CHANGE_CHUNK_BYTES + offset;
      this.keyLengths[at] = keyLength;
      this.valueLengths[at] = value === undefined ? NO_VALUE : valueLength;
      this.writeOffset = offset + keyLength + valueLength;
    } else {
      // Takes no bytes of a chunk: its position only orders the chunks' release.
      this.starts[at] = this.writeChunk * CHANGE_CHUNK_BYTES + this.writeOffset;
      this.valueLengths[at] = BY_REFERENCE;
      this.keys[at] = key;
      this.values[at] = value;
    }
    this.count++;
  }

  /** The i-th kept change (0 = oldest) as a fresh object. */
  at(i: number): WatchChange {
    const at = (this.head + i) & (this.types.length - 1);
    const type = CHANGE_TYPES[this.types[at]!]!;
    const revision = this.revisions[at]!;
    const valueLength = this.valueLengths[at]!;
    if (valueLength === BY_REFERENCE) {
      const value = this.values[at];
      const key = this.keys[at]!;
      return value === undefined ? { type, key, revision } : { type, key, value, revision };
    }
    const start = this.starts[at]!;
    const chunk = this.chunks[Math.floor(start / CHANGE_CHUNK_BYTES) - this.firstChunk]!;
    const offset = start % CHANGE_CHUNK_BYTES;
    const keyEnd = offset + this.keyLengths[at]!;
    const key = decodeKeyRange(keyDecoder, chunk, offset, keyEnd);
    if (valueLength === NO_VALUE) return { type, key, revision };
    return { type, key, value: chunk.slice(keyEnd, keyEnd + valueLength), revision };
  }

  revisionAt(i: number): number {
    return this.revisions[(this.head + i) & (this.types.length - 1)]!;
  }

  /** Drops the oldest change (there is one); returns its charged bytes. Read its revision first. */
  dropOldest(): number {
    const at = this.head;
    const valueLength = this.valueLengths[at]!;
    let bytes: number;
    if (valueLength === BY_REFERENCE) {
      bytes = changeBytes(this.keys[at]!, this.values[at]);
      this.keys[at] = "";
      this.values[at] = undefined;
    } else {
      // changeBytes of the copied change (its key is ASCII: one byte per UTF-16 unit).
      bytes = this.keyLengths[at]! * 2 + (valueLength === NO_VALUE ? 0 : valueLength) + EVENT_OVERHEAD_BYTES;
    }
    this.head = (at + 1) & (this.types.length - 1);
    this.count--;
    this.releaseChunks();
    return bytes;
  }

  /** Lets go of the chunks before the oldest kept change's (all of them once none is kept). */
  private releaseChunks(): void {
    const keepFrom =
      this.count === 0 ? this.writeChunk + 1 : Math.floor(this.starts[this.head]! / CHANGE_CHUNK_BYTES);
    while (this.chunks.length > 0 && this.firstChunk < keepFrom) {
      this.spareChunk = this.chunks.shift();
      this.firstChunk++;
    }
    if (this.chunks.length === 0) this.writeOffset = CHANGE_CHUNK_BYTES;
  }

  private nextChunk(): void {
    const chunk = this.spareChunk ?? new Uint8Array(CHANGE_CHUNK_BYTES);
    this.spareChunk = undefined;
    this.writeChunk++;
    if (this.chunks.length === 0) this.firstChunk = this.writeChunk;
    this.chunks.push(chunk);
    this.writeOffset = 0;
  }

  private grow(): void {
    const capacity = this.types.length * 2;
    const types = new Uint8Array(capacity);
    const revisions = new Float64Array(capacity);
    const starts = new Float64Array(capacity);
    const keyLengths = new Uint16Array(capacity);
    const valueLengths = new Int16Array(capacity);
    const keys = new Array<string>(capacity).fill("");
    const values = new Array<Uint8Array | undefined>(capacity).fill(undefined);
    const mask = this.types.length - 1;
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      types[i] = this.types[from]!;
      revisions[i] = this.revisions[from]!;
      starts[i] = this.starts[from]!;
      keyLengths[i] = this.keyLengths[from]!;
      valueLengths[i] = this.valueLengths[from]!;
      keys[i] = this.keys[from]!;
      values[i] = this.values[from];
    }
    this.types = types;
    this.revisions = revisions;
    this.starts = starts;
    this.keyLengths = keyLengths;
    this.valueLengths = valueLengths;
    this.keys = keys;
    this.values = values;
    this.head = 0;
  }
}

/** Every UTF-16 unit of `key` is ASCII (one UTF-8 byte each). */
function isAscii(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Checks watch options at the edge; what is wrong is a BAD_REQUEST that starts nothing. */
export function checkWatchOptions(key: string, options: WatchOptions): void {
  if (typeof key !== "string" || (key === "" && options.prefix !== true)) {
    throw new DkvError(
      "BAD_REQUEST",
      'watch needs a key, or a prefix with prefix: true ("" watches every key)',
    );
  }
  const from = options.fromRevision;
  if (from !== undefined && !(Number.isSafeInteger(from) && from >= 1)) {
    throw new DkvError(
      "BAD_REQUEST",
      `fromRevision must be a whole number >= 1 (omit it to start now); got ${from}`,
    );
  }
  if (options.requireLeader !== undefined && typeof options.requireLeader !== "boolean") {
    throw new DkvError(
      "BAD_REQUEST",
      `requireLeader must be true or false; got ${String(options.requireLeader)}`,
    );
  }
  const interval = options.progressIntervalMs;
  if (interval !== undefined && !(Number.isSafeInteger(interval) && interval >= 0)) {
    throw new DkvError(
      "BAD_REQUEST",
      `progressIntervalMs must be a whole number of ms >= 0; got ${interval}`,
    );
  }
}

/**
 * The changes of one store (a shard), fanned out to its watchers. `publish` is called
 * synchronously by the engine's change listener, so it never waits: each matching watcher
 * gets a reference to the change in its own queue, bounded by bytes; a watcher whose
 * consumer falls further behind is cut with WATCH_SLOW, and writers never slow down.
 *
 * The recent history (bounded by bytes) serves watches from a past revision; a revision
 * older than it is refused with COMPACTED. The compact revision is the oldest revision a
 * watch may start from: every change with a revision at or above it is still kept.
 */
export class WatchHub {
  private readonly options: WatchHubOptions;
  /** Recent changes in commit order. */
  private history = new ChangeLog();
  /** Sequence number of the oldest kept change: a watcher replays by sequence, not by index. */
  private firstSeq = 0;
  private historyBytes = 0;
  private compactRev: number;
  private rev: number;
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly byPrefix = new Set<Watcher>();
  private closed = false;

  /** `revision`: the store's revision now; history starts after it. */
  constructor(revision: number, options: Partial<WatchHubOptions> = {}) {
    this.options = { ...defaultWatchHubOptions, ...options };
    for (const [name, value] of Object.entries(this.options)) {
      if (!Number.isSafeInteger(value) || value < 0 || (name !== "progressIntervalMs" && value === 0)) {
        throw new DkvError(
          "BAD_REQUEST",
          `watch option ${name} must be a positive whole number; got ${value}`,
        );
      }
    }
    this.rev = revision;
    this.compactRev = revision + 1;
  }

  /** The last revision applied to the store (changes up to it have been published). */
  get revision(): number {
    return this.rev;
  }

  /** The oldest revision a watch may start from. */
  get compactRevision(): number {
    return this.compactRev;
  }

  /** Watchers open now. */
  get watcherCount(): number {
    let count = this.byPrefix.size;
    for (const set of this.byKey.values()) count += set.size;
    return count;
  }

  get historyBytesUsed(): number {
    return this.historyBytes;
  }

  /** Bytes of the chunks the history copies small changes into (for tests of the memory bound). */
  get historyChunkBytes(): number {
    return this.history.chunkBytes;
  }

  /**
   * One change, in commit order (revisions never go back); the engine's change listener.
   * Watchers get `value` itself, not a copy (the engine never changes a stored array); the
   * history keeps a copy of a small change and a reference to a larger one (ChangeLog).
   */
  publish(type: ChangeType, key: string, value: Uint8Array | undefined, revision: number): void {
    if (revision > this.rev) this.rev = revision;
    const bytes = changeBytes(key, value);
    this.history.push(type, key, value, revision);
    this.historyBytes += bytes;
    this.trimHistory();
    // Most writes have no watcher: no object, no lookup, no iterator.
    if (this.byKey.size === 0 && this.byPrefix.size === 0) return;
    let change: WatchChange | undefined;
    const exact = this.byKey.size === 0 ? undefined : this.byKey.get(key);
    if (exact !== undefined) {
      change = value === undefined ? { type, key, revision } : { type, key, value, revision };
      for (const watcher of exact) watcher.offer(change, bytes);
    }
    for (const watcher of this.byPrefix) {
      if (!key.startsWith(watcher.key)) continue;
      change ??= value === undefined ? { type, key, revision } : { type, key, value, revision };
      watcher.offer(change, bytes);
    }
  }

  /** The store applied up to `revision` (with or without changes): what progress reports. */
  advance(revision: number): void {
    if (revision > this.rev) this.rev = revision;
  }

  /**
   * The store's state was replaced (a snapshot installed) at `revision`: the changes
   * between the last published one and it are unknown, so history restarts after it and
   * every watcher that still needed them is cut with COMPACTED, never left with a gap.
   */
  reset(revision: number): void {
    const gap = revision > this.rev;
    this.history = new ChangeLog();
    this.firstSeq = 0;
    this.historyBytes = 0;
    if (revision > this.rev) this.rev = revision;
    this.compactRev = Math.max(this.compactRev, revision + 1);
    if (!gap) return;
    for (const watcher of this.allWatchers()) {
      if (watcher.nextRevision <= revision)
        watcher.fail(new WatchCompactedError(this.compactRev, watcher.nextRevision));
    }
  }

  /** Starts a watcher; throws COMPACTED when `fromRevision` is older than the history. */
  watch(key: string, options: WatchOptions = {}): Watcher {
    checkWatchOptions(key, options);
    if (this.closed) throw new DkvError("CLOSED", "the store is closed; nothing more to watch");
    const from = options.fromRevision ?? this.rev + 1;
    if (from < this.compactRev) throw new WatchCompactedError(this.compactRev, from);
    const liveSeq = this.firstSeq + this.history.size;
    const replaySeq = from > this.rev ? liveSeq : this.seqAtRevision(from);
    const watcher = new Watcher(this, key, options.prefix === true, from, replaySeq, liveSeq, {
      bufferBytesMax: this.options.bufferBytesMax,
      progressIntervalMs: options.progressIntervalMs ?? this.options.progressIntervalMs,
      signal: options.signal,
    });
    if (watcher.prefix) this.byPrefix.add(watcher);
    else {
      const set = this.byKey.get(key) ?? new Set<Watcher>();
      this.byKey.set(key, set);
      set.add(watcher);
    }
    return watcher;
  }

  /** Ends every watcher (CLOSED) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const watcher of this.allWatchers()) {
      watcher.fail(new DkvError("CLOSED", "the store was closed; watch another member or reopen it"));
    }
  }

  /** The change at sequence `seq`, or undefined once it left the history. */
  changeAt(seq: number): WatchChange | undefined {
    if (seq < this.firstSeq || seq >= this.firstSeq + this.history.size) return undefined;
    return this.history.at(seq - this.firstSeq);
  }

  isKept(seq: number): boolean {
    return seq >= this.firstSeq;
  }

  remove(watcher: Watcher): void {
    if (watcher.prefix) {
      this.byPrefix.delete(watcher);
      return;
    }
    const set = this.byKey.get(watcher.key);
    set?.delete(watcher);
    if (set?.size === 0) this.byKey.delete(watcher.key);
  }

  private allWatchers(): Watcher[] {
    const all = [...this.byPrefix];
    for (const set of this.byKey.values()) all.push(...set);
    return all;
  }

  /** Sequence of the first kept change with a revision >= `revision` (history is sorted). */
  private seqAtRevision(revision: number): number {
    let low = 0;
    let high = this.history.size;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.history.revisionAt(mid) < revision) low = mid + 1;
      else high = mid;
    }
    return this.firstSeq + low;
  }

  private trimHistory(): void {
    const max = this.options.historyBytesMax;
    while (this.historyBytes > max && this.history.size > 0) {
      const revision = this.history.revisionAt(0);
      this.historyBytes -= this.history.dropOldest();
      this.firstSeq++;
      // A revision may span several changes (a transaction): once one is gone, all of it is.
      this.compactRev = Math.max(this.compactRev, revision + 1);
    }
  }
}

interface WatcherOptions {
  bufferBytesMax: number;
  progressIntervalMs: number;
  signal: AbortSignal | undefined;
}

/**
 * One watch: an async iterator of changes. It first replays kept history (read lazily by
 * sequence, so a long replay costs no copy), then the changes queued since it started.
 */
export class Watcher implements AsyncIterableIterator<WatchEvent> {
  private queue: WatchChange[] = [];
  private queueHead = 0;
  private queueBytes = 0;
  private replaySeq: number;
  private error: DkvError | undefined;
  private ended = false;
  /** Aborted or returned: queued changes are dropped, not delivered. */
  private stopped = false;
  /**
   * The first event is a progress event: the revision this watch starts after, or the
   * store's revision when the watch starts beyond it.
   */
  private announced = false;
  private wake: (() => void) | undefined;
  private readonly onAbort = (): void => this.stop();
  /** The revision the next change must have at least (what a resume would start from). */
  nextRevision: number;

  constructor(
    private readonly hub: WatchHub,
    readonly key: string,
    readonly prefix: boolean,
    fromRevision: number,
    replaySeq: number,
    private readonly liveSeq: number,
    private readonly options: WatcherOptions,
  ) {
    this.nextRevision = fromRevision;
    this.replaySeq = replaySeq;
    if (options.signal?.aborted) this.stop();
    else options.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /** A new change that matches (called by the hub, synchronously). */
  offer(change: WatchChange, bytes: number): void {
    if (this.ended || change.revision < this.nextRevision) return;
    this.queue.push(change);
    this.queueBytes += bytes;
    if (this.queueBytes > this.options.bufferBytesMax) {
      this.fail(
        new DkvError(
          "WATCH_SLOW",
          `the watcher fell more than ${this.options.bufferBytesMax} bytes of changes behind and was cut; consume events faster, or watch again from revision ${this.nextRevision}`,
        ),
      );
      return;
    }
    this.wakeUp();
  }

  /** Ends the watch with `error` (the consumer sees it at its next pull). */
  fail(error: DkvError): void {
    if (this.ended) return;
    this.error = error;
    this.end();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    if (!this.announced && !this.ended) {
      this.announced = true;
      // Never past the store's own revision: a watch from a revision the store has not
      // reached yet reports where the store is, as etcd's progress does (see next()).
      const revision = Math.min(this.nextRevision - 1, this.hub.revision);
      return { done: false, value: { type: "progress", revision } };
    }
    // Bounded: each turn returns a change or progress, or waits for one.
    for (;;) {
      const change = this.take();
      if (change !== undefined) {
        this.nextRevision = change.revision;
        return { done: false, value: change };
      }
      if (this.ended) {
        const error = this.error;
        this.error = undefined;
        if (error !== undefined) throw error;
        return { done: true, value: undefined };
      }
      const woken = await this.waitForChange();
      if (!woken && !this.ended) {
        // Everything up to the hub's revision has been delivered (or is not wanted). For a
        // watch from a revision beyond the store's, that is the store's revision, not the
        // one before the start: progress N promises the store reached N and every wanted
        // change up to N was delivered, so a reader at N sees nothing the watch missed.
        return { done: false, value: { type: "progress", revision: this.hub.revision } };
      }
    }
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.stop();
    return { done: true, value: undefined };
  }

  private stop(): void {
    this.stopped = true;
    this.queue = [];
    this.queueHead = 0;
    this.queueBytes = 0;
    this.end();
  }

  private take(): WatchChange | undefined {
    if (this.error !== undefined || this.stopped) return undefined;
    // Replay first: kept history from the start revision up to where live delivery began.
    while (this.replaySeq < this.liveSeq) {
      if (!this.hub.isKept(this.replaySeq)) {
        this.fail(
          new DkvError(
            "WATCH_SLOW",
            `the watch history moved past this watcher while it replayed; watch again from revision ${this.nextRevision}`,
          ),
        );
        return undefined;
      }
      const change = this.hub.changeAt(this.replaySeq++)!;
      if (this.matches(change) && change.revision >= this.nextRevision) return change;
    }
    if (this.queueHead >= this.queue.length) return undefined;
    const change = this.queue[this.queueHead]!;
    this.queue[this.queueHead] = undefined as unknown as WatchChange;
    this.queueHead++;
    this.queueBytes -= eventBytes(change);
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
    return change;
  }

  private matches(change: WatchChange): boolean {
    return this.prefix ? change.key.startsWith(this.key) : change.key === this.key;
  }

  /** True when woken by a change or the end; false when the progress interval passed first. */
  private waitForChange(): Promise<boolean> {
    const intervalMs = this.options.progressIntervalMs;
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      this.wake = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
      if (intervalMs > 0) {
        timer = setTimeout(() => {
          this.wake = undefined;
          resolve(false);
        }, intervalMs);
      }
    });
  }

  private wakeUp(): void {
    this.wake?.();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.options.signal?.removeEventListener("abort", this.onAbort);
    this.hub.remove(this);
    this.wakeUp();
  }
}

/**
 * The events of `watcher` with each value copied, so a consumer that changes the bytes it
 * got cannot change the stored value (the engine and the history share one array).
 */
export async function* watchCopies(watcher: Watcher): AsyncGenerator<WatchEvent, void, undefined> {
  try {
    for await (const event of watcher) {
      yield event.type !== "progress" && event.value !== undefined
        ? { ...event, value: event.value.slice() }
        : event;
    }
  } finally {
    await watcher.return();
  }
}

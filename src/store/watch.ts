/**
 * WatchHub: the changes of one store fanned out to its watchers (the registry by key and
 * by prefix, the history's bounds and compact revision). The parts: watch-types.ts (the
 * contract), change-log.ts (the kept history), watcher.ts (one watch's stream); their
 * public names are re-exported here, where the store layers import them from.
 */
import { DkvError } from "../errors.ts";
import { ChangeLog, changeBytes } from "./change-log.ts";
import {
  type ChangeType,
  checkWatchOptions,
  defaultWatchHubOptions,
  type WatchChange,
  WatchCompactedError,
  type WatchHubOptions,
  type WatchOptions,
} from "./watch-types.ts";
import { Watcher } from "./watcher.ts";

export {
  checkWatchOptions,
  defaultWatchHubOptions,
  type WatchChange,
  WatchCompactedError,
  type WatchEvent,
  type WatchHubOptions,
  type WatchOptions,
  type WatchProgress,
} from "./watch-types.ts";
export { Watcher, watchCopies } from "./watcher.ts";

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

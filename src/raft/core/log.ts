import { assert } from "./assert.ts";
import { entrySizeBytes, limitBySize, NO_ENTRIES } from "./entries.ts";
import type { Entry, LogStorage, Snapshot } from "./types.ts";

/** `term()` for an index the log cannot answer (compacted away or beyond the end). */
export const TERM_UNKNOWN = -1;

/** At most this many bytes of persisted, unapplied entries are kept for reading back (RaftLog.recent). */
export const RECENT_BYTES_MAX = 4 << 20;

/**
 * The node's log: what the runtime has persisted (`storage`, read-only here) plus an
 * unstable tail the core has appended but the runtime has not yet persisted. Everything
 * below `unstableOffset` is stable and agrees with this log; the unstable tail wins.
 */
export class RaftLog {
  unstableEntries: Entry[] = [];
  /** Index of `unstableEntries[0]`, or where the next unstable entry would go. */
  unstableOffset: number;
  /** A snapshot received from the leader and not yet persisted by the runtime. */
  unstableSnapshot: Snapshot | undefined;
  committed: number;
  /** Highest index handed to the runtime to apply and acknowledged by advance(). */
  applied: number;
  /** timeMs of the last entry (or of the snapshot when the log is empty past it). */
  lastTimeMs: number;
  /**
   * The entries most recently persisted (moved out of the unstable tail by stableTo) that
   * are not yet applied: [recentOffset, unstableOffset), the same entries storage holds.
   * Applying them, or a leader's appends of them, then reads no storage (which would build
   * each entry again, copying its bytes): with many groups a write's entries are read back
   * once per member. Bounded by RECENT_BYTES_MAX; dropped on a truncation or a snapshot.
   */
  private recent: Entry[] = [];
  private recentOffset = 0;
  private recentBytes = 0;

  constructor(
    readonly storage: LogStorage,
    applied: number | undefined,
    commit: number,
  ) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstableOffset = last + 1;
    this.committed = Math.max(commit, first - 1);
    if (this.committed > last) throw new RangeError(`commit ${this.committed} is beyond last index ${last}`);
    this.applied = applied ?? first - 1;
    if (this.applied < first - 1 || this.applied > this.committed) {
      throw new RangeError(`applied ${this.applied} is outside [${first - 1}, ${this.committed}]`);
    }
    this.lastTimeMs =
      last >= first ? storage.entries(last, last + 1, Infinity)[0]!.timeMs : storage.snapshot().meta.timeMs;
  }

  firstIndex(): number {
    return this.unstableSnapshot === undefined
      ? this.storage.firstIndex()
      : this.unstableSnapshot.meta.index + 1;
  }

  lastIndex(): number {
    if (this.unstableEntries.length > 0) return this.unstableOffset + this.unstableEntries.length - 1;
    if (this.unstableSnapshot !== undefined) return this.unstableSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  /** Highest index known persisted and agreeing with this log (the leader's own ack). */
  persistedIndex(): number {
    if (this.unstableSnapshot !== undefined) return 0;
    return Math.min(this.unstableOffset - 1, this.lastIndex());
  }

  term(index: number): number {
    if (index >= this.unstableOffset) {
      const position = index - this.unstableOffset;
      return position < this.unstableEntries.length ? this.unstableEntries[position]!.term : TERM_UNKNOWN;
    }
    const snapshot = this.unstableSnapshot;
    if (snapshot !== undefined) return index === snapshot.meta.index ? snapshot.meta.term : TERM_UNKNOWN;
    if (index < this.storage.firstIndex() - 1 || index > this.storage.lastIndex()) return TERM_UNKNOWN;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (error instanceof RangeError) return TERM_UNKNOWN;
      throw error;
    }
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft's election restriction (§5.4.1): is (lastIndex, lastTerm) at least as up to date? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries [lo, hi) bounded by `maxBytes` (at least one). Returns undefined when `lo` is
   * compacted away (the caller sends a snapshot instead).
   */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    hi = Math.min(hi, this.lastIndex() + 1);
    if (lo >= hi) return NO_ENTRIES;
    let stable: Entry[] | undefined;
    if (lo < this.unstableOffset) {
      stable = this.stableEntries(lo, Math.min(hi, this.unstableOffset), maxBytes);
      if (stable.length < Math.min(hi, this.unstableOffset) - lo || hi <= this.unstableOffset) return stable;
      let used = 0;
      for (const entry of stable) used += entrySizeBytes(entry);
      maxBytes -= used;
      if (maxBytes <= 0) return stable;
      lo = this.unstableOffset;
    }
    const from = lo - this.unstableOffset;
    const to = hi - this.unstableOffset;
    const end =
      stable === undefined
        ? limitBySize(this.unstableEntries, from, to, maxBytes)
        : this.fitUnstable(from, to, maxBytes);
    if (stable === undefined) return this.unstableEntries.slice(from, end);
    return end > from ? stable.concat(this.unstableEntries.slice(from, end)) : stable;
  }

  /** Stable entries [lo, hi) within maxBytes (at least one): from `recent` if it holds them all. */
  private stableEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.dropApplied();
    const recent = this.recent;
    if (lo >= this.recentOffset && hi <= this.recentOffset + recent.length) {
      const from = lo - this.recentOffset;
      return recent.slice(from, limitBySize(recent, from, hi - this.recentOffset, maxBytes));
    }
    return this.storage.entries(lo, hi, maxBytes);
  }

  /** Forgets recent entries that are applied (they are read no more, but by a slow follower's appends). */
  private dropApplied(): void {
    const drop = this.applied + 1 - this.recentOffset;
    if (drop <= 0 || this.recent.length === 0) return;
    if (drop >= this.recent.length) {
      this.clearRecent();
      return;
    }
    for (let i = 0; i < drop; i++) this.recentBytes -= entrySizeBytes(this.recent[i]!);
    this.recent = this.recent.slice(drop);
    this.recentOffset += drop;
  }

  private clearRecent(): void {
    this.recent = [];
    this.recentBytes = 0;
  }

  /** Like limitBySize but may return zero entries (a stable prefix is already included). */
  private fitUnstable(from: number, to: number, maxBytes: number): number {
    let end = from;
    let bytes = 0;
    while (end < to) {
      bytes += entrySizeBytes(this.unstableEntries[end]!);
      if (bytes > maxBytes) break;
      end++;
    }
    return end;
  }

  /**
   * Follower side of AppendEntries: if our entry at `prevIndex` has `prevTerm`, merge
   * `entries` (truncating a conflicting suffix) and advance commit. Returns the last index
   * the leader's message covers, or -1 when the log does not match.
   */
  maybeAppend(prevIndex: number, prevTerm: number, leaderCommit: number, entries: readonly Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      // Leader completeness: a leader never disagrees with what this member committed.
      assert(
        conflict > this.committed,
        () => `entry ${conflict} conflicts with committed entry (committed ${this.committed})`,
      );
      this.append(entries, conflict - (prevIndex + 1));
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  /** Index of the first entry that is new or disagrees with ours; 0 when all are present. */
  private findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The fast-backtracking probe: the largest index <= `index` whose term is <= `term`,
   * with its term. Stops at the compaction boundary (term 0 there means "unknown").
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    const floor = this.firstIndex() - 1;
    // Below our snapshot we know no terms: the index itself is the best answer (as in
    // etcd-raft). Answering `floor` instead would be an index above the one asked about,
    // and a follower whose stale tail ends below our snapshot would then look matched.
    if (index < floor) return { index, term: 0 };
    for (; index >= floor; index--) {
      const ourTerm = this.term(index);
      if (ourTerm === TERM_UNKNOWN) return { index, term: 0 };
      if (ourTerm <= term) return { index, term: ourTerm };
    }
    return { index: floor, term: 0 };
  }

  /** Appends `entries[from..]`, replacing anything at or after their first index. */
  append(entries: readonly Entry[], from = 0): void {
    if (from >= entries.length) return;
    const after = entries[from]!.index;
    const end = this.unstableOffset + this.unstableEntries.length;
    if (after === end) {
      for (let i = from; i < entries.length; i++) this.unstableEntries.push(entries[i]!);
    } else if (after <= this.unstableOffset) {
      // Replaces part of the stable log too: the runtime truncates storage when persisting.
      // Recent entries from `after` on are being replaced; the rest no longer ends at the
      // unstable tail. Dropped whole (rare: a new leader's conflicting suffix).
      this.clearRecent();
      this.unstableOffset = after;
      this.unstableEntries = entries.slice(from);
    } else {
      this.unstableEntries = this.unstableEntries.slice(0, after - this.unstableOffset);
      for (let i = from; i < entries.length; i++) this.unstableEntries.push(entries[i]!);
    }
    this.lastTimeMs = entries[entries.length - 1]!.timeMs;
  }

  /** The leader's append of one freshly stamped entry (the hot path). */
  appendOne(entry: Entry): void {
    this.unstableEntries.push(entry);
    this.lastTimeMs = entry.timeMs;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    // The message only when the check fails (no closure per commit).
    if (index > this.lastIndex()) assert(false, `commit ${index} is beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Replaces the whole log with a leader's snapshot (the follower's log did not contain it). */
  restore(snapshot: Snapshot): void {
    this.committed = snapshot.meta.index;
    this.unstableOffset = snapshot.meta.index + 1;
    this.unstableEntries = [];
    this.clearRecent();
    this.unstableSnapshot = snapshot;
    this.lastTimeMs = snapshot.meta.timeMs;
  }

  /** The runtime persisted entries through (index, term): drop them from the unstable tail. */
  stableTo(index: number, term: number): void {
    if (index < this.unstableOffset || this.term(index) !== term) return;
    const count = index + 1 - this.unstableOffset;
    this.keepRecent(count);
    this.unstableEntries = count >= this.unstableEntries.length ? [] : this.unstableEntries.slice(count);
    this.unstableOffset = index + 1;
  }

  /** The first `count` unstable entries are now persisted: they join `recent` while they fit. */
  private keepRecent(count: number): void {
    this.dropApplied();
    if (this.recent.length === 0 || this.recentOffset + this.recent.length !== this.unstableOffset) {
      this.clearRecent();
      this.recentOffset = this.unstableOffset;
    }
    const unstable = this.unstableEntries;
    for (let i = 0; i < count; i++) {
      const entry = unstable[i]!;
      const bytes = entrySizeBytes(entry);
      if (this.recentBytes + bytes > RECENT_BYTES_MAX) {
        // Over the bound: these are read from storage until applied. An empty `recent`
        // holds no index whatever its offset; an integer one (not Infinity) keeps the
        // field int-typed, so the JIT's code of its readers does not exit and recompile.
        this.clearRecent();
        this.recentOffset = this.unstableOffset;
        return;
      }
      this.recent.push(entry);
      this.recentBytes += bytes;
    }
  }

  stableSnapTo(index: number): void {
    if (this.unstableSnapshot !== undefined && this.unstableSnapshot.meta.index === index) {
      this.unstableSnapshot = undefined;
    }
  }

  snapshot(): Snapshot {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }

  hasUnstable(): boolean {
    return this.unstableEntries.length > 0 || this.unstableSnapshot !== undefined;
  }

  /** Committed entries not yet handed out for applying, bounded by `maxBytes`. */
  nextCommitted(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return NO_ENTRIES;
    return this.slice(lo, this.committed + 1, maxBytes) ?? NO_ENTRIES;
  }

  hasNextCommitted(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }
}

import type { KeyRange } from "../kvdb.ts";
import { compareKeys } from "./ordered-keys.ts";
import { type Entry, isExpired, TimedEntry } from "./timed-entry.ts";

/**
 * The most keys a page served by a scan of the hash maps may ask for (see MapleDB.list,
 * "First page before the index is built"): the scan keeps the `limit + 1` smallest keys it
 * has met in a max-heap, so its cost is one pass over every key plus O(log limit) per key
 * that enters the heap. A longer page (or one without a limit) waits for the index.
 */
export const SCAN_PAGE_MAX = 1000;
/**
 * The most keys (present in the maps) a scan reads in its one turn: above it a page waits
 * for the index's build in slices, as every page did before the scan. Measured with
 * test/bench/data-api.ts `--unbuilt-page`: 100–250 ns of JS-thread CPU per key on the
 * shared 2-core machine (a cache miss per key string), so a scan turn stays within
 * ~0.25 s, a quarter of the shortest default election timeout (10 ticks of 100 ms).
 */
export const SCAN_KEYS_MAX = 1 << 20;

/** One hash shard as a scan reads it: its map, and whether any entry there may carry deadlines. */
export interface ScanShard {
  map: Map<string, Entry>;
  timedCount: number;
}

/**
 * Which keys a page or count may return: those of `range` (a prefix, else `[from, to)`)
 * after `after`. Comparisons against the bounds are native while a bound has no code
 * unit at or above U+D800 (then native order agrees with UTF-8 byte order for any key
 * compared with it, see ordered-keys.ts), else compareKeys.
 */
class KeyBounds {
  /**
   * A key every accepted one is at least (the prefix, `from` or `after`; "" when none):
   * keys between it and another key share their common prefix (see smallestLive).
   */
  readonly lowest: string;
  /** Units every accepted key starts with (the prefix, or what `from` and `to` share). */
  private readonly shared: string;
  private readonly prefix: string | undefined;
  private readonly low: string | undefined;
  /** `low` itself is excluded (it is the cursor `after`). */
  private readonly lowExclusive: boolean;
  private readonly lowSlow: boolean;
  private readonly high: string | undefined;
  private readonly highSlow: boolean;

  constructor(range: KeyRange, after: string | undefined) {
    this.prefix = range.prefix;
    const from = range.prefix === undefined ? range.from : undefined;
    this.high = range.prefix === undefined ? range.to : undefined;
    // The later of `from` (inclusive) and `after` (exclusive) is the lower bound.
    if (after !== undefined && (from === undefined || compareKeys(after, from) >= 0)) {
      this.low = after;
      this.lowExclusive = true;
    } else {
      this.low = from === "" ? undefined : from;
      this.lowExclusive = false;
    }
    this.lowSlow = this.low !== undefined && hasHighUnit(this.low);
    this.highSlow = this.high !== undefined && hasHighUnit(this.high);
    // The later of the two when both bound the keys (a prefix and a cursor after it).
    const prefix = range.prefix;
    const low = this.low;
    this.lowest =
      low !== undefined && (prefix === undefined || compareKeys(low, prefix) > 0) ? low : (prefix ?? "");
    this.shared =
      range.prefix ??
      (this.low !== undefined && this.high !== undefined
        ? this.low.slice(0, commonPrefixLength(this.low, this.high))
        : "");
  }

  accepts(key: string): boolean {
    // A native startsWith first: it rejects most keys of a narrow range for the cost of
    // reading the key, where a relational comparison costs about twice that (measured).
    if (!key.startsWith(this.shared)) return false;
    const low = this.low;
    if (low !== undefined) {
      const c = this.lowSlow ? compareKeys(key, low) : key < low ? -1 : key === low ? 0 : 1;
      if (c < 0 || (c === 0 && this.lowExclusive)) return false;
    }
    const high = this.high;
    if (high !== undefined) {
      if (this.highSlow ? compareKeys(key, high) >= 0 : key >= high) return false;
    }
    return true;
  }
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** A code unit's rank in code point order: surrogates (U+D800–DFFF) after U+E000–FFFF. */
function unitRank(unit: number): number {
  return unit < 0xd800 ? unit : unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

function hasHighUnit(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0xd800) return true;
  return false;
}

function live(shard: ScanShard, entry: Entry, nowMs: number): boolean {
  return shard.timedCount === 0 || !(entry instanceof TimedEntry) || !isExpired(entry, nowMs);
}

/**
 * The `n` smallest live keys of `range` after `after` (fewer when the range holds fewer),
 * in UTF-8 byte order, with their entries: one synchronous pass over every shard's keys,
 * so the answer is the maps' state at one instant. Keys not below the largest of the `n`
 * kept so far are dropped at once; the others enter a max-heap of `n` (O(log n)).
 *
 * The drop is cheap for most keys: a key that may still be kept lies between the range's
 * lower bound and the heap's top, so it starts with the units those two share (code
 * point order is lexicographic by unit); one native startsWith, then the unit after them
 * against the top's, decide almost every key, and only keys equal that far are compared
 * whole (a native relational comparison of two strings costs about twice reading a
 * key, measured on 1M keys).
 */
export function smallestLive(
  shards: readonly ScanShard[],
  range: KeyRange,
  after: string | undefined,
  n: number,
  nowMs: number,
): { keys: string[]; entries: Entry[] } {
  const bounds = new KeyBounds(range, after);
  const heap = new KeyHeap(n);
  // While the heap is full: what its top shares with the lower bound, and the top's unit
  // after that (-1 when the top ends there), as a rank.
  let shared = "";
  let at = 0;
  let topRank = -1;
  for (const shard of shards) {
    const map = shard.map;
    for (const key of map.keys()) {
      if (heap.full) {
        if (!key.startsWith(shared)) continue;
        if (key.length > at) {
          if (topRank < 0) continue;
          const unit = key.charCodeAt(at);
          const rank = unit < 0xd800 ? unit : unitRank(unit);
          if (rank > topRank) continue;
          if (rank === topRank && !heap.below(key)) continue;
        }
      }
      if (!bounds.accepts(key)) continue;
      const entry = map.get(key)!;
      if (!live(shard, entry, nowMs)) continue;
      heap.offer(key, entry);
      if (heap.full) {
        const top = heap.top;
        at = commonPrefixLength(bounds.lowest, top);
        shared = top.slice(0, at);
        topRank = at < top.length ? unitRank(top.charCodeAt(at)) : -1;
      }
    }
  }
  return heap.sorted();
}

/** How many live keys `range` holds: one synchronous pass over every shard's keys. */
export function countLive(shards: readonly ScanShard[], range: KeyRange, nowMs: number): number {
  const bounds = new KeyBounds(range, undefined);
  let count = 0;
  for (const shard of shards) {
    const map = shard.map;
    if (shard.timedCount === 0) {
      for (const key of map.keys()) if (bounds.accepts(key)) count++;
      continue;
    }
    for (const [key, entry] of map) if (bounds.accepts(key) && live(shard, entry, nowMs)) count++;
  }
  return count;
}

/**
 * At most `capacity` keys (distinct: each comes from one map, once) with their entries,
 * the largest on top (a binary max-heap by compareKeys). `below` compares natively while
 * the top key has no code unit at or above U+D800 (exact then, see KeyBounds).
 */
class KeyHeap {
  private readonly keys: string[] = [];
  private readonly entries: Entry[] = [];
  private readonly capacity: number;
  private topSlow = false;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get full(): boolean {
    return this.keys.length >= this.capacity;
  }

  /** The largest key held (the heap must not be empty). */
  get top(): string {
    return this.keys[0]!;
  }

  /** Whether `key` sorts before the largest key held (false when empty). */
  below(key: string): boolean {
    const top = this.keys[0];
    if (top === undefined) return false;
    return this.topSlow ? compareKeys(key, top) < 0 : key < top;
  }

  /** Keeps `key` if there is room or it is below the largest (which then goes). */
  offer(key: string, entry: Entry): void {
    const keys = this.keys;
    const entries = this.entries;
    if (keys.length < this.capacity) {
      // Sift up from the new leaf.
      let at = keys.length;
      keys.push(key);
      entries.push(entry);
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (compareKeys(keys[parent]!, key) >= 0) break;
        keys[at] = keys[parent]!;
        entries[at] = entries[parent]!;
        at = parent;
      }
      keys[at] = key;
      entries[at] = entry;
    } else {
      if (!this.below(key)) return;
      // Replace the top, sift down.
      const n = keys.length;
      let at = 0;
      for (;;) {
        const left = 2 * at + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && compareKeys(keys[right]!, keys[left]!) > 0 ? right : left;
        if (compareKeys(keys[child]!, key) <= 0) break;
        keys[at] = keys[child]!;
        entries[at] = entries[child]!;
        at = child;
      }
      keys[at] = key;
      entries[at] = entry;
    }
    this.topSlow = hasHighUnit(keys[0]!);
  }

  /** The keys held, ascending, with their entries. */
  sorted(): { keys: string[]; entries: Entry[] } {
    const order = this.keys.map((_, i) => i);
    order.sort((a, b) => compareKeys(this.keys[a]!, this.keys[b]!));
    return { keys: order.map((i) => this.keys[i]!), entries: order.map((i) => this.entries[i]!) };
  }
}

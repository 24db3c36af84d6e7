/**
 * The settled ordered index as sorted runs of key bytes (a log-structured merge): what
 * DeferredOrder folds its notes into and scans for lists and counts.
 *
 * A run is one Uint8Array of its keys' bytes (key-bytes.ts: byte order = key order) in
 * order, the end of each key in a Uint32Array, and for a run that has them a byte per
 * key marking removals (tombstones). A fold's keys become a new run (sorted by numbers
 * made of their bytes, see RunSorter); the newest run is merged with the one before it
 * while that one is no larger (a binary counter: ~log2(n / CHUNK_KEYS) runs, each key
 * rewritten as often), in one sequential pass over both. Where a key is in more than one
 * run the newest entry tells; a merge drops an add and a removal of one key that meet
 * (see mergeRuns), and a merge into the oldest run drops every removal left.
 *
 * Why not one JS string a key in blocks (OrderedKeys): in a store that keeps its keys'
 * bytes itself (RecordDB), the index's strings were the only JS copies of a million
 * keys: ~100 MiB more and a million cells for the collector to mark, and every new key
 * went to a random block (a cache miss or two). Here a key costs its bytes and four,
 * merges read and write memory in order, and only a scan's visited keys become strings.
 *
 * A scan seeks every run (a binary search each) and merges their cursors in key order,
 * newest first among equal keys: O(runs · log n + keys visited), the visited including
 * tombstones and hidden older entries on the way.
 */
import { BYTES_PER_UNIT_MAX, compareBytes, decodeKey, encodeKey } from "./key-bytes.ts";
import type { OrderedKeys } from "./ordered-keys.ts";

/** Keys a new run takes at most (a fold's batch is cut into runs this long): RunSorter packs an index into 10 bits. */
const CHUNK_KEYS = 1024;
const INDEX_SPAN = 1024;
/** Bytes a sort key holds; each is 0 (the key ended) or byte + 1, so 257^5 · 1024 < 2^53. */
const CODE_BYTES = 5;
/** A group this small is sorted by comparing bytes (insertion sort). */
const SMALL_GROUP = 12;
/** More runs than this and the newest two are merged whatever their sizes. */
const RUNS_MAX = 40;

/**
 * One sorted run of `length` entries (its arrays may be longer); key i is
 * `bytes[ends[i - 1] ?? 0, ends[i])`.
 */
export class KeyRun {
  /** Bytes every key of the run starts with (those its first and last key share). */
  readonly shared: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly ends: Uint32Array,
    /** 1 for a removal (tombstone), per key; null when the run has none. */
    readonly dead: Uint8Array | null,
    readonly length: number,
  ) {
    const lastStart = length < 2 ? 0 : ends[length - 2]!;
    const m = Math.min(length === 0 ? 0 : ends[0]!, length === 0 ? 0 : ends[length - 1]! - lastStart);
    let i = 0;
    while (i < m && bytes[i] === bytes[lastStart + i]) i++;
    this.shared = i;
  }

  start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  /** The first entry whose key is >= the probe's bytes (> them when `exclusive`). */
  lowerBound(probe: Uint8Array, probeEnd: number, exclusive: boolean): number {
    const bytes = this.bytes;
    const ends = this.ends;
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareBytes(bytes, mid === 0 ? 0 : ends[mid - 1]!, ends[mid]!, probe, 0, probeEnd);
      if (c < 0 || (exclusive && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  keyAt(i: number): string {
    return decodeKey(this.bytes, this.start(i), this.ends[i]!);
  }
}

/** Sorts a batch's keys by their bytes: numbers of CODE_BYTES bytes sorted natively, ties deeper. */
class RunSorter {
  readonly order = new Int32Array(CHUNK_KEYS);
  private readonly codes = new Float64Array(CHUNK_KEYS);
  private readonly moved = new Int32Array(CHUNK_KEYS);

  /** Orders `n` keys (key k is `bytes[starts[k], ends[k])`, distinct); the result is `order[0, n)`. */
  sort(bytes: Uint8Array, starts: Int32Array, ends: Int32Array, n: number): Int32Array {
    const order = this.order;
    for (let i = 0; i < n; i++) order[i] = i;
    this.sortRange(bytes, starts, ends, 0, n, 0);
    return order;
  }

  private sortRange(
    bytes: Uint8Array,
    starts: Int32Array,
    ends: Int32Array,
    lo: number,
    hi: number,
    depth: number,
  ): void {
    const order = this.order;
    if (hi - lo <= SMALL_GROUP) {
      for (let s = lo + 1; s < hi; s++) {
        const k = order[s]!;
        let t = s;
        while (t > lo) {
          const o = order[t - 1]!;
          if (compareBytes(bytes, starts[o]! + depth, ends[o]!, bytes, starts[k]! + depth, ends[k]!) < 0)
            break;
          order[t] = o;
          t--;
        }
        order[t] = k;
      }
      return;
    }
    // Skip the bytes every key of the group shares (a common prefix such as "user/").
    const first = order[lo]!;
    let shared = ends[first]! - starts[first]! - depth;
    for (let s = lo + 1; s < hi && shared > 0; s++) {
      const k = order[s]!;
      const a = starts[first]! + depth;
      const b = starts[k]! + depth;
      const m = Math.min(shared, ends[k]! - b);
      let i = 0;
      while (i < m && bytes[a + i] === bytes[b + i]) i++;
      shared = i;
    }
    depth += shared;
    const codes = this.codes;
    for (let s = lo; s < hi; s++) {
      const k = order[s]!;
      const at = starts[k]! + depth;
      const end = ends[k]!;
      let code = 0;
      for (let p = 0; p < CODE_BYTES; p++) code = code * 257 + (at + p < end ? bytes[at + p]! + 1 : 0);
      codes[s] = code * INDEX_SPAN + (s - lo);
    }
    codes.subarray(lo, hi).sort();
    const moved = this.moved;
    for (let s = lo; s < hi; s++) moved[s] = order[lo + (codes[s]! % INDEX_SPAN)]!;
    for (let s = lo; s < hi; s++) order[s] = moved[s]!;
    // Keys whose CODE_BYTES bytes tie (none ended among them: the keys are distinct) are
    // ordered by the bytes after.
    for (let s = lo; s < hi; ) {
      const code = Math.floor(codes[s]! / INDEX_SPAN);
      let e = s + 1;
      while (e < hi && Math.floor(codes[e]! / INDEX_SPAN) === code) e++;
      if (e - s > 1) this.sortRange(bytes, starts, ends, s, e, depth + CODE_BYTES);
      s = e;
    }
  }
}

/** The keys of a fold as bytes, before they are sorted into a run (reused). */
class Batch {
  bytes = new Uint8Array(64 * CHUNK_KEYS);
  readonly starts = new Int32Array(CHUNK_KEYS);
  readonly ends = new Int32Array(CHUNK_KEYS);

  /** Encodes `keys[from, end)` (at most CHUNK_KEYS); returns the bytes used. */
  fill(keys: readonly string[], from: number, end: number): number {
    let at = 0;
    for (let i = from; i < end; i++) {
      const key = keys[i]!;
      const room = at + key.length * BYTES_PER_UNIT_MAX;
      if (room > this.bytes.length) {
        const grown = new Uint8Array(Math.max(room, 2 * this.bytes.length));
        grown.set(this.bytes.subarray(0, at));
        this.bytes = grown;
      }
      this.starts[i - from] = at;
      at = encodeKey(key, this.bytes, at);
      this.ends[i - from] = at;
    }
    return at;
  }
}

export class KeyRuns {
  /** Oldest first. */
  private runs: KeyRun[] = [];
  private count = 0;
  private readonly sorter = new RunSorter();
  private readonly batch = new Batch();
  private probe = new Uint8Array(256);
  /**
   * Entries read by scans (visited keys, and tombstones and hidden entries passed over)
   * and runs sought: what a page costs, for tests that check it stays O(runs · log n +
   * page) however many keys the index holds.
   */
  work = 0;

  get size(): number {
    return this.count;
  }

  /** Runs held now; for tests. */
  get runCount(): number {
    return this.runs.length;
  }

  /** The keys of a built string index (keys() merges its pending keys), in one run. */
  static fromOrderedKeys(index: OrderedKeys): KeyRuns {
    return KeyRuns.fromSorted(index.keys());
  }

  /** Keys already in byte order (compareKeys) and distinct, in one run: O(n). */
  static fromSorted(keys: readonly string[]): KeyRuns {
    const runs = new KeyRuns();
    if (keys.length === 0) return runs;
    let size = 0;
    for (const key of keys) size += key.length;
    let bytes = new Uint8Array(size + 16);
    const ends = new Uint32Array(keys.length);
    let at = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (at + key.length * BYTES_PER_UNIT_MAX > bytes.length) {
        const grown = new Uint8Array(Math.max(at + key.length * BYTES_PER_UNIT_MAX, 2 * bytes.length));
        grown.set(bytes.subarray(0, at));
        bytes = grown;
      }
      at = encodeKey(key, bytes, at);
      ends[i] = at;
    }
    runs.runs.push(
      new KeyRun(bytes.length > at + (at >> 3) + 16 ? bytes.slice(0, at) : bytes, ends, null, keys.length),
    );
    runs.count = keys.length;
    return runs;
  }

  /** Adds `keys[from, end)`: distinct, none in the index. */
  insertBatch(keys: readonly string[], from: number, end: number): void {
    this.push(keys, from, end, false);
    this.count += end - from;
  }

  /** Removes `keys[from, end)`: distinct, all in the index. */
  removeBatch(keys: readonly string[], from: number, end: number): void {
    this.push(keys, from, end, true);
    this.count -= end - from;
  }

  private push(keys: readonly string[], from: number, end: number, dead: boolean): void {
    for (let start = from; start < end; start += CHUNK_KEYS) {
      const stop = Math.min(end, start + CHUNK_KEYS);
      this.runs.push(this.sortedRun(keys, start, stop, dead));
      this.mergeNewest();
    }
  }

  private sortedRun(keys: readonly string[], from: number, end: number, dead: boolean): KeyRun {
    const batch = this.batch;
    const size = batch.fill(keys, from, end);
    const n = end - from;
    const order = this.sorter.sort(batch.bytes, batch.starts, batch.ends, n);
    const bytes = new Uint8Array(size);
    const ends = new Uint32Array(n);
    const source = batch.bytes;
    let at = 0;
    for (let s = 0; s < n; s++) {
      const k = order[s]!;
      const e = batch.ends[k]!;
      for (let i = batch.starts[k]!; i < e; i++) bytes[at++] = source[i]!;
      ends[s] = at;
    }
    return new KeyRun(bytes, ends, dead ? new Uint8Array(n).fill(1) : null, n);
  }

  /** Merges the newest run into the one before while that is no larger (or too many runs). */
  private mergeNewest(): void {
    const runs = this.runs;
    while (runs.length >= 2) {
      const newer = runs[runs.length - 1]!;
      const older = runs[runs.length - 2]!;
      if (older.length > newer.length && runs.length <= RUNS_MAX) break;
      const merged = mergeRuns(newer, older, runs.length === 2);
      runs.pop();
      if (merged.length === 0) runs.pop();
      else runs[runs.length - 1] = merged;
    }
  }

  private encodeProbe(key: string): number {
    if (key.length * BYTES_PER_UNIT_MAX > this.probe.length) {
      this.probe = new Uint8Array(key.length * BYTES_PER_UNIT_MAX);
    }
    return encodeKey(key, this.probe, 0);
  }

  /** Whether the index holds `key`: its newest entry is not a removal. */
  has(key: string): boolean {
    const end = this.encodeProbe(key);
    const probe = this.probe;
    const runs = this.runs;
    for (let r = runs.length - 1; r >= 0; r--) {
      const run = runs[r]!;
      const i = run.lowerBound(probe, end, false);
      if (i < run.length && compareBytes(run.bytes, run.start(i), run.ends[i]!, probe, 0, end) === 0) {
        return run.dead === null || run.dead[i] === 0;
      }
    }
    return false;
  }

  /**
   * Calls `visit` with keys in ascending order, starting at the first key >= `from`
   * (> `from` when `exclusive`), until it returns false or the keys run out.
   */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    const runs = this.runs;
    const k = runs.length;
    if (k === 0) return;
    const end = this.encodeProbe(from);
    const probe = this.probe;
    const at = new Int32Array(k);
    // Runs with entries left, ordered by their current key, the newer first among equal keys.
    const heads: number[] = [];
    for (let r = k - 1; r >= 0; r--) {
      const run = runs[r]!;
      at[r] = run.lowerBound(probe, end, exclusive);
      if (at[r]! < run.length) insertHead(heads, r, runs, at);
    }
    this.work += k;
    let work = 0;
    while (heads.length > 0) {
      const r = heads.shift()!;
      const run = runs[r]!;
      const i = at[r]!;
      const s = run.start(i);
      const e = run.ends[i]!;
      // Older runs' entries of the same key are hidden by this one: step past them.
      let equal = 0;
      while (equal < heads.length) {
        const o = heads[equal]!;
        const other = runs[o]!;
        const j = at[o]!;
        if (compareBytes(other.bytes, other.start(j), other.ends[j]!, run.bytes, s, e) !== 0) break;
        equal++;
      }
      const hidden = heads.splice(0, equal);
      work += 1 + equal;
      if (run.dead === null || run.dead[i] === 0) {
        if (!visit(decodeKey(run.bytes, s, e))) {
          this.work += work;
          return;
        }
      }
      at[r] = i + 1;
      if (i + 1 < run.length) insertHead(heads, r, runs, at);
      for (const o of hidden) {
        at[o]!++;
        if (at[o]! < runs[o]!.length) insertHead(heads, o, runs, at);
      }
    }
    this.work += work;
  }

  /** Every key in order; for tests and consistency checks. */
  keys(): string[] {
    const keys: string[] = [];
    this.scan("", false, (key) => {
      keys.push(key);
      return true;
    });
    return keys;
  }
}

/** Puts run `r` (its current entry `at[r]`) into `heads` by key, after the newer runs' equal keys. */
function insertHead(heads: number[], r: number, runs: readonly KeyRun[], at: Int32Array): void {
  const run = runs[r]!;
  const i = at[r]!;
  const s = run.start(i);
  const e = run.ends[i]!;
  let t = 0;
  while (t < heads.length) {
    const o = heads[t]!;
    const other = runs[o]!;
    const j = at[o]!;
    const c = compareBytes(other.bytes, other.start(j), other.ends[j]!, run.bytes, s, e);
    if (c > 0 || (c === 0 && o < r)) break;
    t++;
  }
  heads.splice(t, 0, r);
}

/**
 * One run of `newer`'s and `older`'s entries in order; where both hold a key, newer's
 * entry alone. `bottom` (older is the oldest run): removals are dropped.
 */
export function mergeRuns(newer: KeyRun, older: KeyRun, bottom: boolean): KeyRun {
  const a = newer.bytes;
  const b = older.bytes;
  const aEnds = newer.ends;
  const bEnds = older.ends;
  const aDead = newer.dead;
  const bDead = older.dead;
  const keepDead = !bottom && (aDead !== null || bDead !== null);
  const bytes = new Uint8Array(newer.ends[newer.length - 1]! + older.ends[older.length - 1]!);
  const ends = new Uint32Array(newer.length + older.length);
  // Bytes every key of both runs shares: comparisons start after them.
  let skip = Math.min(newer.shared, older.shared);
  {
    let i = 0;
    while (i < skip && a[i] === b[i]) i++;
    skip = i;
  }
  const dead = keepDead ? new Uint8Array(newer.length + older.length) : null;
  let n = 0;
  let at = 0;
  let i = 0;
  let j = 0;
  let as = 0;
  let bs = 0;
  const an = newer.length;
  const bn = older.length;
  while (i < an || j < bn) {
    let c: number;
    if (i >= an) c = 1;
    else if (j >= bn) c = -1;
    else {
      // compareBytes, inlined.
      const ae = aEnds[i]!;
      const be = bEnds[j]!;
      const m = Math.min(ae - as, be - bs);
      let d = 0;
      for (let p = skip; p < m; p++) {
        d = a[as + p]! - b[bs + p]!;
        if (d !== 0) break;
      }
      c = d !== 0 ? d : ae - as - (be - bs);
    }
    if (c <= 0) {
      const ae = aEnds[i]!;
      const gone = aDead !== null && aDead[i] === 1;
      // A key's entries, newest to oldest, alternate between removal and add (a removal is
      // written only for a key the index holds, an add only for one it does not) and the
      // oldest is an add: two in adjacent runs of which one is a removal are a pair next
      // to each other in that history, and dropping both leaves its newest entry's meaning.
      const pair = c === 0 && gone !== (bDead !== null && bDead[j] === 1);
      if (!pair && (!gone || !bottom)) {
        for (let p = as; p < ae; p++) bytes[at++] = a[p]!;
        ends[n] = at;
        if (dead !== null && gone) dead[n] = 1;
        n++;
      }
      as = ae;
      i++;
      if (c === 0) {
        bs = bEnds[j]!;
        j++;
      }
    } else {
      const be = bEnds[j]!;
      const gone = bDead !== null && bDead[j] === 1;
      if (!gone || !bottom) {
        for (let p = bs; p < be; p++) bytes[at++] = b[p]!;
        ends[n] = at;
        if (dead !== null && gone) dead[n] = 1;
        n++;
      }
      bs = be;
      j++;
    }
  }
  // Cancelled or hidden entries leave room: let it go when it is more than an eighth.
  const tight = n + (n >> 3) < newer.length + older.length;
  return new KeyRun(
    tight ? bytes.slice(0, at) : bytes,
    tight ? ends.slice(0, n) : ends,
    dead === null ? null : tight ? dead.slice(0, n) : dead,
    n,
  );
}

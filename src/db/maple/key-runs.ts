/**
 * The settled ordered index as sorted runs of key bytes (a log-structured merge): what
 * DeferredOrder folds its notes into and scans for lists and counts.
 *
 * A run is one Uint8Array of its keys' bytes (key-bytes.ts: byte order = key order) in
 * order and the end of each key in a Uint32Array. New keys are gathered as bytes into a
 * new run of up to CHUNK_KEYS (sorted by numbers made of their bytes, see RunSorter):
 * background folds while writes go on leave the last few gathered (`insertBatch`'s
 * `gather`), and any read or removal sorts them into a run first. Each key a first run
 * holds more saves merges (one per doubling; ~20 ns each).
 *
 * Every key present is live in exactly one run: an add is made only for a key the index
 * lacks, a removal only for one it holds. So a removal finds that entry (a binary search
 * per run) and marks it dead in place: no tombstones, and the order of the runs does not
 * matter (a key re-added after its removal is live in a newer run, its old entry dead).
 * Dead entries are counted per block of BLOCK entries and per group of GROUP, so a scan
 * steps over a dead stretch a block or a group at a time. A run whose dead entries pass
 * a quarter of it is rewritten without them; one all dead is dropped.
 *
 * Merges and rewrites are jobs done in bounded steps (`advance`, a budget in entries
 * moved): runs of about the same size (one power of two, a "level") are merged two at a
 * time, at most one job a level, the smallest jobs first. Until a job is done its source
 * runs serve scans and `has` as before and new runs stack beside them; a removal of an
 * entry the job already copied is marked in the copy too. Each add or removal pays a
 * share of the jobs (`insertBatch`'s budget), so they keep pace with the writes and the
 * runs stay about log2(n / CHUNK_KEYS) + a few; no call does O(n) work.
 *
 * Why not one JS string a key in blocks (OrderedKeys): in a store that keeps its keys'
 * bytes itself (RecordDB), the index's strings were the only JS copies of a million
 * keys: ~100 MiB more and a million cells for the collector to mark, and every new key
 * went to a random block (a cache miss or two). Here a key costs its bytes and four,
 * merges read and write memory in order, and only a scan's visited keys become strings.
 *
 * A scan seeks every run (a binary search each) and merges their cursors in key order:
 * O(runs · log n + keys visited + dead blocks and groups stepped over).
 */
import { BYTES_PER_UNIT_MAX, compareBytes, decodeKey, encodedLength, encodeKey } from "./key-bytes.ts";
import type { OrderedKeys } from "./ordered-keys.ts";

/**
 * Keys a new run takes at most (new keys are gathered into runs this long): RunSorter
 * packs an index into 12 bits. Each doubling of the first runs saves every key a merge
 * (~20 ns) and costs its sort less than that (see SORT_PAD).
 */
const CHUNK_KEYS = 4096;
const INDEX_SPAN = 4096;
/** Bytes of keys a new run takes at most (long keys: a run's sort and copy stay short). */
const CHUNK_BYTES = 64 * CHUNK_KEYS;
/** Bytes a sort key holds; each is 0 (the key ended) or byte + 1, so 257^5 · 4096 < 2^53. */
const CODE_BYTES = 5;
/**
 * A batch of SORT_PAD_FROM keys or more is sorted as SORT_PAD numbers (padded with
 * +Infinity): JavaScriptCore sorts a Float64Array of 8192 or more about four times
 * faster per element than a shorter one (measured, Bun 1.4: 10 vs 44 ns), so 4096 keys
 * padded sort in half the time. Only a matter of speed: any engine sorts them right.
 */
const SORT_PAD = 8192;
const SORT_PAD_FROM = 2048;
/** What sorting a key into a new run costs a job budget, in entries (~30-40 ns; a merged entry ~15-20). */
const SORT_COST = 2;
/** A group this small is sorted by comparing bytes (insertion sort). */
const SMALL_GROUP = 12;
/** Dead entries are counted per block of 2^BLOCK_BITS entries and per group of 2^GROUP_BITS. */
const BLOCK_BITS = 6;
const GROUP_BITS = 12;
const BLOCK = 1 << BLOCK_BITS;
const GROUP = 1 << GROUP_BITS;
/** A run is rewritten without its dead entries once they are more than 1 / DEAD_SHARE of it. */
const DEAD_SHARE = 4;
/**
 * Entries a job moves per key added or removed, per level of the index (see `pace`):
 * twice what a key costs the merges over its life, so a level's merge is done before the
 * level holds another pair.
 */
const PACE_PER_LEVEL = 2;
/** More runs than this and a write pays for the smallest jobs until it is back under (a fallback). */
const RUNS_MAX = 48;

/**
 * What moving one entry of `bytes` costs a job's budget: one, and one more per
 * BYTES_PER_COST bytes, so a step of long keys copies about as many bytes as one of
 * short keys moves entries.
 */
const BYTES_PER_COST = 64;

function entryCost(bytes: number): number {
  return 1 + ((bytes / BYTES_PER_COST) | 0);
}

/** What `keys` keys of `bytes` in all cost as a job's entries (about the sum of their entryCost). */
function batchCost(keys: number, bytes: number): number {
  return keys + Math.floor(bytes / BYTES_PER_COST);
}

/** Copies `src[start, end)` to `out` at `at`; returns where it ends there. */
function copyKey(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  if (end - start > BYTES_PER_COST) {
    out.set(src.subarray(start, end), at);
    return at + end - start;
  }
  for (let p = start; p < end; p++) out[at++] = src[p]!;
  return at;
}

/** The level of a run of `length` entries: floor(log2(length)). */
function levelOf(length: number): number {
  return 31 - Math.clz32(Math.max(1, length));
}

/** The first of `ends[0, length)`'s keys (in `bytes`) >= the probe's bytes (> them when `exclusive`). */
function lowerBoundIn(
  bytes: Uint8Array,
  ends: Uint32Array,
  length: number,
  probe: Uint8Array,
  probeEnd: number,
  exclusive: boolean,
): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareBytes(bytes, mid === 0 ? 0 : ends[mid - 1]!, ends[mid]!, probe, 0, probeEnd);
    if (c < 0 || (exclusive && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * One sorted run of `length` entries (its arrays may be longer); key i is
 * `bytes[ends[i - 1] ?? 0, ends[i])`. Entries may be marked dead (removed keys).
 */
export class KeyRun {
  /** Bytes every key of the run starts with (those its first and last key share). */
  readonly shared: number;
  readonly level: number;
  /** 1 per dead entry; null while none is. */
  dead: Uint8Array | null = null;
  /** Dead entries per block of BLOCK, and per group of GROUP. */
  private blockDead: Uint8Array | null = null;
  private groupDead: Uint16Array | null = null;
  deadCount = 0;
  deadBytes = 0;
  /** The job this run is a source of, if any. */
  job: MergeJob | null = null;
  /**
   * Dead entries, blocks and groups `nextLive` stepped over (a scan's work): reset and
   * summed by KeyRuns.scan over the runs it reads (before stop 32: a module-level counter).
   */
  stepped = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly ends: Uint32Array,
    readonly length: number,
  ) {
    const lastStart = length < 2 ? 0 : ends[length - 2]!;
    const m = Math.min(length === 0 ? 0 : ends[0]!, length === 0 ? 0 : ends[length - 1]! - lastStart);
    let i = 0;
    while (i < m && bytes[i] === bytes[lastStart + i]) i++;
    this.shared = i;
    this.level = levelOf(length);
  }

  start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  /** Bytes the run's keys take. */
  get usedBytes(): number {
    return this.length === 0 ? 0 : this.ends[this.length - 1]!;
  }

  get live(): number {
    return this.length - this.deadCount;
  }

  /**
   * Whether dead entries and unused room (a merge sized its output when it began; keys
   * removed before it copied them left room) pass 1 / DEAD_SHARE of the run: it is then
   * rewritten (a sliced job) to give that memory back.
   */
  get wasteful(): boolean {
    const spare = this.ends.length - this.length;
    return (this.deadCount + spare) * DEAD_SHARE > this.length + spare;
  }

  /** The first entry whose key is >= the probe's bytes (> them when `exclusive`). */
  lowerBound(probe: Uint8Array, probeEnd: number, exclusive: boolean): number {
    return lowerBoundIn(this.bytes, this.ends, this.length, probe, probeEnd, exclusive);
  }

  /** Whether entry i holds exactly the probe's bytes. */
  holds(i: number, probe: Uint8Array, probeEnd: number): boolean {
    return (
      i < this.length && compareBytes(this.bytes, this.start(i), this.ends[i]!, probe, 0, probeEnd) === 0
    );
  }

  isDead(i: number): boolean {
    return this.dead !== null && this.dead[i] === 1;
  }

  markDead(i: number): void {
    if (this.dead === null) {
      this.dead = new Uint8Array(this.length);
      this.blockDead = new Uint8Array((this.length + BLOCK - 1) >>> BLOCK_BITS);
      this.groupDead = new Uint16Array((this.length + GROUP - 1) >>> GROUP_BITS);
    }
    this.dead[i] = 1;
    this.blockDead![i >>> BLOCK_BITS]!++;
    this.groupDead![i >>> GROUP_BITS]!++;
    this.deadCount++;
    this.deadBytes += this.ends[i]! - this.start(i);
  }

  /** The first live entry at or after i (length if none), stepping over dead blocks and groups. */
  nextLive(i: number): number {
    const dead = this.dead;
    if (dead === null) return i;
    const length = this.length;
    const blockDead = this.blockDead!;
    const groupDead = this.groupDead!;
    while (i < length) {
      if ((i & (GROUP - 1)) === 0 && groupDead[i >>> GROUP_BITS] === Math.min(GROUP, length - i)) {
        i += GROUP;
      } else if ((i & (BLOCK - 1)) === 0 && blockDead[i >>> BLOCK_BITS] === Math.min(BLOCK, length - i)) {
        i += BLOCK;
      } else if (dead[i] === 0) {
        return i;
      } else {
        i++;
      }
      this.stepped++;
    }
    return length;
  }

  keyAt(i: number): string {
    return decodeKey(this.bytes, this.start(i), this.ends[i]!);
  }
}

/**
 * A merge of one or two runs (one: a rewrite without its dead entries) into a new run,
 * in steps. Dead entries are left out; the sources hold no live key twice (see KeyRuns).
 */
export class MergeJob {
  readonly sources: KeyRun[];
  private readonly out: Uint8Array;
  private readonly outEnds: Uint32Array;
  /** Entries written, and bytes. */
  private n = 0;
  private at = 0;
  /** Next entry of each source, and where its bytes start. */
  private readonly next: number[];
  private readonly from: number[];
  /** Entries of the output marked dead while the job ran (their sources' entries were removed once copied). */
  private readonly outDead: number[] = [];
  /** Bytes every key of the sources shares: comparisons start after them. */
  private readonly skip: number;
  readonly size: number;

  constructor(sources: KeyRun[]) {
    this.sources = sources;
    let bytes = 0;
    let entries = 0;
    let size = 0;
    for (const run of sources) {
      run.job = this;
      bytes += run.usedBytes - run.deadBytes;
      entries += run.live;
      size += run.length;
    }
    this.size = size;
    this.out = new Uint8Array(bytes);
    this.outEnds = new Uint32Array(entries);
    this.next = sources.map(() => 0);
    this.from = sources.map(() => 0);
    let skip = sources[0]!.shared;
    if (sources.length === 2) {
      const a = sources[0]!.bytes;
      const b = sources[1]!.bytes;
      const m = Math.min(skip, sources[1]!.shared);
      let i = 0;
      while (i < m && a[i] === b[i]) i++;
      skip = i;
    }
    this.skip = skip;
  }

  get done(): boolean {
    for (let s = 0; s < this.sources.length; s++) if (this.next[s]! < this.sources[s]!.length) return false;
    return true;
  }

  /** Source `run`'s entry i was just marked dead: if it was copied already, its copy is too. */
  removed(run: KeyRun, i: number): void {
    const s = this.sources.indexOf(run);
    if (i >= this.next[s]!) return;
    const start = run.start(i);
    const end = run.ends[i]!;
    const probe = run.bytes.subarray(start, end);
    const o = lowerBoundIn(this.out, this.outEnds, this.n, probe, end - start, false);
    this.outDead.push(o);
  }

  /** Moves entries for up to about `budget` (see entryCost); returns the cost of what it moved or stepped over. */
  step(budget: number): number {
    return this.sources.length === 1 ? this.copySome(budget) : this.mergeSome(budget);
  }

  /** A rewrite: copies live stretches of the one source. */
  private copySome(budget: number): number {
    const run = this.sources[0]!;
    const src = run.bytes;
    const ends = run.ends;
    const dead = run.dead;
    const out = this.out;
    const outEnds = this.outEnds;
    const length = run.length;
    const most = Math.max(1, budget);
    let i = this.next[0]!;
    let n = this.n;
    let at = this.at;
    let cost = 0;
    while (i < length && cost < most) {
      if (dead !== null && dead[i] === 1) {
        i++;
        cost++;
        continue;
      }
      const s = i === 0 ? 0 : ends[i - 1]!;
      let e = i;
      let prev = s;
      while (e < length && cost < most && (dead === null || dead[e] === 0)) {
        cost += entryCost(ends[e]! - prev);
        prev = ends[e]!;
        e++;
      }
      const shift = at - s;
      out.set(src.subarray(s, prev), at);
      for (let k = i; k < e; k++) outEnds[n++] = ends[k]! + shift;
      at = outEnds[n - 1]!;
      i = e;
    }
    this.next[0] = i;
    this.n = n;
    this.at = at;
    return cost;
  }

  /** A merge of two sources in key order. */
  private mergeSome(budget: number): number {
    const ra = this.sources[0]!;
    const rb = this.sources[1]!;
    const a = ra.bytes;
    const b = rb.bytes;
    const aEnds = ra.ends;
    const bEnds = rb.ends;
    const aDead = ra.dead;
    const bDead = rb.dead;
    const an = ra.length;
    const bn = rb.length;
    const out = this.out;
    const outEnds = this.outEnds;
    const skip = this.skip;
    const most = Math.max(1, budget);
    let i = this.next[0]!;
    let j = this.next[1]!;
    let as = this.from[0]!;
    let bs = this.from[1]!;
    let n = this.n;
    let at = this.at;
    let cost = 0;
    while (cost < most && (i < an || j < bn)) {
      if (i < an && aDead !== null && aDead[i] === 1) {
        as = aEnds[i]!;
        i++;
        cost++;
        continue;
      }
      if (j < bn && bDead !== null && bDead[j] === 1) {
        bs = bEnds[j]!;
        j++;
        cost++;
        continue;
      }
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
        // (c === 0 cannot be: a key is live in one run only; kept once if it were.)
        const ae = aEnds[i]!;
        at = copyKey(a, as, ae, out, at);
        outEnds[n++] = at;
        cost += entryCost(ae - as);
        as = ae;
        i++;
        if (c === 0) {
          bs = bEnds[j]!;
          j++;
        }
      } else {
        const be = bEnds[j]!;
        at = copyKey(b, bs, be, out, at);
        outEnds[n++] = at;
        cost += entryCost(be - bs);
        bs = be;
        j++;
      }
    }
    this.next[0] = i;
    this.next[1] = j;
    this.from[0] = as;
    this.from[1] = bs;
    this.n = n;
    this.at = at;
    return cost;
  }

  /** The merged run (once `done`), with the removals made meanwhile marked. */
  result(): KeyRun {
    const run = new KeyRun(this.out, this.outEnds, this.n);
    for (const o of this.outDead) run.markDead(o);
    return run;
  }
}

/** Sorts a batch's keys by their bytes: numbers of CODE_BYTES bytes sorted natively, ties deeper. */
class RunSorter {
  readonly order = new Int32Array(CHUNK_KEYS);
  private readonly codes = new Float64Array(SORT_PAD);
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
    if (lo === 0 && hi >= SORT_PAD_FROM) {
      codes.fill(Number.POSITIVE_INFINITY, hi, SORT_PAD);
      codes.sort();
    } else codes.subarray(lo, hi).sort();
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

/** New keys as bytes, gathered until they are sorted into a run (reused; CHUNK_BYTES and one key at most). */
class Batch {
  bytes = new Uint8Array(16 * CHUNK_KEYS);
  readonly starts = new Int32Array(CHUNK_KEYS);
  readonly ends = new Int32Array(CHUNK_KEYS);
  /** Keys held, and their bytes. */
  n = 0;
  at = 0;

  /** Encodes `key` after the others (room for CHUNK_KEYS in all); returns its bytes. */
  add(key: string): number {
    const at = this.at;
    const room = at + key.length * BYTES_PER_UNIT_MAX;
    if (room > this.bytes.length) {
      const grown = new Uint8Array(Math.max(room, 2 * this.bytes.length));
      grown.set(this.bytes.subarray(0, at));
      this.bytes = grown;
    }
    this.starts[this.n] = at;
    this.at = encodeKey(key, this.bytes, at);
    this.ends[this.n++] = this.at;
    return this.at - at;
  }
}

export class KeyRuns {
  /** Every run that serves reads (job sources included), in no particular order. */
  private runs: KeyRun[] = [];
  /** Jobs under way, at most one merge per level plus one rewrite. */
  private jobs: MergeJob[] = [];
  private count = 0;
  private readonly sorter = new RunSorter();
  private readonly batch = new Batch();
  private probe = new Uint8Array(256);
  /**
   * Entries read by scans (visited keys, dead entries, blocks and groups stepped over)
   * and runs sought: what a page costs, for tests that check it stays O(runs · log n +
   * page) however many keys the index holds.
   */
  work = 0;
  /** Entries jobs moved or stepped over, in all; for tests. */
  merged = 0;

  get size(): number {
    return this.count;
  }

  /** Runs held now; for tests. */
  get runCount(): number {
    return this.runs.length;
  }

  /** Whether merges or rewrites are under way (`advance` has work). */
  get pending(): boolean {
    return this.jobs.length > 0;
  }

  /** Keys already in byte order (compareKeys) and distinct, in one run: O(n), in one piece (see RunWriter). */
  static fromSorted(keys: readonly string[]): KeyRuns {
    let bytes = 0;
    for (const key of keys) bytes += encodedLength(key);
    const writer = new RunWriter(keys.length, bytes);
    for (const key of keys) writer.add(key);
    return writer.result();
  }

  /** A run written whole (RunWriter); `count` its entries. */
  static ofRun(run: KeyRun | null): KeyRuns {
    const runs = new KeyRuns();
    if (run !== null && run.length > 0) {
      runs.runs.push(run);
      runs.count = run.length;
    }
    return runs;
  }

  /**
   * Entries jobs move per key added or removed: PACE_PER_LEVEL per level a key passes
   * through (log2(n / CHUNK_KEYS)), and a few.
   */
  private pace(): number {
    return PACE_PER_LEVEL * (levelOf(this.count >>> 10) + 2);
  }

  /**
   * Adds `keys[from, end)`: distinct, none in the index. They are gathered (as bytes)
   * into runs of CHUNK_KEYS; with `gather` the last few wait for more keys (any read, or
   * a removal, sorts them into a run first), else they form a run now. Then moves jobs on
   * by up to `budget` (default: the pace, times what the keys cost as entries of a job —
   * see entryCost — so long keys pay for the longer merges they make). The caller pays
   * for sorting these keys (DeferredOrder counts it per note); sorting keys gathered by
   * earlier calls is paid from the budget (SORT_COST times what they cost as entries).
   * Returns the cost of those sorts and of the jobs.
   */
  insertBatch(keys: readonly string[], from: number, end: number, budget?: number, gather = false): number {
    const batch = this.batch;
    const earlier = batchCost(batch.n, batch.at);
    let bytes = 0;
    let sorted = false;
    for (let k = from; k < end; k++) {
      bytes += batch.add(keys[k]!);
      if (batch.n === CHUNK_KEYS || batch.at >= CHUNK_BYTES) sorted = this.sortBatch() > 0 || sorted;
    }
    if (!gather) sorted = this.sortBatch() > 0 || sorted;
    this.count += end - from;
    this.plan();
    const sorts = sorted ? SORT_COST * earlier : 0;
    const total = budget ?? this.pace() * batchCost(end - from, bytes);
    return sorts + this.pay(Math.max(0, total - sorts));
  }

  /** Sorts the gathered keys into a run; returns how many. */
  private sortBatch(): number {
    const n = this.batch.n;
    if (n === 0) return 0;
    this.runs.push(this.sortedRun());
    const batch = this.batch;
    batch.n = 0;
    batch.at = 0;
    // Grown for a long key: let it go.
    if (batch.bytes.length > 2 * CHUNK_BYTES) batch.bytes = new Uint8Array(16 * CHUNK_KEYS);
    return n;
  }

  /** Before a read or a removal: the gathered keys into a run. */
  private sortGathered(): void {
    if (this.batch.n === 0) return;
    this.sortBatch();
    this.plan();
  }

  /**
   * Removes `keys[from, end)`: distinct, all in the index (each marked dead where it is
   * live). Then moves jobs on, as insertBatch. Returns the entries moved.
   */
  removeBatch(keys: readonly string[], from: number, end: number, budget?: number): number {
    this.sortGathered();
    let bytes = 0;
    for (let k = from; k < end; k++) {
      const probeEnd = this.encodeProbe(keys[k]!);
      bytes += probeEnd;
      const runs = this.runs;
      for (let r = runs.length - 1; r >= 0; r--) {
        const run = runs[r]!;
        const i = run.lowerBound(this.probe, probeEnd, false);
        if (!run.holds(i, this.probe, probeEnd) || run.isDead(i)) continue;
        run.markDead(i);
        run.job?.removed(run, i);
        break;
      }
    }
    this.count -= end - from;
    this.plan();
    return this.pay(budget ?? this.pace() * batchCost(end - from, bytes));
  }

  /** Moves jobs on by `budget`, and more while the runs are past RUNS_MAX (a fallback). */
  private pay(budget: number): number {
    let units = this.advance(budget);
    while (this.runs.length > RUNS_MAX && this.jobs.length > 0) units += this.advance(this.jobs[0]!.size);
    return units;
  }

  /**
   * Moves the jobs on by up to about `budget` (entries, and one more per BYTES_PER_COST
   * bytes: see entryCost), the smallest first (a finished job's run replaces its sources,
   * and may start the next); returns the cost of what was moved or stepped over.
   */
  advance(budget: number): number {
    let done = 0;
    while (done < budget && this.jobs.length > 0) {
      const job = this.jobs[0]!;
      done += job.step(budget - done);
      if (job.done) this.finish(job);
    }
    this.merged += done;
    return done;
  }

  private finish(job: MergeJob): void {
    this.jobs.splice(this.jobs.indexOf(job), 1);
    const runs = this.runs;
    for (const source of job.sources) runs.splice(runs.indexOf(source), 1);
    const run = job.result();
    if (run.length > 0) runs.push(run);
    this.plan();
  }

  /**
   * Starts the jobs due: a merge of two idle runs of one level (none running there), a
   * rewrite of an idle run over 1 / DEAD_SHARE dead (none running); drops an all-dead run.
   * Jobs are kept smallest first.
   */
  private plan(): void {
    const runs = this.runs;
    let rewriting = false;
    let busy = 0;
    for (const job of this.jobs) {
      if (job.sources.length === 1) rewriting = true;
      else busy |= 1 << job.sources[0]!.level;
    }
    let waiting = 0;
    const firstAt: number[] = [];
    for (let r = 0; r < runs.length; r++) {
      const run = runs[r]!;
      if (run.job !== null) continue;
      if (run.deadCount === run.length) {
        runs.splice(r--, 1);
        continue;
      }
      const level = run.level;
      const bit = 1 << level;
      if ((busy & bit) === 0) {
        if ((waiting & bit) === 0) {
          waiting |= bit;
          firstAt[level] = r;
        } else {
          busy |= bit;
          waiting &= ~bit;
          this.start([runs[firstAt[level]!]!, run]);
          continue;
        }
      }
      if (!rewriting && run.wasteful && (waiting & bit) !== 0 && firstAt[level] === r) {
        // Alone at its level for now: rewritten on its own.
        rewriting = true;
        waiting &= ~bit;
        this.start([run]);
      }
    }
  }

  private start(sources: KeyRun[]): void {
    const job = new MergeJob(sources);
    const jobs = this.jobs;
    let t = jobs.length;
    while (t > 0 && jobs[t - 1]!.size > job.size) t--;
    jobs.splice(t, 0, job);
  }

  private sortedRun(): KeyRun {
    const batch = this.batch;
    const size = batch.at;
    const n = batch.n;
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
    return new KeyRun(bytes, ends, n);
  }

  private encodeProbe(key: string): number {
    if (key.length * BYTES_PER_UNIT_MAX > this.probe.length) {
      this.probe = new Uint8Array(key.length * BYTES_PER_UNIT_MAX);
    }
    return encodeKey(key, this.probe, 0);
  }

  /** Whether the index holds `key`: some run has it live. */
  has(key: string): boolean {
    this.sortGathered();
    const end = this.encodeProbe(key);
    const probe = this.probe;
    for (const run of this.runs) {
      const i = run.lowerBound(probe, end, false);
      if (run.holds(i, probe, end) && !run.isDead(i)) return true;
    }
    return false;
  }

  /**
   * Calls `visit` with keys in ascending order, starting at the first key >= `from`
   * (> `from` when `exclusive`), until it returns false or the keys run out.
   */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.sortGathered();
    const runs = this.runs.slice();
    const k = runs.length;
    if (k === 0) return;
    const end = this.encodeProbe(from);
    const probe = this.probe;
    const at = new Int32Array(k);
    // Runs with live entries left, ordered by their current key (no two equal: a key is live once).
    const heads: number[] = [];
    for (let r = 0; r < k; r++) {
      const run = runs[r]!;
      run.stepped = 0;
      at[r] = run.nextLive(run.lowerBound(probe, end, exclusive));
      if (at[r]! < run.length) insertHead(heads, r, runs, at);
    }
    let work = k;
    while (heads.length > 0) {
      const r = heads.shift()!;
      const run = runs[r]!;
      const i = at[r]!;
      work++;
      // Read before visit: a visitor may write (and fold) before the next key.
      const key = decodeKey(run.bytes, run.start(i), run.ends[i]!);
      if (!visit(key)) break;
      at[r] = run.nextLive(i + 1);
      if (at[r]! < run.length) insertHead(heads, r, runs, at);
    }
    let stepped = 0;
    for (let r = 0; r < k; r++) {
      stepped += runs[r]!.stepped;
      runs[r]!.stepped = 0;
    }
    this.work += work + stepped;
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

/** Puts run `r` (its current entry `at[r]`) into `heads` by key. */
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
    if (compareBytes(other.bytes, other.start(j), other.ends[j]!, run.bytes, s, e) > 0) break;
    t++;
  }
  heads.splice(t, 0, r);
}

/**
 * Writes keys given in order (compareKeys) and distinct into one run, a key at a time,
 * into arrays sized once (`count` keys of `bytes` in all, as encodedLength counts them):
 * no copy of what was written, so a caller can convert a large source in steps (see
 * RunConverter).
 */
export class RunWriter {
  private readonly bytes: Uint8Array;
  private readonly ends: Uint32Array;
  private n = 0;
  private at = 0;

  constructor(count: number, bytes: number) {
    this.ends = new Uint32Array(count);
    this.bytes = new Uint8Array(bytes);
  }

  /** Appends `key`; returns its bytes. */
  add(key: string): number {
    const start = this.at;
    this.at = encodeKey(key, this.bytes, start);
    this.ends[this.n++] = this.at;
    return this.at - start;
  }

  get written(): number {
    return this.n;
  }

  result(): KeyRuns {
    // encodeKey counts past the array's end (typed arrays drop such writes): a wrong size shows here.
    if (this.at !== this.bytes.length) throw new Error("RunWriter: the keys' bytes were counted wrong");
    return KeyRuns.ofRun(new KeyRun(this.bytes, this.ends, this.n));
  }
}

/**
 * A built OrderedKeys (strings) into KeyRuns in steps of bounded work: a pass that counts
 * the keys' bytes, then one that writes them (each step resumes a scan of the source
 * after the last key it read: O(log n) to find it).
 */
export class RunConverter {
  private writer: RunWriter | null = null;
  private last: string | undefined;
  private counted = 0;
  private bytes = 0;

  /** `bytes`: the source's keys' bytes (encodedLength summed) when the caller counted them; else a first pass counts. */
  constructor(
    private readonly source: OrderedKeys,
    bytes?: number,
  ) {
    if (bytes !== undefined) {
      this.writer = new RunWriter(source.size, bytes);
      this.counted = source.size;
    }
  }

  get done(): boolean {
    return this.writer !== null && this.writer.written >= this.source.size;
  }

  /** Keys the source holds. */
  get size(): number {
    return this.source.size;
  }

  /**
   * Reads keys (at least one) for up to `budget` (a key costs entryCost of its bytes),
   * counting or writing them; returns the cost.
   */
  step(budget: number): number {
    const size = this.source.size;
    const most = Math.max(1, budget);
    let cost = 0;
    if (this.writer === null) {
      let last = this.last;
      if (this.counted < size) {
        let seen = 0;
        this.source.scan(last ?? "", last !== undefined, (key) => {
          const bytes = encodedLength(key);
          this.bytes += bytes;
          cost += entryCost(bytes);
          last = key;
          seen++;
          return cost < most;
        });
        this.counted += seen;
        this.last = last;
      }
      if (this.counted >= size) {
        this.writer = new RunWriter(size, this.bytes);
        this.last = undefined;
      }
      return cost;
    }
    const writer = this.writer;
    if (writer.written >= size) return 0;
    let last = this.last;
    this.source.scan(last ?? "", last !== undefined, (key) => {
      cost += entryCost(writer.add(key));
      last = key;
      return cost < most;
    });
    this.last = last;
    return cost;
  }

  result(): KeyRuns {
    if (!this.done) throw new Error("RunConverter.result called before the conversion was done");
    return this.writer!.result();
  }
}

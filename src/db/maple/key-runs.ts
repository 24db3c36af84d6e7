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
 *
 * Files: KeyRun and the shared sizes and costs in key-run.ts, MergeJob in merge-job.ts,
 * the gathering and sorting of new keys in run-sorter.ts, RunConverter (an OrderedKeys
 * into runs, in steps) in run-converter.ts; here KeyRuns, its scans and RunWriter.
 */
import { BYTES_PER_UNIT_MAX, compareBytes, decodeKey, encodedLength, encodeKey } from "./key-bytes.ts";
import {
  batchCost,
  CHUNK_BYTES,
  CHUNK_KEYS,
  KeyRun,
  levelOf,
  PACE_PER_LEVEL,
  RUNS_MAX,
  SORT_COST,
} from "./key-run.ts";
import { MergeJob } from "./merge-job.ts";
import { Batch, RunSorter } from "./run-sorter.ts";

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

/**
 * One sorted run of key bytes of the settled index (key-runs.ts: see its comment), with
 * the sizes and costs the runs, their merges and sorts share; split out of key-runs.ts at
 * stop 32 (no change).
 */
import { compareBytes, decodeKey } from "./key-bytes.ts";
import type { MergeJob } from "./merge-job.ts";

/**
 * Keys a new run takes at most (new keys are gathered into runs this long): RunSorter
 * packs an index into 12 bits. Each doubling of the first runs saves every key a merge
 * (~20 ns) and costs its sort less than that (see SORT_PAD).
 */
export const CHUNK_KEYS = 4096;
export const INDEX_SPAN = 4096;
/** Bytes of keys a new run takes at most (long keys: a run's sort and copy stay short). */
export const CHUNK_BYTES = 64 * CHUNK_KEYS;
/** Bytes a sort key holds; each is 0 (the key ended) or byte + 1, so 257^5 · 4096 < 2^53. */
export const CODE_BYTES = 5;
/**
 * A batch of SORT_PAD_FROM keys or more is sorted as SORT_PAD numbers (padded with
 * +Infinity): JavaScriptCore sorts a Float64Array of 8192 or more about four times
 * faster per element than a shorter one (measured, Bun 1.4: 10 vs 44 ns), so 4096 keys
 * padded sort in half the time. Only a matter of speed: any engine sorts them right.
 */
export const SORT_PAD = 8192;
export const SORT_PAD_FROM = 2048;
/** What sorting a key into a new run costs a job budget, in entries (~30-40 ns; a merged entry ~15-20). */
export const SORT_COST = 2;
/** A group this small is sorted by comparing bytes (insertion sort). */
export const SMALL_GROUP = 12;
/** Dead entries are counted per block of 2^BLOCK_BITS entries and per group of 2^GROUP_BITS. */
export const BLOCK_BITS = 6;
export const GROUP_BITS = 12;
export const BLOCK = 1 << BLOCK_BITS;
export const GROUP = 1 << GROUP_BITS;
/** A run is rewritten without its dead entries once they are more than 1 / DEAD_SHARE of it. */
export const DEAD_SHARE = 4;
/**
 * Entries a job moves per key added or removed, per level of the index (see `pace`):
 * twice what a key costs the merges over its life, so a level's merge is done before the
 * level holds another pair.
 */
export const PACE_PER_LEVEL = 2;
/** More runs than this and a write pays for the smallest jobs until it is back under (a fallback). */
export const RUNS_MAX = 48;

/**
 * What moving one entry of `bytes` costs a job's budget: one, and one more per
 * BYTES_PER_COST bytes, so a step of long keys copies about as many bytes as one of
 * short keys moves entries.
 */
export const BYTES_PER_COST = 64;

export function entryCost(bytes: number): number {
  return 1 + ((bytes / BYTES_PER_COST) | 0);
}

/** What `keys` keys of `bytes` in all cost as a job's entries (about the sum of their entryCost). */
export function batchCost(keys: number, bytes: number): number {
  return keys + Math.floor(bytes / BYTES_PER_COST);
}

/** Copies `src[start, end)` to `out` at `at`; returns where it ends there. */
export function copyKey(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  if (end - start > BYTES_PER_COST) {
    out.set(src.subarray(start, end), at);
    return at + end - start;
  }
  for (let p = start; p < end; p++) out[at++] = src[p]!;
  return at;
}

/** The level of a run of `length` entries: floor(log2(length)). */
export function levelOf(length: number): number {
  return 31 - Math.clz32(Math.max(1, length));
}

/** The first of `ends[0, length)`'s keys (in `bytes`) >= the probe's bytes (> them when `exclusive`). */
export function lowerBoundIn(
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

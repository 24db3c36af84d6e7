/**
 * OrderedKeysBuilder: builds an ordered index from unordered keys (live Map iterators) in
 * steps of bounded work, by a most-significant-digit radix sort; FirstKeys bounds a live
 * iterator to the keys its map held when the build started.
 */
import { BUILD_BLOCK_FILL } from "./coded-run.ts";
import { Block } from "./index-block.ts";
import { commonPrefixLength, unitRank } from "./key-order.ts";
import { OrderedKeys } from "./ordered-keys.ts";

/**
 * The first `count` keys `keys` yields. Over a live Map iterator made when the map held
 * `count` keys, those are the keys present then and still present when read (a Map
 * iterates in insertion order, so keys added later come after them): a build reading a
 * map that writers keep growing still ends. Keys added meanwhile are the notes' business.
 */
export class FirstKeys implements Iterator<string> {
  private left: number;
  private readonly keys: Iterator<string>;

  constructor(keys: Iterator<string>, count: number) {
    this.keys = keys;
    this.left = count;
  }

  next(): IteratorResult<string> {
    if (this.left <= 0) return { done: true, value: undefined };
    this.left--;
    return this.keys.next();
  }
}

/** A radix bucket of at most this many keys is sorted natively in one piece. */
const LEAF_KEYS_MAX = 1024;
/**
 * Keys per array of a build's key lists: lists are chunked because growing one array of
 * a million slots copies it whole each time it grows (measured: a 20–50 ms turn at the
 * last growths, with the collector's work for the large copies).
 */
const CHUNK_KEYS = 8192;
/**
 * Work units a key costs in a leaf's native sort and its move into a block (a collected
 * or distributed key costs 1), so one unit is about the same time in every phase
 * (measured with test/bench/data-api.ts).
 */
const LEAF_UNITS_PER_KEY = 4;
/** The most units one leaf costs: a step's budget should be at least this. */
export const LEAF_UNITS_MAX = LEAF_KEYS_MAX * LEAF_UNITS_PER_KEY;

/** How a radix task reads its digit at `at`: a whole unit below U+00FF, or the high or low byte of any unit. */
enum Digit {
  Unit = 0,
  High = 1,
  Low = 2,
}
/** Buckets of a Unit split: 0 for keys that end at `at`, rank + 1 below 255, and 256 for the rest. */
const UNIT_BUCKETS = 257;
const WIDE_BUCKET = 256;

/** Keys in arrays of at most CHUNK_KEYS. */
class ChunkedKeys {
  readonly chunks: string[][] = [];
  size = 0;

  push(key: string): void {
    const chunks = this.chunks;
    const last = chunks[chunks.length - 1];
    if (last === undefined || last.length === CHUNK_KEYS) chunks.push([key]);
    else last.push(key);
    this.size++;
  }
}

interface RadixTask {
  keys: ChunkedKeys;
  /** Code unit every key is split by; all keys agree on the units before it. */
  at: number;
  digit: Digit;
  /** Where the split has got to (it runs over several steps): chunk, then index in it. */
  chunk: number;
  offset: number;
  buckets: (ChunkedKeys | undefined)[] | null;
}

/**
 * Builds an OrderedKeys from unordered keys in steps of bounded work, so a caller can give
 * the event loop a turn between steps (see DeferredOrder). Phases:
 *
 * 1. Collect: reads the key iterators (live Map iterators: a key may come twice, e.g.
 *    deleted and added again while they are read; duplicates are dropped when emitted),
 *    noting the prefix every key shares.
 * 2. Sort: a most-significant-digit radix sort by code point order past that prefix:
 *    a bucket per code unit (for units below U+00FF, the common case, one pass per unit;
 *    the rest in two, by the high then the low byte of the unit's rank), split again until
 *    a bucket has at most LEAF_KEYS_MAX keys, which one native sort orders. Buckets are
 *    visited in order (a stack), so sorted keys come out in order and go straight into
 *    blocks.
 *
 * Why radix, not one native sort of everything: a native sort of 1M keys is one
 * uninterruptible call of ~0.6–1 s, and a merge of sorted runs in JS compares strings
 * one at a time (measured ~1.6 s for 1M); a radix pass reads one code unit per key.
 *
 * Memory: the collected keys, plus at most one more slot per key while a level is split
 * (a split bucket is dropped once split), plus the blocks: O(keys).
 */
export class OrderedKeysBuilder {
  private readonly sources: Iterator<string>[];
  private source = 0;
  private collected = new ChunkedKeys();
  private prefix: string | undefined;
  private collecting = true;
  private readonly stack: RadixTask[] = [];
  private run: string[] = [];
  private readonly blocks: Block[] = [];
  private last: string | undefined;
  private count = 0;
  private read = 0;

  /** `sources`: every key to index (each from one of them, or more than once). */
  constructor(sources: Iterator<string>[]) {
    this.sources = sources;
  }

  /** Keys read from the sources so far (repeats included). */
  get keysRead(): number {
    return this.read;
  }

  get done(): boolean {
    return !this.collecting && this.stack.length === 0;
  }

  /**
   * Does at most `budget` units of work (one unit ≈ one key read or moved; a step does
   * at least one leaf even when that passes a budget below LEAF_UNITS_MAX). Returns the
   * units done; `done` tells when the index is ready for `result`.
   */
  step(budget: number): number {
    let units = 0;
    while (units < budget && !this.done) {
      const did = this.collecting ? this.collect(budget - units) : this.sortSome(budget - units, units === 0);
      if (did === 0) break;
      units += did;
    }
    return units;
  }

  /** The index (once `done`): every distinct key, in order. */
  result(): OrderedKeys {
    if (!this.done) throw new Error("OrderedKeysBuilder.result called before the build was done");
    if (this.run.length > 0) {
      this.blocks.push(new Block(this.run));
      this.run = [];
    }
    return OrderedKeys.fromBlocks(this.blocks, this.count);
  }

  private collect(budget: number): number {
    const collected = this.collected;
    let prefix = this.prefix;
    let units = 0;
    while (units < budget && this.source < this.sources.length) {
      const next = this.sources[this.source]!.next();
      if (next.done === true) {
        this.source++;
        continue;
      }
      const key = next.value;
      collected.push(key);
      if (prefix === undefined) prefix = key;
      else if (!key.startsWith(prefix)) prefix = prefix.slice(0, commonPrefixLength(prefix, key));
      units++;
    }
    this.prefix = prefix;
    this.read += units;
    if (this.source >= this.sources.length) {
      this.collecting = false;
      if (collected.size > 0) this.push(collected, prefix!.length, Digit.Unit);
      this.collected = new ChunkedKeys();
    }
    // Finishing the phase counts as work too, so a step always moves on.
    return Math.max(units, 1);
  }

  private push(keys: ChunkedKeys, at: number, digit: Digit): void {
    this.stack.push({ keys, at, digit, chunk: 0, offset: 0, buckets: null });
  }

  /** Sorts one leaf or splits part of one bucket; returns 0 when a leaf is over `budget` and not `first`. */
  private sortSome(budget: number, first: boolean): number {
    const task = this.stack[this.stack.length - 1]!;
    const n = task.keys.size;
    if (n <= LEAF_KEYS_MAX) {
      const cost = n * LEAF_UNITS_PER_KEY;
      if (!first && cost > budget) return 0;
      this.stack.pop();
      // At most LEAF_KEYS_MAX < CHUNK_KEYS keys: one chunk.
      this.emitSorted(OrderedKeys.sortKeys(task.keys.chunks[0]!));
      return cost;
    }
    if (task.buckets === null) task.buckets = new Array<ChunkedKeys | undefined>(UNIT_BUCKETS);
    const buckets = task.buckets;
    const at = task.at;
    const digit = task.digit;
    const chunks = task.keys.chunks;
    let units = 0;
    while (units < budget && task.chunk < chunks.length) {
      const keys = chunks[task.chunk]!;
      const end = Math.min(keys.length, task.offset + (budget - units));
      for (let i = task.offset; i < end; i++) {
        const key = keys[i]!;
        let d: number;
        if (digit === Digit.Unit) {
          if (at >= key.length) d = 0;
          else {
            // Below U+D800 a unit is its own rank.
            const unit = key.charCodeAt(at);
            d = unit < 255 ? unit + 1 : WIDE_BUCKET;
          }
        } else {
          const rank = unitRank(key.charCodeAt(at));
          d = digit === Digit.High ? rank >> 8 : rank & 0xff;
        }
        let bucket = buckets[d];
        if (bucket === undefined) {
          bucket = new ChunkedKeys();
          buckets[d] = bucket;
        }
        // ChunkedKeys.push, inlined: this loop is most of a build's time.
        const bucketChunks = bucket.chunks;
        const last = bucketChunks[bucketChunks.length - 1];
        if (last === undefined || last.length === CHUNK_KEYS) bucketChunks.push([key]);
        else last.push(key);
        bucket.size++;
      }
      units += end - task.offset;
      task.offset = end;
      if (end === keys.length) {
        // Done with this chunk: let it go now rather than with the whole bucket.
        chunks[task.chunk] = [];
        task.chunk++;
        task.offset = 0;
      }
    }
    if (task.chunk < chunks.length) return units;
    // Split: the children replace the task, the smallest on top.
    this.stack.pop();
    for (let d = UNIT_BUCKETS - 1; d >= 0; d--) {
      const bucket = buckets[d];
      if (bucket === undefined) continue;
      if (digit === Digit.Unit) {
        if (d === 0) {
          // Keys that end at `at` and agree before it are one key (read more than once).
          const one = new ChunkedKeys();
          one.push(bucket.chunks[0]![0]!);
          this.push(one, at, Digit.Unit);
        } else if (d === WIDE_BUCKET) {
          this.push(bucket, at, Digit.High);
        } else {
          this.push(bucket, at + 1, Digit.Unit);
        }
      } else if (digit === Digit.High) {
        this.push(bucket, at, Digit.Low);
      } else {
        this.push(bucket, at + 1, Digit.Unit);
      }
    }
    return Math.max(units, 1);
  }

  /** Appends sorted keys (all above those before them) to the blocks, dropping repeats. */
  private emitSorted(keys: readonly string[]): void {
    let run = this.run;
    let last = this.last;
    for (const key of keys) {
      if (key === last) continue;
      last = key;
      run.push(key);
      this.count++;
      if (run.length === BUILD_BLOCK_FILL) {
        this.blocks.push(new Block(run));
        run = [];
      }
    }
    this.run = run;
    this.last = last;
  }
}

/**
 * The keys of a Maple database in ascending order of their UTF-8 bytes, beside the hash
 * shards that hold the entries: it answers "which keys lie in this range" for listing in
 * O(log n + page), while point reads stay on the hash maps.
 *
 * Today this string index serves the reserved keys (DeferredOrder's small index of lock
 * queues) and is what the builders produce; a built one is copied into KeyRuns
 * (key-runs.ts: sorted runs of key bytes), which holds a database's keys once built.
 *
 * A sorted array of blocks (a two-level B+tree): each block is a sorted array of at most
 * BLOCK_KEYS_MAX keys, blocks are in order and none is empty. A lookup is a binary search
 * over the blocks' first keys then one inside a block; an insert or remove shifts at most
 * one block (splitting a full one, merging a sparse one into its neighbour). New keys
 * wait unsorted in their block's pending list, each with its code at the block's prefix
 * when that is known at once (at most BLOCK_PENDING_MAX keys, measured best of
 * 32/64/96/160/192/224), and go in as one batch when the list is full or the block is
 * read or shrunk, placed by those codes (see Block.insertAll), so a page still sees
 * every key and merges at most that many per block it reads. A batch of new keys (a
 * fold's) is ordered by a coarse code first and routed by one walk over the blocks'
 * first keys (see insertBatch). Chosen over
 * a skip list and a per-key-node B+tree by test/bench/data-api.ts: it allocates nothing
 * per key (a key costs two array slots) and its inner loops are over dense arrays.
 *
 * Both levels are CodedRuns (coded-run.ts): beside each key a number that orders it by the
 * next code units after the prefix the run's keys share (key-codes.ts). Byte order and
 * its surrogate corner: key-order.ts. Builders: ordered-keys-builder.ts (unordered keys,
 * in steps) and streamed-keys-builder.ts (a snapshot's keys as they are read).
 */

import { ChunkOrder } from "./chunk-order.ts";
import {
  BLOCK_KEYS_MAX,
  BLOCK_KEYS_MERGE,
  BLOCK_PENDING_MAX,
  BUILD_BLOCK_FILL,
  CodedRun,
} from "./coded-run.ts";
import { Block, MergeScratch } from "./index-block.ts";
import { NO_CODE } from "./key-codes.ts";
import { commonPrefixLength, compareKeys, compareProbe, needsCodePointOrder } from "./key-order.ts";

/** Keys OrderedKeys.insertBatch sorts and routes at a time: their index in the chunk takes 10 bits. */
const SORT_CHUNK = 1024;
/** Scale a code to its top 31 bits (a narrow code has 45 bits, a wide one under 49): ChunkOrder's keys. */
const NARROW_CODE_SCALE = 2 ** -14;
const WIDE_CODE_SCALE = 2 ** -18;
/** Steps insertBatch walks over the first keys' codes from one key's block to the next's before it binary searches. */
const WALK_STEPS_MAX = 16;

export class OrderedKeys {
  private blocks: Block[] = [];
  /** Scratch for Block.insertAll. */
  private readonly scratch = new MergeScratch();
  /**
   * Scratch for insertBatch (~25 KB): each key's code at the firsts' prefix, and the
   * sort. Made by the first batch: an index that only ever takes single inserts (the
   * reserved keys') has none.
   */
  private chunkCodes: Float64Array | null = null;
  private chunkOrder: ChunkOrder | null = null;
  /** The first key of each block. */
  private firsts = new CodedRun([], true);
  private count = 0;
  /** What insertBatch's reads ahead summed (kept, so that they are not optimised away). */
  touched = 0;
  /**
   * Keys read or moved by scans and by the merges of pending keys they and removes do (a
   * scan's visited keys, a merged block's keys): what a page costs, for tests that check
   * it stays O(log n + page) however many keys the index holds.
   */
  work = 0;

  get size(): number {
    return this.count;
  }

  /** An index of `blocks` (in order, none empty) holding `count` keys in all; for OrderedKeysBuilder. */
  static fromBlocks(blocks: Block[], count: number): OrderedKeys {
    const index = new OrderedKeys();
    index.blocks = blocks;
    index.firsts = new CodedRun(
      blocks.map((block) => block.keys[0]!),
      true,
    );
    index.count = count;
    return index;
  }

  /** Builds from keys already sorted by compareKeys and unique, in O(n). */
  static fromSorted(keys: readonly string[]): OrderedKeys {
    const index = new OrderedKeys();
    for (let i = 0; i < keys.length; i += BUILD_BLOCK_FILL) {
      index.blocks.push(new Block(keys.slice(i, i + BUILD_BLOCK_FILL)));
    }
    index.firsts = new CodedRun(
      index.blocks.map((block) => block.keys[0]!),
      true,
    );
    index.count = keys.length;
    return index;
  }

  /** Sorts unique keys in place into byte order. */
  static sortKeys(keys: string[]): string[] {
    let slow = false;
    for (const key of keys) {
      if (needsCodePointOrder(key)) {
        slow = true;
        break;
      }
    }
    return slow ? keys.sort(compareKeys) : keys.sort();
  }

  /**
   * Adds a key that is not in the index. The key joins its block's pending keys, with
   * its code at the block's prefix (computed now, while its string is in cache); they
   * are merged into the block (in one pass, placed by their codes) when
   * BLOCK_PENDING_MAX have come or when the block is read or shrunk. Why: merging a batch
   * touches the block's arrays once instead of once per key (each touch a few cache
   * misses in a large index), and a reader pays at most BLOCK_PENDING_MAX keys' merge
   * per block it reads.
   */
  insert(key: string): void {
    const blocks = this.blocks;
    this.count++;
    if (blocks.length === 0) {
      blocks.push(new Block([key]));
      this.firsts.insertAt(0, key);
      return;
    }
    const slow = needsCodePointOrder(key);
    const b = this.blockFor(key, slow);
    this.insertRouted(key, slow, b, this.firsts.probeCode);
  }

  /**
   * Adds `keys[from, end)` (none in the index, distinct) as `insert` does, SORT_CHUNK at a
   * time: each key's code at the first keys' prefix is computed (every string read in one
   * loop, so their cache misses overlap), the chunk is sorted by those codes' top 31 bits
   * (ChunkOrder: a radix sort, ~10 ns a key), and the keys are routed by walking the first
   * keys' codes alongside: no binary search per key, and a block's keys join its pending
   * list one after another. A key whose code ties a first key's, that lies outside the
   * first keys' shared prefix or needs code point order, or that comes after the first
   * keys were recoded, is routed alone (`insert`). Measured against binary-search routing
   * (test/bench/data-api.ts, 100k shuffled keys, 1000 a turn): the folds 0.81-0.84x the
   * CPU per key, a fold in one piece ~0.72x; with a native sort of the codes instead
   * (~35 ns a key) it did not pay (order24).
   */
  insertBatch(keys: readonly string[], from: number, end: number): void {
    for (let start = from; start < end; start += SORT_CHUNK) {
      const stop = Math.min(end, start + SORT_CHUNK);
      if (this.blocks.length === 0) {
        for (let i = start; i < stop; i++) this.insert(keys[i]!);
        continue;
      }
      this.insertChunk(keys, start, stop);
    }
  }

  /** insertBatch of at most SORT_CHUNK keys into an index with a block. */
  private insertChunk(keys: readonly string[], start: number, stop: number): void {
    const firsts = this.firsts;
    const epoch = firsts.epoch;
    this.chunkCodes ??= new Float64Array(SORT_CHUNK);
    this.chunkOrder ??= new ChunkOrder(SORT_CHUNK);
    const codes = this.chunkCodes;
    const order = this.chunkOrder;
    // Sorted by the code's top 31 bits: codes that agree on those may come out of order
    // (and a code's low bits tell little about where a key goes): the walk below goes back
    // as well as forth, so that costs steps, not correctness.
    const scale = firsts.wide ? WIDE_CODE_SCALE : NARROW_CODE_SCALE;
    // Every key's string first, in a loop with no unpredictable branch and few
    // instructions: their cache misses overlap, where the loop below (long per key) would
    // meet them almost one by one. Measured (100k shuffled keys, 1000 a batch, OrderedKeys
    // alone): 0.57x the CPU per key without it, with binary searches routing the keys.
    let touched = 0;
    for (let i = start; i < stop; i++) touched += keys[i]!.charCodeAt(0) | 0;
    this.touched = touched;
    let n = 0;
    const sortKeys = order.keys;
    let sortIndexes = order.indexes;
    for (let i = start; i < stop; i++) {
      const key = keys[i]!;
      const code = needsCodePointOrder(key) ? NO_CODE : firsts.probeCodeOf(key);
      codes[i - start] = code;
      if (code < 0) continue;
      sortKeys[n] = Math.floor(code * scale);
      sortIndexes[n++] = i - start;
    }
    order.sort(n);
    sortIndexes = order.indexes;
    let c = -1;
    for (let s = 0; s < n; s++) {
      const j = sortIndexes[s]!;
      const key = keys[start + j]!;
      const code = codes[j]!;
      // A first key recoded (a merge changed the first or the last one): codes are stale.
      if (firsts.epoch !== epoch) {
        this.insert(key);
        continue;
      }
      // The last first key whose code is below the key's (blocks split meanwhile are in
      // the codes): a few steps from the last key's, else a binary search.
      const count = firsts.length;
      let steps = 0;
      while (c + 1 < count && firsts.codeAtIndex(c + 1) < code && steps++ < WALK_STEPS_MAX) c++;
      while (c >= 0 && firsts.codeAtIndex(c) >= code && steps++ < WALK_STEPS_MAX) c--;
      if (steps > WALK_STEPS_MAX) c = firsts.countBelowCode(code) - 1;
      if (c + 1 < count && firsts.codeAtIndex(c + 1) === code) {
        // A tie: the strings decide.
        this.insert(key);
        continue;
      }
      this.count++;
      this.insertRouted(key, false, Math.max(c, 0), code);
    }
    for (let i = start; i < stop; i++) if (codes[i - start]! < 0) this.insert(keys[i]!);
  }

  /** `insert` of a key routed to block `b` (`atFirsts`: its code at the firsts' prefix, or NO_CODE). */
  private insertRouted(key: string, slow: boolean, b: number, atFirsts: number): void {
    const blocks = this.blocks;
    const block = blocks[b]!;
    // Only block 0 takes keys below its first key (others' lie in the block before), and
    // such a key becomes the block's first at once, so firsts stays exact.
    if (b === 0 && compareProbe(key, slow, block.keys[0]!) < 0) {
      this.flushBlock(0);
      const first = blocks[0]!;
      first.insertAt(0, key);
      this.firsts.replaceAt(0, key);
      first.rangePrefix = -1;

      this.splitIfFull(0);
      return;
    }
    // The key's code at the block's prefix, now that its string is in cache (the merge
    // then reads only codes). The key must share that prefix, known without reading the
    // block's keys: from the two codes at the firsts' prefix (the key's, left by blockFor,
    // and the block's first key's) when the block's prefix is at most a code's reach
    // longer, or from the prefix the block's range shares; else NO_CODE (read at the merge).
    let code = NO_CODE;
    if (!slow) {
      const firsts = this.firsts;
      const longer = block.prefix - firsts.prefix;
      const shares =
        (atFirsts >= 0 &&
          firsts.sharesPrefixAt(b) &&
          (longer <= 0 || firsts.agreesAfterPrefix(b, atFirsts, longer))) ||
        (b + 1 < blocks.length && block.prefix <= this.rangePrefixOf(b));
      if (shares && block.fits(key)) code = block.codeOf(key);
    }
    const pending = block.pending;
    if (pending.length === 0) block.pendingEpoch = block.epoch;
    else if (block.pendingEpoch !== block.epoch) code = NO_CODE;
    pending.push(key, code);
    if (pending.length >= 2 * BLOCK_PENDING_MAX) this.flushBlock(b);
  }

  /**
   * Code units block `b`'s first key shares with block `b + 1`'s (which exists): a key
   * between them shares as many. Computed when first asked after either changed.
   */
  private rangePrefixOf(b: number): number {
    const block = this.blocks[b]!;
    if (block.rangePrefix < 0) {
      const firsts = this.firsts.keys;
      block.rangePrefix = commonPrefixLength(firsts[b]!, firsts[b + 1]!);
    }
    return block.rangePrefix;
  }

  /** Merges block `b`'s pending keys into it (splitting it when it grows too large). */
  private flushBlock(b: number): void {
    const block = this.blocks[b]!;
    const pending = block.pending;
    if (pending.length === 0) return;
    this.work += block.length + (pending.length >> 1);
    block.insertAll(pending, block.pendingEpoch, this.scratch);
    // Fresh lists, not these emptied: that would keep their capacity in every block.
    block.pending = [];
    this.splitIfFull(b);
  }

  private splitIfFull(b: number): void {
    const block = this.blocks[b]!;
    if (block.length <= BLOCK_KEYS_MAX) return;

    const tail = new Block([]);
    // The last block splits high: keys added in ascending order (ids, timestamps) then
    // leave full blocks behind them instead of half-full ones.
    const at = b === this.blocks.length - 1 ? BLOCK_KEYS_MAX - (BLOCK_KEYS_MAX >> 3) : block.length >> 1;
    block.splitInto(at, tail);
    this.blocks.splice(b + 1, 0, tail);
    this.firsts.insertAt(b + 1, tail.keys[0]!);
    block.rangePrefix = -1;
  }

  /**
   * Whether the index holds `key`: in its block's keys or among its pending keys, which
   * are not merged for this (a fold whose notes include removals asks this of every
   * noted key; merging each one's block first cost a block's merge per key). A pending
   * key's string is compared only when its code agrees with the key's (or is unknown).
   */
  has(key: string): boolean {
    if (this.blocks.length === 0) return false;
    const slow = needsCodePointOrder(key);
    const block = this.blocks[this.blockFor(key, slow)]!;
    if (block.keys[block.lowerBound(key, slow)] === key) return true;
    const pending = block.pending;
    if (pending.length === 0) return false;
    // lowerBound left the key's code at the block's prefix (NO_CODE when it does not
    // share it); pending codes are at that prefix if noted at the block's epoch.
    const code = block.pendingEpoch === block.epoch ? block.probeCode : NO_CODE;
    for (let j = 0; j < pending.length; j += 2) {
      const other = pending[j + 1] as number;
      if (code >= 0 && other >= 0 && other !== code) continue;
      if (pending[j] === key) return true;
    }
    return false;
  }

  /** Removes a key that is in the index; returns false (changing nothing) when it is not. */
  remove(key: string): boolean {
    const blocks = this.blocks;
    if (blocks.length === 0) return false;
    const slow = needsCodePointOrder(key);
    const b = this.mergedBlockFor(key, slow);
    const block = blocks[b]!;
    const at = block.lowerBound(key, slow);
    if (block.keys[at] !== key) return false;
    block.removeAt(at);
    this.count--;
    if (block.length === 0) {
      blocks.splice(b, 1);
      this.firsts.removeAt(b);

      if (b > 0) blocks[b - 1]!.rangePrefix = -1;
      return true;
    }
    if (at === 0) {
      this.firsts.replaceAt(b, block.keys[0]!);
      block.rangePrefix = -1;
      if (b > 0) blocks[b - 1]!.rangePrefix = -1;
    }
    if (block.length < BLOCK_KEYS_MERGE && b + 1 < blocks.length) {
      const next = blocks[b + 1]!;
      if (block.length + next.length + (next.pending.length >> 1) <= BLOCK_KEYS_MAX) {
        this.flushBlock(b + 1);
        block.absorb(next);
        blocks.splice(b + 1, 1);
        this.firsts.removeAt(b + 1);

        block.rangePrefix = -1;
      }
    }
    return true;
  }

  /**
   * Calls `visit` with keys in ascending order, starting at the first key >= `from`
   * (> `from` when `exclusive`), until it returns false or the keys run out.
   */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    const blocks = this.blocks;
    if (blocks.length === 0) return;
    const slow = needsCodePointOrder(from);
    let b = this.mergedBlockFor(from, slow);
    let i = blocks[b]!.lowerBound(from, slow);
    if (exclusive && blocks[b]!.keys[i] === from) i++;
    for (; b < blocks.length; b++, i = 0) {
      // A split while merging puts the block's tail right after it, already merged.
      this.flushBlock(b);
      const keys = blocks[b]!.keys;
      // Counted once per block (not per key): the keys visited.
      const start = i;
      for (; i < keys.length; i++) {
        if (!visit(keys[i]!)) {
          this.work += i + 1 - start;
          return;
        }
      }
      this.work += keys.length - start;
    }
  }

  /** Every key in order; for tests and consistency checks. */
  keys(): string[] {
    for (let b = 0; b < this.blocks.length; b++) this.flushBlock(b);
    return this.blocks.flatMap((block) => block.keys);
  }

  /** Like blockFor, after merging that block's pending keys (which may split it). */
  private mergedBlockFor(key: string, slow: boolean): number {
    const b = this.blockFor(key, slow);
    if (this.blocks[b]!.pending.length === 0) return b;
    this.flushBlock(b);
    return this.blockFor(key, slow);
  }

  /** The block whose range holds `key`: the last whose first key is <= key, or block 0. */
  private blockFor(key: string, slow: boolean): number {
    return Math.max(0, this.firsts.lowerBound(key, slow, true) - 1);
  }
}

/**
 * The keys of a Maple database in ascending order of their UTF-8 bytes, beside the hash
 * shards that hold the entries: it answers "which keys lie in this range" for listing in
 * O(log n + page), while point reads stay on the hash maps.
 *
 * A sorted array of blocks (a two-level B+tree): each block is a sorted array of at most
 * BLOCK_KEYS_MAX keys, blocks are in order and none is empty. A lookup is a binary search
 * over the blocks' first keys then one inside a block; an insert or remove shifts at most
 * one block (splitting a full one, merging a sparse one into its neighbour). New keys
 * wait unsorted in their block's pending list, each with its code at the block's prefix
 * when that is known at once (at most BLOCK_PENDING_MAX keys, measured best of
 * 32/64/96/160/192/224), and go in as one batch when the list is full or the block is
 * read or shrunk, placed by those codes (see CodedRun.insertAll), so a page still sees
 * every key and merges at most that many per block it reads. Chosen over
 * a skip list and a per-key-node B+tree by test/bench/data-api.ts: it allocates nothing
 * per key (a key costs two array slots) and its inner loops are over dense arrays.
 *
 * Both levels are CodedRuns: beside each key a number that orders it by the next code
 * units (five Latin-1 ones, or three of any kind) after the prefix the run's keys share. A binary search compares those numbers and
 * reads key strings only to break ties: comparing two strings means following pointers
 * to two scattered heap objects (cache misses, ~2/3 of an insert's time with plain
 * string comparison), while the numbers lie in one dense array.
 *
 * Order: JS compares strings by UTF-16 code units, which agrees with UTF-8 byte order
 * (= code point order) except between a surrogate (U+D800–DFFF, part of a character
 * above U+FFFF) and a unit in U+E000–FFFF. Every comparison here involves the probe key,
 * so the native comparison is exact whenever the probe has no unit at or above U+D800;
 * only such probes pay for the code point comparison.
 */
export const BLOCK_KEYS_MAX = 256;
const BLOCK_KEYS_MERGE = BLOCK_KEYS_MAX / 4;
/** Keys a fresh block gets when an index is built whole (room to grow before a split). */
const BUILD_BLOCK_FILL = (BLOCK_KEYS_MAX * 3) >> 2;
/**
 * Keys a block takes unsorted before they are merged into it (see OrderedKeys.insert).
 * A merged block has at most BLOCK_KEYS_MAX + this many keys, so (this being at most
 * BLOCK_KEYS_MAX) one split in half brings it back under BLOCK_KEYS_MAX.
 */
export const BLOCK_PENDING_MAX = 96;
/** CodedRun.insertAll packs an add's place and its index among the adds into one integer. */
const ADD_INDEX_BITS = 8;
const ADD_INDEX_SPAN = 1 << ADD_INDEX_BITS;
const ADD_INDEX_MASK = ADD_INDEX_SPAN - 1;

/** Code point order (= UTF-8 byte order) of two strings; lone surrogates sort consistently. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && x <= 0xdfff) x += 0x10000;
    if (y >= 0xd800 && y <= 0xdfff) y += 0x10000;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Whether native string comparison against `key` may disagree with byte order. */
function needsCodePointOrder(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0xd800) return true;
  return false;
}

/** Byte order of two distinct keys, natively when neither needs code point order. */
function compareAdds(a: string, b: string): number {
  if (needsCodePointOrder(a) || needsCodePointOrder(b)) return compareKeys(a, b);
  return a < b ? -1 : 1;
}

function compareProbe(probe: string, slow: boolean, key: string): number {
  if (slow) return compareKeys(probe, key);
  return probe < key ? -1 : probe > key ? 1 : 0;
}

/** A code unit's rank in code point order: surrogates (U+D800–DFFF) after U+E000–FFFF. */
function unitRank(unit: number): number {
  return unit < 0xd800 ? unit : unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/** Ranks + 1 fit in 17 bits; three of them in a double's 53. */
const CODE_RADIX = 0x10001;

/**
 * The code units of `key` at `offset`, +1 and +2 as one number: for keys that agree before
 * `offset`, a smaller number means a smaller key in compareKeys order, and equal numbers
 * say nothing (0 stands for "past the end", so a shorter key sorts first).
 */
function codeAt(key: string, offset: number): number {
  const n = key.length;
  const a = offset < n ? unitRank(key.charCodeAt(offset)) + 1 : 0;
  const b = offset + 1 < n ? unitRank(key.charCodeAt(offset + 1)) + 1 : 0;
  const c = offset + 2 < n ? unitRank(key.charCodeAt(offset + 2)) + 1 : 0;
  return (a * CODE_RADIX + b) * CODE_RADIX + c;
}

const EMPTY_CODES = new Float64Array(0);
/** Stands for "no code known" where a code is expected (codes are never negative). */
const NO_CODE = -1;
/** The most keys a block holds: while merging its pending keys, before it splits. */
const BLOCK_CODES_MAX = BLOCK_KEYS_MAX + BLOCK_PENDING_MAX;

/**
 * Room for `n` codes and a batch of pending keys more (so a merge rarely regrows it),
 * up to a block's most; past that (the runs of first keys) the next power of two.
 */
function capacityFor(n: number): number {
  if (n + BLOCK_PENDING_MAX <= BLOCK_CODES_MAX) return n + BLOCK_PENDING_MAX;
  if (n <= BLOCK_CODES_MAX) return BLOCK_CODES_MAX;
  let capacity = BLOCK_CODES_MAX;
  while (capacity < n) capacity *= 2;
  return capacity;
}

/** Units a narrow code holds: 5 × 9 bits. */
const NARROW_UNITS = 5;
/** Largest unit a key of a narrow run may have in its coded units. */
const NARROW_UNIT_MAX = 0xfe;

/**
 * Like codeAt, for runs whose keys have only units <= NARROW_UNIT_MAX there (Latin-1,
 * which most keys are): five units instead of three, so keys alike for longer still get
 * different codes. A probe's larger unit becomes 0x100, above any key's at that place.
 */
function narrowCodeAt(key: string, offset: number): number {
  const n = key.length;
  let code = 0;
  for (let i = offset; i < offset + NARROW_UNITS; i++) {
    code = code * 0x200 + (i < n ? Math.min(key.charCodeAt(i), NARROW_UNIT_MAX + 1) + 1 : 0);
  }
  return code;
}

/** Whether `key`'s units coded at `offset` fit a narrow code exactly. */
function fitsNarrow(key: string, offset: number): boolean {
  const end = Math.min(key.length, offset + NARROW_UNITS);
  for (let i = offset; i < end; i++) if (key.charCodeAt(i) > NARROW_UNIT_MAX) return false;
  return true;
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * Sorted, distinct keys and, at the same index, their code at `prefix`, the length of the
 * prefix all of them share (that of the first and the last key): narrowCodeAt while every
 * key fits it, else codeAt. Codes are recomputed only when the prefix length changes (a
 * new first or last key) or a key that does not fit the narrow code arrives.
 */
class CodedRun {
  keys: string[];
  /**
   * The codes, at the keys' indexes (capacity may exceed the key count). A typed array:
   * inserts and removes shift it with one memmove and allocate nothing.
   */
  private codes: Float64Array = EMPTY_CODES;
  /** Code units every key shares, at least: the codes start after them. */
  prefix = 0;
  /** Whether the codes are codeAt's (three units of any kind), not narrowCodeAt's. */
  wide = false;
  /** Bumped by every recode: codes computed for this run before then are stale. */
  epoch = 0;
  /**
   * The code lowerBound last computed for its probe (at this run's prefix), or NO_CODE when
   * it decided without one (the probe lies outside the shared prefix).
   */
  probeCode = NO_CODE;

  constructor(keys: string[]) {
    this.keys = keys;
    this.recode();
  }

  get length(): number {
    return this.keys.length;
  }

  private recode(): void {
    this.epoch++;
    const keys = this.keys;
    const n = keys.length;
    const prefix = n === 0 ? 0 : commonPrefixLength(keys[0]!, keys[n - 1]!);
    let wide = false;
    for (let i = 0; i < n && !wide; i++) wide = !fitsNarrow(keys[i]!, prefix);
    if (this.codes.length < n) this.codes = new Float64Array(capacityFor(n));
    const codes = this.codes;
    for (let i = 0; i < n; i++) codes[i] = wide ? codeAt(keys[i]!, prefix) : narrowCodeAt(keys[i]!, prefix);
    this.prefix = prefix;
    this.wide = wide;
  }

  codeOf(key: string): number {
    return this.wide ? codeAt(key, this.prefix) : narrowCodeAt(key, this.prefix);
  }

  /** A key about to be stored: false when it needs the wide code the run does not use yet. */
  fits(key: string): boolean {
    return this.wide || fitsNarrow(key, this.prefix);
  }

  /**
   * After the first or last key changed: whether the keys no longer share the prefix the
   * codes start after (then all is recoded). A prefix that grew (a removed end key) keeps
   * the codes: they stay exact at the shorter offset, and recoding would read every key
   * string (a cache miss each); lowerBound lengthens it once ties show it would help.
   */
  private recodedForEnds(): boolean {
    const keys = this.keys;
    const n = keys.length;
    if (n === 0) {
      this.prefix = 0;
      return false;
    }
    const prefix = this.prefix;
    if (prefix === 0) return false;
    // Both ends still share the first `prefix` units (so every key between them does)?
    const first = keys[0]!;
    const last = keys[n - 1]!;
    if (commonPrefixLength(first, last) >= prefix) return false;
    this.recode();
    return true;
  }

  /** First index whose key is >= `probe` (> `probe` when `above`). */
  lowerBound(probe: string, slow: boolean, above = false): number {
    const keys = this.keys;
    const n = keys.length;
    this.probeCode = NO_CODE;
    if (n === 0) return 0;
    const prefix = this.prefix;
    if (prefix > 0) {
      // Outside the shared prefix the probe is below or above every key.
      const first = keys[0]!;
      const m = Math.min(prefix, probe.length);
      for (let i = 0; i < m; i++) {
        const x = probe.charCodeAt(i);
        const y = first.charCodeAt(i);
        if (x !== y) return unitRank(x) < unitRank(y) ? 0 : n;
      }
      if (probe.length < prefix) return 0;
    }
    const code = this.codeOf(probe);
    this.probeCode = code;
    return this.boundByCode(probe, slow, code, above);
  }

  /**
   * lowerBound for a probe that shares this run's prefix and whose code at it is `code`
   * (computed earlier, at this run's current epoch): the probe's string is read only
   * when keys have the same code.
   */
  boundByCode(probe: string, slow: boolean, code: number, above = false): number {
    const keys = this.keys;
    const n = keys.length;
    const codes = this.codes;
    let low = 0;
    let high = n;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (codes[mid]! < code) low = mid + 1;
      else high = mid;
    }
    // Keys with the same code agree on those units: the strings decide among them.
    const bar = above ? 0 : 1;
    let tiesEnd = low;
    while (tiesEnd < n && codes[tiesEnd] === code) {
      if (compareProbe(probe, slow, keys[tiesEnd]!) < bar) return tiesEnd;
      tiesEnd++;
      // Many ties (keys alike well past the prefix): binary search the rest of them.
      if (tiesEnd - low === 4) return this.lowerBoundAmongTies(probe, slow, code, tiesEnd, bar);
    }
    return tiesEnd;
  }

  private lowerBoundAmongTies(probe: string, slow: boolean, code: number, from: number, bar: number): number {
    const keys = this.keys;
    // The codes may start before the prefix the keys now share (a split or a removal kept
    // them, see splitInto): recoded at the longer one, the ties may go away.
    if (commonPrefixLength(keys[0]!, keys[keys.length - 1]!) > this.prefix) {
      this.recode();
      return this.lowerBound(probe, slow, bar === 0);
    }
    const codes = this.codes;
    let high = from;
    let step = 1;
    // Gallop to the end of the tied keys, then binary search by string.
    while (high < keys.length && codes[high] === code) {
      high = Math.min(keys.length, high + step);
      step *= 2;
    }
    let end = high;
    let low = from;
    while (low < end) {
      const mid = (low + end) >> 1;
      if (codes[mid] === code) low = mid + 1;
      else end = mid;
    }
    end = low;
    low = from;
    while (low < end) {
      const mid = (low + end) >> 1;
      if (compareProbe(probe, slow, keys[mid]!) >= bar) low = mid + 1;
      else end = mid;
    }
    return low;
  }

  /**
   * Whether a probe whose code at this run's prefix is `code` (it shares the prefix)
   * agrees with the key at `at` on the `units` code units after the prefix, told from the
   * two codes alone; false also when the codes do not reach that far.
   */
  agreesAfterPrefix(at: number, code: number, units: number): boolean {
    if (units === 0) return true;
    const covered = this.wide ? 3 : NARROW_UNITS;
    if (units > covered) return false;
    // The codes' leading `units` digits: exact integer arithmetic (fmod is exact).
    const span = this.wide ? CODE_RADIX ** (3 - units) : 2 ** (9 * (NARROW_UNITS - units));
    const other = this.codes[at]!;
    return code - (code % span) === other - (other % span);
  }

  insertAt(at: number, key: string): void {
    // Shifted by hand: splice would allocate the (empty) array of removed keys each time.
    const keys = this.keys;
    const n = keys.length;
    keys.push(key);
    for (let i = n; i > at; i--) keys[i] = keys[i - 1]!;
    keys[at] = key;
    if ((at === 0 || at === n) && this.recodedForEnds()) return;
    if (!this.fits(key)) {
      this.recode();
      return;
    }
    if (this.codes.length <= n) {
      // The whole old array (no subarray view to allocate): it is shorter than the new one.
      const grown = new Float64Array(capacityFor(n + 1));
      grown.set(this.codes);
      this.codes = grown;
    }
    this.codes.copyWithin(at + 1, at, n);
    this.codes[at] = this.codeOf(key);
  }

  removeAt(at: number): void {
    const keys = this.keys;
    const n = keys.length - 1;
    for (let i = at; i < n; i++) keys[i] = keys[i + 1]!;
    keys.pop();
    if ((at === 0 || at === n) && this.recodedForEnds()) return;
    this.codes.copyWithin(at, at + 1, n + 1);
  }

  /** Puts `key` at `at` in place of the key there; the order must stay as it was. */
  replaceAt(at: number, key: string): void {
    this.keys[at] = key;
    if ((at === 0 || at === this.keys.length - 1) && this.recodedForEnds()) return;
    if (!this.fits(key)) this.recode();
    else this.codes[at] = this.codeOf(key);
  }

  /**
   * Moves the keys from `at` on into `tail` (an empty run). Both halves keep the codes
   * they have, at this run's prefix (each half's keys share at least that): no key string
   * is read, where recoding would visit every one (a cache miss each). A half whose keys
   * share a longer prefix is recoded at it only when ties show it would help (see
   * lowerBoundAmongTies).
   */
  splitInto(at: number, tail: CodedRun): void {
    const keys = this.keys;
    const n = keys.length;
    tail.keys = keys.slice(at);
    keys.length = at;
    tail.prefix = this.prefix;
    tail.wide = this.wide;
    const codes = this.codes;
    const tailCodes = new Float64Array(capacityFor(n - at));
    for (let i = at; i < n; i++) tailCodes[i - at] = codes[i]!;
    tail.codes = tailCodes;
  }

  /** Appends the keys of `next`, all greater than this run's. */
  absorb(next: CodedRun): void {
    for (const key of next.keys) this.keys.push(key);
    this.recode();
  }

  /**
   * Inserts the keys of `pairs` (distinct, none in the run, in any order) at once: one
   * pass that moves each key at most once, instead of one shift of the run per key. No
   * string sort of the adds: each add's place among the run's keys comes from a binary
   * search over the codes, and the adds are ordered by those places (a counting sort);
   * adds bound for the same place (rare in a full block) are ordered among themselves by
   * their codes, or strings when those tie.
   *
   * `pairs`: each key followed by its code at this run's prefix, computed at `addEpoch`
   * when the key was noted (its string then in cache), or NO_CODE when unknown: then, or
   * when the run was recoded since, the add's string is read here (the costly part of a
   * merge: by now it is rarely in any cache). At most BLOCK_PENDING_MAX keys.
   */
  insertAll(pairs: readonly PendingSlot[], addEpoch: number, scratch: MergeScratch): void {
    const k = pairs.length >> 1;
    const keys = this.keys;
    const n = keys.length;
    const places = scratch.places;
    const counts = scratch.countsFor(n);
    for (let j = 0; j < k; j++) {
      const key = pairs[2 * j] as string;
      const code = pairs[2 * j + 1] as number;
      // A known code is for a key that needs no code point order (see OrderedKeys.insert).
      const place =
        code >= 0 && addEpoch === this.epoch
          ? this.boundByCode(key, false, code)
          : this.lowerBound(key, needsCodePointOrder(key));
      places[j] = place;
      counts[place]!++;
    }
    // Ordered by place: a counting sort (places are at most n), no comparisons.
    for (let p = 0, sum = 0; p <= n; p++) {
      const count = counts[p]!;
      counts[p] = sum;
      sum += count;
    }
    const order = scratch.order;
    for (let j = 0; j < k; j++) {
      const place = places[j]!;
      order[counts[place]!++] = place * ADD_INDEX_SPAN + j;
    }
    counts.fill(0, 0, n + 1);
    // Adds bound for one place: ordered by their codes, or strings when those do not tell
    // (insertion sort; such runs are short).
    const known = addEpoch === this.epoch;
    for (let s = 1; s < k; s++) {
      const entry = order[s]!;
      const place = entry >> ADD_INDEX_BITS;
      if (place !== order[s - 1]! >> ADD_INDEX_BITS) continue;
      const key = pairs[2 * (entry & ADD_INDEX_MASK)] as string;
      const code = known ? (pairs[2 * (entry & ADD_INDEX_MASK) + 1] as number) : NO_CODE;
      let t = s;
      while (t > 0 && order[t - 1]! >> ADD_INDEX_BITS === place) {
        const otherIndex = order[t - 1]! & ADD_INDEX_MASK;
        const otherCode = known ? (pairs[2 * otherIndex + 1] as number) : NO_CODE;
        if (code >= 0 && otherCode >= 0 && code !== otherCode) {
          if (otherCode < code) break;
        } else if (compareAdds(pairs[2 * otherIndex] as string, key) < 0) break;
        order[t] = order[t - 1]!;
        t--;
      }
      order[t] = entry;
    }
    for (let j = 0; j < k; j++) keys.push(pairs[2 * j] as string);
    let codes = this.codes;
    if (codes.length < n + k) {
      codes = new Float64Array(capacityFor(n + k));
      codes.set(this.codes);
      this.codes = codes;
    }
    // From the end backwards: the old keys at or after the j-th add's place move up by j + 1.
    let from = n;
    let ends = false;
    for (let j = k - 1; j >= 0; j--) {
      const entry = order[j]!;
      const place = entry >> ADD_INDEX_BITS;
      for (let i = from - 1; i >= place; i--) {
        keys[i + j + 1] = keys[i]!;
        codes[i + j + 1] = codes[i]!;
      }
      keys[place + j] = pairs[2 * (entry & ADD_INDEX_MASK)] as string;
      if (place === 0 || place === n) ends = true;
      from = place;
    }
    if (ends && this.recodedForEnds()) return;
    const stillKnown = known && addEpoch === this.epoch;
    for (let j = 0; j < k; j++) {
      const entry = order[j]!;
      const index = entry & ADD_INDEX_MASK;
      const code = pairs[2 * index + 1] as number;
      if (stillKnown && code >= 0) {
        codes[(entry >> ADD_INDEX_BITS) + j] = code;
        continue;
      }
      const key = pairs[2 * index] as string;
      if (!this.fits(key)) {
        this.recode();
        return;
      }
      codes[(entry >> ADD_INDEX_BITS) + j] = this.codeOf(key);
    }
  }
}

/** Keys OrderedKeys.insertBatch routes before any of them joins its block. */
const ROUTE_CHUNK = 64;

/** A block's pending list holds a key, then its code (see Block.pending). */
type PendingSlot = string | number;

/** Reused arrays for CodedRun.insertAll. */
class MergeScratch {
  /** Each add's place among the run's keys, at the add's index. */
  readonly places = new Int32Array(BLOCK_PENDING_MAX);
  /** The adds ordered by place: place * ADD_INDEX_SPAN + the add's index. */
  readonly order = new Int32Array(BLOCK_PENDING_MAX);
  /** Per place: adds bound there, then where they start in `order`; all 0 between merges. */
  private counts = new Int32Array(BLOCK_CODES_MAX + 1);

  /** `counts` with room for places 0 to `n`, all 0. */
  countsFor(n: number): Int32Array {
    if (this.counts.length <= n) this.counts = new Int32Array(n + 1);
    return this.counts;
  }
}

/**
 * A block of the index: a run of sorted keys and the keys added to it but not merged yet,
 * with their codes at the block's prefix when known (see OrderedKeys.insert).
 */
class Block extends CodedRun {
  /**
   * Keys of this block's range not in `keys` yet, in arrival order, each followed by its
   * code at this block's prefix as of epoch `pendingEpoch`, or NO_CODE (one array, not
   * two: one object fewer to reach per key noted, each a cache miss in a large index).
   */
  pending: PendingSlot[] = [];
  pendingEpoch = 0;
  /**
   * Code units this block's first key shares with the next block's (so every key of the
   * block's range does), or -1 when not known yet (see OrderedKeys.rangePrefixOf).
   */
  rangePrefix = -1;
}

export class OrderedKeys {
  private blocks: Block[] = [];
  /** Scratch for Block.insertAll. */
  private readonly scratch = new MergeScratch();
  /** Scratch for insertBatch: each key's block, and its code at the firsts' prefix. */
  private readonly routes = new Int32Array(ROUTE_CHUNK);
  private readonly routeCodes = new Float64Array(ROUTE_CHUNK);
  /** Bumped whenever blocks are added, removed or get a new first key (routes change). */
  private shape = 0;
  /** The first key of each block. */
  private firsts = new CodedRun([]);
  private count = 0;
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
    index.firsts = new CodedRun(blocks.map((block) => block.keys[0]!));
    index.count = count;
    return index;
  }

  /** Builds from keys already sorted by compareKeys and unique, in O(n). */
  static fromSorted(keys: readonly string[]): OrderedKeys {
    const index = new OrderedKeys();
    for (let i = 0; i < keys.length; i += BUILD_BLOCK_FILL) {
      index.blocks.push(new Block(keys.slice(i, i + BUILD_BLOCK_FILL)));
    }
    index.firsts = new CodedRun(index.blocks.map((block) => block.keys[0]!));
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
   * Adds `keys[from, end)` (none in the index, distinct) as `insert` does, a chunk at a
   * time: first every key of the chunk is routed to its block (independent lookups, whose
   * cache misses on the keys' strings and the blocks' first keys' codes can overlap),
   * then each joins its block. A chunk whose blocks change meanwhile (a merge splits a
   * block; a key below every key becomes block 0's first) routes its remaining keys again.
   */
  insertBatch(keys: readonly string[], from: number, end: number): void {
    const routes = this.routes;
    const probes = this.routeCodes;
    for (let start = from; start < end; start += ROUTE_CHUNK) {
      const stop = Math.min(end, start + ROUTE_CHUNK);
      if (this.blocks.length === 0) {
        for (let i = start; i < stop; i++) this.insert(keys[i]!);
        continue;
      }
      const firstsEpoch = this.firsts.epoch;
      for (let i = start; i < stop; i++) {
        const key = keys[i]!;
        if (needsCodePointOrder(key)) {
          routes[i - start] = -1;
          continue;
        }
        routes[i - start] = this.blockFor(key, false);
        probes[i - start] = this.firsts.probeCode;
      }
      // A lookup that recoded the first keys' run made the earlier probes' codes stale.
      const shape = this.firsts.epoch === firstsEpoch ? this.shape : -1;
      for (let i = start; i < stop; i++) {
        const b = routes[i - start]!;
        if (b < 0 || this.shape !== shape || this.firsts.epoch !== firstsEpoch) this.insert(keys[i]!);
        else {
          this.count++;
          this.insertRouted(keys[i]!, false, b, probes[i - start]!);
        }
      }
    }
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
      this.shape++;
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
        (atFirsts >= 0 && (longer <= 0 || firsts.agreesAfterPrefix(b, atFirsts, longer))) ||
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
    this.shape++;
    const tail = new Block([]);
    // The last block splits high: keys added in ascending order (ids, timestamps) then
    // leave full blocks behind them instead of half-full ones.
    const at = b === this.blocks.length - 1 ? BLOCK_KEYS_MAX - (BLOCK_KEYS_MAX >> 3) : block.length >> 1;
    block.splitInto(at, tail);
    this.blocks.splice(b + 1, 0, tail);
    this.firsts.insertAt(b + 1, tail.keys[0]!);
    block.rangePrefix = -1;
  }

  /** Whether the index holds `key`. */
  has(key: string): boolean {
    if (this.blocks.length === 0) return false;
    const slow = needsCodePointOrder(key);
    const block = this.blocks[this.mergedBlockFor(key, slow)]!;
    return block.keys[block.lowerBound(key, slow)] === key;
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
      this.shape++;
      if (b > 0) blocks[b - 1]!.rangePrefix = -1;
      return true;
    }
    if (at === 0) {
      this.shape++;
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
        this.shape++;
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

/**
 * Builds an OrderedKeys from keys that arrive one at a time, in O(n) when they come in
 * order (a snapshot saved in key order, see MapleDB.save): each key is checked against
 * the one before it (one comparison) and appended to the block being filled. The first
 * key out of order (an older snapshot, saved in hash order) turns it into a collection of
 * every key so far, which `unordered` hands to an OrderedKeysBuilder to sort in steps.
 * Duplicates are the caller's to refuse (MapleDB.load does: a snapshot holds a key once).
 */
export class StreamedKeysBuilder {
  private blocks: Block[] = [];
  private run: string[] = [];
  private last: string | undefined;
  private count = 0;
  private collected: string[] | null = null;

  /** Whether every key so far came in order. */
  get inOrder(): boolean {
    return this.collected === null;
  }

  add(key: string): void {
    const collected = this.collected;
    if (collected !== null) {
      collected.push(key);
      return;
    }
    const last = this.last;
    // One pass over the units the two share (exact byte order, surrogates included).
    if (last !== undefined && compareKeys(last, key) >= 0) {
      this.collectAll().push(key);
      return;
    }
    this.last = key;
    this.count++;
    this.run.push(key);
    if (this.run.length === BUILD_BLOCK_FILL) {
      this.blocks.push(new Block(this.run));
      this.run = [];
    }
  }

  private collectAll(): string[] {
    const all: string[] = [];
    for (const block of this.blocks) for (const key of block.keys) all.push(key);
    for (const key of this.run) all.push(key);
    this.blocks = [];
    this.run = [];
    this.collected = all;
    return all;
  }

  /** The index of the keys added, all in order (`inOrder`). */
  result(): OrderedKeys {
    if (this.collected !== null) throw new Error("StreamedKeysBuilder.result called on keys out of order");
    if (this.run.length > 0) {
      this.blocks.push(new Block(this.run));
      this.run = [];
    }
    return OrderedKeys.fromBlocks(this.blocks, this.count);
  }

  /** A builder that sorts the keys added (not all in order), in steps. */
  unordered(): OrderedKeysBuilder {
    const keys = this.collected ?? this.collectAll();
    this.collected = [];
    return new OrderedKeysBuilder([keys[Symbol.iterator]()]);
  }
}

/**
 * CodedRun: sorted, distinct keys with a code beside each (see key-codes.ts), searched by
 * the codes, and the size limits of the index's blocks (both levels of the index are
 * CodedRuns). Comparing two strings means following pointers to two scattered heap
 * objects (cache misses, ~2/3 of an insert's time with plain string comparison), while
 * the codes lie in one dense array.
 */
import { CODE_RADIX, codeAt, fitsNarrow, NARROW_UNITS, NO_CODE, narrowCodeAt } from "./key-codes.ts";
import { commonPrefixLength, compareProbe, unitRank } from "./key-order.ts";

export const BLOCK_KEYS_MAX = 256;
export const BLOCK_KEYS_MERGE = BLOCK_KEYS_MAX / 4;
/** Keys a fresh block gets when an index is built whole (room to grow before a split). */
export const BUILD_BLOCK_FILL = (BLOCK_KEYS_MAX * 3) >> 2;
/**
 * Keys a block takes unsorted before they are merged into it (see OrderedKeys.insert).
 * A merged block has at most BLOCK_KEYS_MAX + this many keys, so (this being at most
 * BLOCK_KEYS_MAX) one split in half brings it back under BLOCK_KEYS_MAX.
 */
export const BLOCK_PENDING_MAX = 96;

const EMPTY_CODES = new Float64Array(0);
/** CodedRun.probeCodeOf's answers for a probe outside the run's shared prefix. */
export const BELOW_RUN = -2;
export const ABOVE_RUN = -3;
/**
 * The code of a key that sorts after the shared prefix's keys, in a run that allows such
 * keys (see CodedRun, "Outliers"): above every code (narrow ones are below 2^45, wide
 * ones below 2^49). A key before them has code 0.
 */
export const ABOVE_CODE = 2 ** 50;
/** Outliers a run that allows them holds past a fraction (this shift) of its keys before it recodes. */
const OUTLIERS_SHIFT = 3;
const OUTLIERS_SLACK = 2;
/** A run that allows outliers takes its prefix from the keys this shift of its length in from each end. */
const CORE_EDGE_SHIFT = 4;
/** The most keys a block holds: while merging its pending keys, before it splits. */
export const BLOCK_CODES_MAX = BLOCK_KEYS_MAX + BLOCK_PENDING_MAX;

/**
 * Room for `n` codes and a batch of pending keys more (so a merge rarely regrows it),
 * up to a block's most; past that (the runs of first keys) the next power of two.
 */
export function capacityFor(n: number): number {
  if (n + BLOCK_PENDING_MAX <= BLOCK_CODES_MAX) return n + BLOCK_PENDING_MAX;
  if (n <= BLOCK_CODES_MAX) return BLOCK_CODES_MAX;
  let capacity = BLOCK_CODES_MAX;
  while (capacity < n) capacity *= 2;
  return capacity;
}

/**
 * Sorted, distinct keys and, at the same index, their code at `prefix`, the length of the
 * prefix all of them share (that of the first and the last key): narrowCodeAt while every
 * key fits it, else codeAt. Codes are recomputed only when the prefix length changes (a
 * new first or last key) or a key that does not fit the narrow code arrives.
 *
 * Outliers (`allowsOutliers`, the index's first keys): a few keys at either end that do
 * not share the prefix most keys share (a lone "probe" before a million "user/..." keys)
 * would otherwise shorten the prefix to what all share, so every other key's code ties
 * with its neighbours' and each search compares strings. Such a run takes its prefix
 * from the keys 1/16 of its length in from each end, and codes a key that does not share
 * it 0 (it sorts before the keys that do) or ABOVE_CODE (after them): still an order-
 * keeping code, so a changed first or last key never forces a recode; outliers past 1/8
 * of the keys do (then the prefix is shorter), and ties among many keys that share a
 * longer prefix do, as in any run (see lowerBoundAmongTies).
 */
export class CodedRun {
  keys: string[];
  /**
   * The codes, at the keys' indexes (capacity may exceed the key count). A typed array:
   * inserts and removes shift it with one memmove and allocate nothing.
   */
  protected codes: Float64Array = EMPTY_CODES;
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
  /** Whether keys outside the shared prefix may be held (see the class comment). */
  readonly allowsOutliers: boolean;
  /** A key whose first `prefix` units are the prefix (with outliers allowed; else keys[0] is). */
  private prefixKey = "";
  /** Keys coded 0 or ABOVE_CODE (with outliers allowed). */
  private outliers = 0;

  constructor(keys: string[], allowsOutliers = false) {
    this.keys = keys;
    this.allowsOutliers = allowsOutliers;
    this.recode();
  }

  get length(): number {
    return this.keys.length;
  }

  protected recode(): void {
    if (this.allowsOutliers) {
      this.recodeAllowingOutliers();
      return;
    }
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

  private recodeAllowingOutliers(): void {
    this.epoch++;
    const keys = this.keys;
    const n = keys.length;
    const edge = n >> CORE_EDGE_SHIFT;
    this.prefix = n === 0 ? 0 : commonPrefixLength(keys[edge]!, keys[n - 1 - edge]!);
    this.prefixKey = n === 0 ? "" : keys[edge]!;
    let wide = false;
    for (let i = 0; i < n && !wide; i++)
      wide = this.sideOfPrefix(keys[i]!) === 0 && !fitsNarrow(keys[i]!, this.prefix);
    this.wide = wide;
    if (this.codes.length < n) this.codes = new Float64Array(capacityFor(n));
    const codes = this.codes;
    let outliers = 0;
    for (let i = 0; i < n; i++) {
      const code = this.storedCodeOf(keys[i]!);
      codes[i] = code;
      if (isOutlierCode(code)) outliers++;
    }
    this.outliers = outliers;
  }

  /** The code a key gets in this run: codeOf, or with outliers allowed 0 / ABOVE_CODE for one outside the prefix. */
  private storedCodeOf(key: string): number {
    if (!this.allowsOutliers) return this.codeOf(key);
    const side = this.sideOfPrefix(key);
    if (side !== 0) return side < 0 ? 0 : ABOVE_CODE;
    return this.codeOf(key);
  }

  /**
   * Whether the key at `at` shares this run's prefix (so its code says what units follow
   * it); false for an outlier, or possibly for the key that is the prefix alone.
   */
  sharesPrefixAt(at: number): boolean {
    return !this.allowsOutliers || !isOutlierCode(this.codes[at]!);
  }

  /** How many keys have a code below `code` (a binary search over the codes alone). */
  countBelowCode(code: number): number {
    const codes = this.codes;
    let low = 0;
    let high = this.keys.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (codes[mid]! < code) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** The code of the key at `at` (at this run's current epoch). */
  codeAtIndex(at: number): number {
    return this.codes[at]!;
  }

  /**
   * The code of `probe` at this run's prefix when the probe shares that prefix; else
   * BELOW_RUN (it sorts before every key) or ABOVE_RUN (after every key). Empty runs: ABOVE_RUN.
   */
  probeCodeOf(probe: string): number {
    if (this.keys.length === 0) return ABOVE_RUN;
    const side = this.sideOfPrefix(probe);
    if (side !== 0) return side < 0 ? BELOW_RUN : ABOVE_RUN;
    return this.codeOf(probe);
  }

  /**
   * Where `probe` lies against the prefix this run's keys share (the run is not empty):
   * -1 before every key, 1 after every key, 0 when it shares the prefix.
   */
  private sideOfPrefix(probe: string): number {
    const prefix = this.prefix;
    if (prefix === 0) return 0;
    const first = this.allowsOutliers ? this.prefixKey : this.keys[0]!;
    const m = Math.min(prefix, probe.length);
    for (let i = 0; i < m; i++) {
      const x = probe.charCodeAt(i);
      const y = first.charCodeAt(i);
      if (x !== y) return unitRank(x) < unitRank(y) ? -1 : 1;
    }
    return probe.length < prefix ? -1 : 0;
  }

  codeOf(key: string): number {
    return this.wide ? codeAt(key, this.prefix) : narrowCodeAt(key, this.prefix);
  }

  /** A key about to be stored: false when it needs the wide code the run does not use yet. */
  fits(key: string): boolean {
    return this.wide || fitsNarrow(key, this.prefix) || (this.allowsOutliers && this.sideOfPrefix(key) !== 0);
  }

  /**
   * After the first or last key changed: whether the keys no longer share the prefix the
   * codes start after (then all is recoded). A prefix that grew (a removed end key) keeps
   * the codes: they stay exact at the shorter offset, and recoding would read every key
   * string (a cache miss each); lowerBound lengthens it once ties show it would help.
   */
  protected recodedForEnds(): boolean {
    const keys = this.keys;
    const n = keys.length;
    if (n === 0) {
      this.prefix = 0;
      return false;
    }
    const prefix = this.prefix;
    if (prefix === 0 || this.allowsOutliers) return false;
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
    // Outside the shared prefix the probe is below or above every key (but the outliers,
    // when allowed: coded alike, the strings decide among them).
    const side = this.sideOfPrefix(probe);
    if (side !== 0) {
      if (!this.allowsOutliers || this.outliers === 0) return side < 0 ? 0 : n;
      return this.boundByCode(probe, slow, side < 0 ? 0 : ABOVE_CODE, above);
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
    // (Recoding lengthens the prefix to exactly what this compares, so this recurses once.)
    const edge = this.allowsOutliers ? keys.length >> CORE_EDGE_SHIFT : 0;
    if (commonPrefixLength(keys[edge]!, keys[keys.length - 1 - edge]!) > this.prefix) {
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
    if (!this.sharesPrefixAt(at)) return false;
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
    const code = this.storedCodeOf(key);
    this.codes[at] = code;
    if (
      this.allowsOutliers &&
      isOutlierCode(code) &&
      ++this.outliers > ((n + 1) >> OUTLIERS_SHIFT) + OUTLIERS_SLACK
    )
      this.recode();
  }

  removeAt(at: number): void {
    const keys = this.keys;
    const n = keys.length - 1;
    for (let i = at; i < n; i++) keys[i] = keys[i + 1]!;
    keys.pop();
    if (this.allowsOutliers && isOutlierCode(this.codes[at]!)) this.outliers--;
    if ((at === 0 || at === n) && this.recodedForEnds()) return;
    this.codes.copyWithin(at, at + 1, n + 1);
  }

  /** Puts `key` at `at` in place of the key there; the order must stay as it was. */
  replaceAt(at: number, key: string): void {
    this.keys[at] = key;
    if (this.allowsOutliers && isOutlierCode(this.codes[at]!)) this.outliers--;
    if ((at === 0 || at === this.keys.length - 1) && this.recodedForEnds()) return;
    if (!this.fits(key)) {
      this.recode();
      return;
    }
    const code = this.storedCodeOf(key);
    this.codes[at] = code;
    if (
      this.allowsOutliers &&
      isOutlierCode(code) &&
      ++this.outliers > (this.keys.length >> OUTLIERS_SHIFT) + OUTLIERS_SLACK
    ) {
      this.recode();
    }
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
}

/** Whether a stored code is an outlier's (or, for 0, possibly the prefix alone's): see CodedRun. */
function isOutlierCode(code: number): boolean {
  return code === 0 || code === ABOVE_CODE;
}

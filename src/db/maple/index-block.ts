/**
 * A block of the ordered index: a CodedRun and the keys added to it but not merged yet
 * (pending, each with its code when known), and the fold that merges them in one pass,
 * placed by their codes.
 */
import { BLOCK_CODES_MAX, BLOCK_PENDING_MAX, CodedRun, capacityFor } from "./coded-run.ts";
import { NO_CODE } from "./key-codes.ts";
import { compareAdds, needsCodePointOrder } from "./key-order.ts";

/** Block.insertAll packs an add's place and its index among the adds into one integer. */
const ADD_INDEX_BITS = 8;
const ADD_INDEX_SPAN = 1 << ADD_INDEX_BITS;
const ADD_INDEX_MASK = ADD_INDEX_SPAN - 1;

/** A block's pending list holds a key, then its code (see Block.pending). */
export type PendingSlot = string | number;

/** Reused arrays for Block.insertAll. */
export class MergeScratch {
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
export class Block extends CodedRun {
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

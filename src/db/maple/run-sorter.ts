/**
 * New keys of the settled index (key-runs.ts) gathered as bytes (Batch) and sorted into a
 * run (RunSorter); split out of key-runs.ts at stop 32 (no change).
 */
import { BYTES_PER_UNIT_MAX, compareBytes, encodeKey } from "./key-bytes.ts";
import { CHUNK_KEYS, CODE_BYTES, INDEX_SPAN, SMALL_GROUP, SORT_PAD, SORT_PAD_FROM } from "./key-run.ts";

/** Sorts a batch's keys by their bytes: numbers of CODE_BYTES bytes sorted natively, ties deeper. */
export class RunSorter {
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
export class Batch {
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

/**
 * RecordTable: keys and values out of JS objects. Each key's record (a header, the key's
 * UTF-8 bytes, the value's bytes) lives in large chunks of an arena; per shard an
 * open-addressing table (linear probing, backward-shift deletion) maps a key's hash to its
 * record's reference. No Map, no string and no object is kept per key.
 *
 * A record, 8-byte aligned, in 32-bit words:
 *   w0 hash   w1 key length | flags << 24 ... see below   w2 value length   w3 version
 *   w4/w5 createRevision (lo, hi)   w6/w7 modRevision (lo, hi)   then key bytes, value bytes.
 * Key length takes the low 24 bits of w1, flags the high 8. A record's size is fixed by its
 * lengths; a value of the same padded size is overwritten in place, any other is moved to a
 * new record and the old one marked dead. A chunk whose dead bytes pass half of it is
 * compacted: its live records move to the chunk being filled, and it is reused.
 */

/** Bytes per chunk (a power of two). */
const CHUNK_SHIFT = 20;
const CHUNK_BYTES = 1 << CHUNK_SHIFT;
/** References count 8-byte units: 2^32 × 8 B of arena at most. */
const UNIT_SHIFT = 3;
const UNITS_PER_CHUNK_SHIFT = CHUNK_SHIFT - UNIT_SHIFT;
const UNIT_MASK = (1 << UNITS_PER_CHUNK_SHIFT) - 1;
export const HEADER_BYTES = 32;
const HEADER_WORDS = HEADER_BYTES >> 2;
const KEY_LEN_MASK = 0xffffff;
export const FLAG_DEAD = 1 << 24;
/** The value is hidden (`expire`); `has` still sees the key. */
export const FLAG_EXPIRED = 1 << 25;
/** The key has deadlines kept outside the record. */
export const FLAG_TIMED = 1 << 26;
/** The largest record stored in a chunk; bigger values would not fit. */
export const MAX_RECORD_BYTES = CHUNK_BYTES >> 2;

const SHARD_BITS = 6;
const SHARDS = 1 << SHARD_BITS;
const MIN_SLOTS = 16;

/** Hash and UTF-8 length of the last key hashed (set by hashKey). */
let lastUtf8Length = 0;

const encoder = new TextEncoder();

/**
 * FNV-1a over the key's UTF-8 bytes (as TextEncoder encodes it: a lone surrogate as
 * U+FFFD), with a final mix; sets lastUtf8Length. The same bytes always hash the same, so
 * a record's key can be rehashed from its bytes.
 */
export function hashKey(key: string): number {
  let h = 0x811c9dc5 | 0;
  const n = key.length;
  let i = 0;
  for (; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) break;
    h = Math.imul(h ^ c, 0x01000193);
  }
  if (i === n) {
    lastUtf8Length = n;
    return finish(h);
  }
  let length = i;
  for (; i < n; i++) {
    let c = key.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      length++;
    } else if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 63)), 0x01000193);
      length += 2;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? key.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          h = Math.imul(h ^ (0xf0 | (cp >> 18)), 0x01000193);
          h = Math.imul(h ^ (0x80 | ((cp >> 12) & 63)), 0x01000193);
          h = Math.imul(h ^ (0x80 | ((cp >> 6) & 63)), 0x01000193);
          h = Math.imul(h ^ (0x80 | (cp & 63)), 0x01000193);
          length += 4;
          i++;
          continue;
        }
        c = 0xfffd;
      }
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 63)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 63)), 0x01000193);
      length += 3;
    }
  }
  lastUtf8Length = length;
  return finish(h);
}

function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return finish(h);
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

class TableShard {
  refs: Uint32Array = new Uint32Array(MIN_SLOTS);
  hashes: Int32Array = new Int32Array(MIN_SLOTS);
  mask = MIN_SLOTS - 1;
  size = 0;
}

/** Where a record is: set by find. */
export class RecordTable {
  private u8: Uint8Array[] = [];
  private i32: Int32Array[] = [];
  /** Dead bytes per chunk. */
  private dead: number[] = [];
  /** Chunks emptied by compaction, ready for reuse. */
  private spare: number[] = [];
  private current = -1;
  /** Where each retired chunk's records end. */
  private ends: number[] = [];
  /** A chunk over half dead, to compact once the write under way is done; -1 when none. */
  private candidate = -1;
  /** Next free byte in the current chunk. */
  private top = CHUNK_BYTES;
  private readonly shards: TableShard[] = [];
  /** Keys held. */
  size = 0;
  /** Set by find: the found record's chunk and word/byte offset. */
  chunk = 0;
  offset = 0;

  constructor() {
    for (let i = 0; i < SHARDS; i++) this.shards.push(new TableShard());
  }

  /** The record of `key`, or 0; sets chunk and offset when found. Uses lastUtf8Length. */
  find(key: string, hash: number): number {
    const shard = this.shards[hash >>> (32 - SHARD_BITS)]!;
    const { refs, hashes, mask } = shard;
    const length = lastUtf8Length;
    let slot = hash & mask;
    for (;;) {
      const ref = refs[slot]!;
      if (ref === 0) return 0;
      if (hashes[slot] === hash) {
        const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
        const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
        const words = this.i32[chunk]!;
        if (
          (words[(offset >> 2) + 1]! & KEY_LEN_MASK) === length &&
          this.sameKey(key, chunk, offset, length)
        ) {
          this.chunk = chunk;
          this.offset = offset;
          return ref;
        }
      }
      slot = (slot + 1) & mask;
    }
  }

  private sameKey(key: string, chunk: number, offset: number, length: number): boolean {
    const bytes = this.u8[chunk]!;
    const at = offset + HEADER_BYTES;
    if (length === key.length) {
      for (let i = 0; i < length; i++) if (bytes[at + i] !== key.charCodeAt(i)) return false;
      return true;
    }
    const encoded = encoder.encode(key);
    for (let i = 0; i < length; i++) if (bytes[at + i] !== encoded[i]) return false;
    return true;
  }

  /** Reserves a record of `bytes` bytes (header included); returns its reference. */
  private allocate(bytes: number): number {
    const size = (bytes + 7) & ~7;
    if (this.top + size > CHUNK_BYTES) this.newChunk();
    const offset = this.top;
    this.top += size;
    return ((this.current << UNITS_PER_CHUNK_SHIFT) | (offset >> UNIT_SHIFT)) >>> 0;
  }

  private newChunk(): void {
    const previous = this.current;
    if (previous >= 0) {
      this.ends[previous] = this.top;
      this.dead[previous]! += CHUNK_BYTES - this.top;
      if (this.dead[previous]! * 2 >= CHUNK_BYTES) this.candidate = previous;
    }
    const reused = this.spare.pop();
    if (reused !== undefined) {
      this.current = reused;
      this.dead[reused] = 0;
    } else {
      const buffer = new ArrayBuffer(CHUNK_BYTES);
      this.u8.push(new Uint8Array(buffer));
      this.i32.push(new Int32Array(buffer));
      this.dead.push(0);
      this.ends.push(0);
      this.current = this.u8.length - 1;
    }
    this.top = 0;
  }

  static recordBytes(keyLength: number, valueLength: number): number {
    return (HEADER_BYTES + keyLength + valueLength + 7) & ~7;
  }

  /**
   * Writes `value` as `key`'s value with the given revisions; returns whether the key was
   * new. Version: 1 for a new key, else the old one + 1.
   */
  set(key: string, value: Uint8Array, revision: number): boolean {
    const hash = hashKey(key);
    const keyLength = lastUtf8Length;
    const found = this.find(key, hash);
    const valueLength = value.length;
    if (found !== 0) {
      const chunk = this.chunk;
      const offset = this.offset;
      const words = this.i32[chunk]!;
      const w = offset >> 2;
      const oldLength = words[w + 2]!;
      if (RecordTable.recordBytes(keyLength, oldLength) === RecordTable.recordBytes(keyLength, valueLength)) {
        this.u8[chunk]!.set(value, offset + HEADER_BYTES + keyLength);
        words[w + 1] = keyLength;
        words[w + 2] = valueLength;
        words[w + 3] = words[w + 3]! + 1;
        words[w + 6] = revision >>> 0;
        words[w + 7] = (revision / 0x100000000) | 0;
        return false;
      }
      this.pendingKey = key;
      const version = words[w + 3]! + 1;
      const createLo = words[w + 4]!;
      const createHi = words[w + 5]!;
      const ref = this.writeRecord(
        hash,
        keyLength,
        value,
        version,
        createLo,
        createHi,
        revision,
        chunk,
        offset,
      );
      this.replaceRef(hash, found, ref);
      this.kill(chunk, offset, keyLength, oldLength);
      this.settle();
      return false;
    }
    this.pendingKey = key;
    const ref = this.writeRecord(
      hash,
      keyLength,
      value,
      1,
      revision >>> 0,
      (revision / 0x100000000) | 0,
      revision,
      -1,
      0,
    );
    this.insertRef(hash, ref);
    this.settle();
    return true;
  }

  private writeRecord(
    hash: number,
    keyLength: number,
    value: Uint8Array,
    version: number,
    createLo: number,
    createHi: number,
    revision: number,
    keyChunk: number,
    keyOffset: number,
  ): number {
    const valueLength = value.length;
    // The key's bytes come from the old record when there is one (allocate may move
    // nothing: compaction only runs on chunks other than the current one, and the old
    // record's chunk is read before any compaction it could trigger)
    const ref = this.allocate(HEADER_BYTES + keyLength + valueLength);
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const words = this.i32[chunk]!;
    const bytes = this.u8[chunk]!;
    const w = offset >> 2;
    words[w] = hash;
    words[w + 1] = keyLength;
    words[w + 2] = valueLength;
    words[w + 3] = version;
    words[w + 4] = createLo;
    words[w + 5] = createHi;
    words[w + 6] = revision >>> 0;
    words[w + 7] = (revision / 0x100000000) | 0;
    if (keyChunk >= 0) {
      bytes.set(
        this.u8[keyChunk]!.subarray(keyOffset + HEADER_BYTES, keyOffset + HEADER_BYTES + keyLength),
        offset + HEADER_BYTES,
      );
    } else {
      this.writeKey(bytes, offset + HEADER_BYTES, keyLength);
    }
    bytes.set(value, offset + HEADER_BYTES + keyLength);
    return ref;
  }

  private pendingKey = "";

  private writeKey(bytes: Uint8Array, at: number, keyLength: number): void {
    const key = this.pendingKey;
    if (keyLength === key.length) {
      for (let i = 0; i < keyLength; i++) bytes[at + i] = key.charCodeAt(i);
    } else {
      encoder.encodeInto(key, bytes.subarray(at, at + keyLength));
    }
  }

  private insertRef(hash: number, ref: number): void {
    const shard = this.shards[hash >>> (32 - SHARD_BITS)]!;
    if ((shard.size + 1) * 4 > (shard.mask + 1) * 3) this.grow(shard);
    const { refs, hashes, mask } = shard;
    let slot = hash & mask;
    while (refs[slot] !== 0) slot = (slot + 1) & mask;
    refs[slot] = ref;
    hashes[slot] = hash;
    shard.size++;
    this.size++;
  }

  private grow(shard: TableShard): void {
    const oldRefs = shard.refs;
    const oldHashes = shard.hashes;
    const slots = oldRefs.length * 2;
    const refs = new Uint32Array(slots);
    const hashes = new Int32Array(slots);
    const mask = slots - 1;
    for (let i = 0; i < oldRefs.length; i++) {
      const ref = oldRefs[i]!;
      if (ref === 0) continue;
      const hash = oldHashes[i]!;
      let slot = hash & mask;
      while (refs[slot] !== 0) slot = (slot + 1) & mask;
      refs[slot] = ref;
      hashes[slot] = hash;
    }
    shard.refs = refs;
    shard.hashes = hashes;
    shard.mask = mask;
  }

  private replaceRef(hash: number, oldRef: number, ref: number): void {
    const shard = this.shards[hash >>> (32 - SHARD_BITS)]!;
    const { refs, mask } = shard;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    refs[slot] = ref;
  }

  private removeRef(hash: number, oldRef: number): void {
    const shard = this.shards[hash >>> (32 - SHARD_BITS)]!;
    const { refs, hashes, mask } = shard;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    // Backward-shift deletion: later entries of the run move into the hole when their
    // home slot allows it.
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const ref = refs[next]!;
      if (ref === 0) break;
      const home = hashes[next]! & mask;
      // Move when the hole lies cyclically within [home, next).
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        refs[hole] = ref;
        hashes[hole] = hashes[next]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    refs[hole] = 0;
    hashes[hole] = 0;
    shard.size--;
    this.size--;
  }

  private kill(chunk: number, offset: number, keyLength: number, valueLength: number): void {
    const words = this.i32[chunk]!;
    words[(offset >> 2) + 1] = words[(offset >> 2) + 1]! | FLAG_DEAD;
    this.dead[chunk]! += RecordTable.recordBytes(keyLength, valueLength);
    if (chunk !== this.current && this.dead[chunk]! * 2 >= CHUNK_BYTES) this.candidate = chunk;
  }

  /** Compacts the chunks found over half dead (after a write, never during one). */
  private settle(): void {
    while (this.candidate >= 0) {
      const chunk = this.candidate;
      this.candidate = -1;
      if (chunk !== this.current) this.compact(chunk);
    }
  }

  private compact(chunk: number): void {
    const words = this.i32[chunk]!;
    const bytes = this.u8[chunk]!;
    let offset = 0;
    const end = this.ends[chunk]!;
    while (offset < end) {
      const w = offset >> 2;
      const keyWord = words[w + 1]!;
      const valueLength = words[w + 2]!;
      const keyLength = keyWord & KEY_LEN_MASK;
      const size = RecordTable.recordBytes(keyLength, valueLength);
      if ((keyWord & FLAG_DEAD) === 0) {
        const oldRef = ((chunk << UNITS_PER_CHUNK_SHIFT) | (offset >> UNIT_SHIFT)) >>> 0;
        const ref = this.allocate(size);
        const to = (ref & UNIT_MASK) << UNIT_SHIFT;
        this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!.set(bytes.subarray(offset, offset + size), to);
        this.replaceRef(words[w]!, oldRef, ref);
      }
      offset += size;
    }
    bytes.fill(0);
    this.dead[chunk] = 0;
    this.spare.push(chunk);
  }

  /** The value of `key` (a fresh copy), or undefined. */
  get(key: string): Uint8Array | undefined {
    const ref = this.find(key, hashKey(key));
    if (ref === 0) return undefined;
    const words = this.i32[this.chunk]!;
    const w = this.offset >> 2;
    const at = this.offset + HEADER_BYTES + (words[w + 1]! & KEY_LEN_MASK);
    return this.u8[this.chunk]!.slice(at, at + words[w + 2]!);
  }

  /** Copies `key`'s value into `frame` at `at`; returns its length, or -1 when absent. */
  getInto(key: string, frame: Uint8Array, at: number): number {
    const ref = this.find(key, hashKey(key));
    if (ref === 0) return -1;
    const words = this.i32[this.chunk]!;
    const w = this.offset >> 2;
    const from = this.offset + HEADER_BYTES + (words[w + 1]! & KEY_LEN_MASK);
    const length = words[w + 2]!;
    const bytes = this.u8[this.chunk]!;
    if (length <= 256) {
      for (let i = 0; i < length; i++) frame[at + i] = bytes[from + i]!;
    } else {
      frame.set(bytes.subarray(from, from + length), at);
    }
    return length;
  }

  delete(key: string): boolean {
    const hash = hashKey(key);
    const ref = this.find(key, hash);
    if (ref === 0) return false;
    const words = this.i32[this.chunk]!;
    const w = this.offset >> 2;
    const chunk = this.chunk;
    const offset = this.offset;
    this.removeRef(hash, ref);
    this.kill(chunk, offset, words[w + 1]! & KEY_LEN_MASK, words[w + 2]!);
    this.settle();
    return true;
  }

  arenaBytes(): number {
    return this.u8.length * CHUNK_BYTES;
  }

  tableBytes(): number {
    let bytes = 0;
    for (const shard of this.shards) bytes += shard.refs.byteLength + shard.hashes.byteLength;
    return bytes;
  }

  /** Sets the key to write (writeKey reads it); set() does it. */
  setPendingKey(key: string): void {
    this.pendingKey = key;
  }

  static hashOf(bytes: Uint8Array, start: number, end: number): number {
    return hashBytes(bytes, start, end);
  }
}

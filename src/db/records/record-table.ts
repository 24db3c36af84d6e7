/**
 * RecordTable: keys and values out of JS objects. Each key's record (a header, the key's
 * bytes, the value's bytes) lives in large chunks of an arena; per shard an
 * open-addressing table (linear probing, backward-shift deletion) maps a key's hash to its
 * record's reference. No Map, no string and no object is kept per key.
 *
 * A record, 8-byte aligned, in 32-bit words: w0 the key's hash; w1 the key's byte length
 * (low 24 bits) and flags (high 8); w2 the value's length (low 16 bits: a value in a
 * record is at most EXTERNAL_VALUE_BYTES) and the version's high 16 bits; w3 the version's
 * low 32 bits (a version is exact to 2^48); w4/w5 the createRevision and w6/w7 the
 * modRevision (low and high 32 bits); then the key's bytes and the value's. Keys are stored as WTF-8 (UTF-8 that also encodes a lone surrogate as
 * three bytes), so every JS string, well formed or not, has bytes of its own.
 *
 * A record whose new contents take the same padded size is rewritten in place (not while
 * frozen for a save); any other write makes a new record and marks the old one dead. A
 * chunk whose dead bytes reach half of it is compacted after the write: its live records
 * move to the chunk being filled and it is reused. A record too large for a chunk gets a
 * buffer of its own, released once dead.
 *
 * Callers pass references (`ref`) from `find`; a reference is valid until the next write.
 */
import { DkvError } from "../../errors.ts";

const CHUNK_SHIFT = 20;
const CHUNK_BYTES = 1 << CHUNK_SHIFT;
/** References count 8-byte units: 2^32 × 8 B of arena at most; 0 is never a record. */
const UNIT_SHIFT = 3;
const UNITS_PER_CHUNK_SHIFT = CHUNK_SHIFT - UNIT_SHIFT;
const UNIT_MASK = (1 << UNITS_PER_CHUNK_SHIFT) - 1;
export const HEADER_BYTES = 32;
const KEY_LEN_MASK = 0xffffff;
/** The value's length in w2 (its high 16 bits are the version's high bits). */
const VALUE_LEN_MASK = 0xffff;
/** Largest value a record holds; RecordDB keeps larger ones outside (FLAG_EXTERNAL). */
export const RECORD_VALUE_BYTES_MAX = VALUE_LEN_MASK;
/** Versions are exact below this (48 bits: w3 and w2's high half). */
export const VERSION_MAX = 2 ** 48 - 1;
/** References are 32 bits: chunk indexes stop here (32 GiB of 1 MiB chunks). */
const CHUNKS_MAX = 2 ** (32 - (CHUNK_SHIFT - UNIT_SHIFT));
/** Emptied chunks kept for reuse; more are given back (a burst's peak is not kept). */
const SPARE_CHUNKS_MAX = 2;
/** Flags (in w1's high byte). */
const FLAG_DEAD = 1 << 24;
/** The key has deadlines, kept outside the record (see RecordDB). */
export const FLAG_TIMED = 1 << 25;
/** The value is kept outside the record (a large one, see RecordDB). */
export const FLAG_EXTERNAL = 1 << 26;
/** The key is not well-formed UTF-16 (a lone surrogate): decoded by hand. */
const FLAG_LONE_SURROGATE = 1 << 27;
const FLAGS_KEPT = FLAG_TIMED | FLAG_EXTERNAL;
/** A record bigger than this gets a buffer of its own. */
const MAX_CHUNKED_RECORD_BYTES = CHUNK_BYTES >> 2;
/** Keys longer than this (in bytes) are refused (`--max-key-bytes` has this bound). */
export const MAX_KEY_BYTES = KEY_LEN_MASK;

const SHARD_BITS = 6;
const SHARDS = 1 << SHARD_BITS;
const MIN_SLOTS = 16;
const EMPTY_U8 = new Uint8Array(0);
const EMPTY_I32 = new Int32Array(0);

const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** The WTF-8 length of the key last hashed (set by hashKey) and whether it has a lone surrogate. */
const last = { keyBytes: 0, loneSurrogate: false };

/**
 * The hash's start, random per process: hashes are never stored outside it (a snapshot
 * holds none), and keys chosen to collide in one process do not in another.
 */
const SEED = (0x811c9dc5 ^ Math.floor(Math.random() * 0x100000000)) | 0;

/** FNV-1a (seeded) over the key's WTF-8 bytes, then a mix; sets last.keyBytes and last.loneSurrogate. */
export function hashKey(key: string): number {
  let h = SEED;
  const n = key.length;
  let i = 0;
  for (; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) break;
    h = Math.imul(h ^ c, 0x01000193);
  }
  last.loneSurrogate = false;
  if (i === n) {
    last.keyBytes = n;
    return finish(h);
  }
  let length = i;
  for (; i < n; i++) {
    const c = key.charCodeAt(i);
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
        last.loneSurrogate = true;
      }
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 63)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 63)), 0x01000193);
      length += 3;
    }
  }
  last.keyBytes = length;
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

/** Writes `key` as WTF-8 at `at` (its length known: last.keyBytes of hashKey). */
function writeKeyBytes(key: string, bytes: Uint8Array, at: number, keyBytes: number): void {
  const n = key.length;
  if (keyBytes === n) {
    for (let i = 0; i < n; i++) bytes[at + i] = key.charCodeAt(i);
    return;
  }
  let p = at;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x80) {
      bytes[p++] = c;
    } else if (c < 0x800) {
      bytes[p++] = 0xc0 | (c >> 6);
      bytes[p++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = key.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          bytes[p++] = 0xf0 | (cp >> 18);
          bytes[p++] = 0x80 | ((cp >> 12) & 63);
          bytes[p++] = 0x80 | ((cp >> 6) & 63);
          bytes[p++] = 0x80 | (cp & 63);
          i++;
          continue;
        }
      }
      bytes[p++] = 0xe0 | (c >> 12);
      bytes[p++] = 0x80 | ((c >> 6) & 63);
      bytes[p++] = 0x80 | (c & 63);
    }
  }
}

/** Decodes WTF-8 written by writeKeyBytes (lone surrogates included). */
function decodeWtf8(bytes: Uint8Array, start: number, end: number): string {
  const units: number[] = [];
  let i = start;
  while (i < end) {
    const b = bytes[i]!;
    if (b < 0x80) {
      units.push(b);
      i++;
    } else if (b < 0xe0) {
      units.push(((b & 31) << 6) | (bytes[i + 1]! & 63));
      i += 2;
    } else if (b < 0xf0) {
      units.push(((b & 15) << 12) | ((bytes[i + 1]! & 63) << 6) | (bytes[i + 2]! & 63));
      i += 3;
    } else {
      const cp =
        ((b & 7) << 18) | ((bytes[i + 1]! & 63) << 12) | ((bytes[i + 2]! & 63) << 6) | (bytes[i + 3]! & 63);
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 1023));
      i += 4;
    }
  }
  let out = "";
  for (let k = 0; k < units.length; k += 4096) out += String.fromCharCode(...units.slice(k, k + 4096));
  return out;
}

/** A string's length in UTF-8 (WTF-8 for lone surrogates: 3 bytes each, as writeKeyBytes). */
function utf8Length(key: string): number {
  let length = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x80) length += 1;
    else if (c < 0x800) length += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < key.length) {
      const d = key.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        length += 4;
        i++;
      } else length += 3;
    } else length += 3;
  }
  return length;
}

function recordBytes(keyBytes: number, valueBytes: number): number {
  return (HEADER_BYTES + keyBytes + valueBytes + 7) & ~7;
}

export class RecordTable {
  private u8: Uint8Array[] = [];
  private i32: Int32Array[] = [];
  /** Dead bytes per chunk. */
  private dead: number[] = [];
  /** Where each chunk's records end (the current chunk's: `top`). */
  private ends: number[] = [];
  /** Whether a chunk is a record's own buffer. */
  private own: boolean[] = [];
  /** Emptied chunks, ready for reuse; indexes of released own buffers. */
  private spare: number[] = [];
  private freeIndexes: number[] = [];
  private current = -1;
  private top = CHUNK_BYTES;
  /** Chunks over half dead, compacted once the write under way is done. */
  private candidates: number[] = [];
  /** While frozen (a save reads the records): nothing is rewritten in place, moved or reused. */
  private frozen = false;
  /**
   * Per shard (the hash's top SHARD_BITS bits): slots holding references (0: empty) and
   * the hashes beside them; a mask and a count of keys. Plain arrays, built in a loop
   * without a call per shard: start-up must not be enough work for the JIT (see
   * test/footprint/start-jit.test.ts).
   */
  private readonly refs: Uint32Array[] = [];
  private readonly hashes: Int32Array[] = [];
  private readonly masks = new Int32Array(SHARDS);
  private readonly sizes = new Int32Array(SHARDS);
  /** Keys held. */
  size = 0;
  /** Set by `find`: the key's hash and byte length, for an `insert` that follows. */
  hash = 0;
  keyBytes = 0;
  private loneSurrogate = false;
  /** Scratch for comparing a non-ASCII key. */
  private scratch = new Uint8Array(256);

  constructor() {
    for (let i = 0; i < SHARDS; i++) {
      this.refs.push(new Uint32Array(MIN_SLOTS));
      this.hashes.push(new Int32Array(MIN_SLOTS));
      this.masks[i] = MIN_SLOTS - 1;
    }
    // Chunk index 0 is never used, so no record's reference is 0 (an empty slot).
    this.u8.push(EMPTY_U8);
    this.i32.push(EMPTY_I32);
    this.dead.push(0);
    this.ends.push(0);
    this.own.push(false);
  }

  /** The record of `key`, or 0. Sets `hash` and `keyBytes`. */
  find(key: string): number {
    const hash = hashKey(key);
    const length = last.keyBytes;
    this.hash = hash;
    this.keyBytes = length;
    this.loneSurrogate = last.loneSurrogate;
    const shard = hash >>> (32 - SHARD_BITS);
    const refs = this.refs[shard]!;
    const hashes = this.hashes[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    for (;;) {
      const ref = refs[slot]!;
      if (ref === 0) return 0;
      if (hashes[slot] === hash) {
        const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
        const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
        if (
          (this.i32[chunk]![(offset >> 2) + 1]! & KEY_LEN_MASK) === length &&
          this.sameKey(key, chunk, offset, length)
        ) {
          return ref;
        }
      }
      slot = (slot + 1) & mask;
    }
  }

  /**
   * Throws unless a write of `key` can be stored: its UTF-8 length within MAX_KEY_BYTES
   * (TOO_LARGE) and room for a record in the arena (RESOURCE_EXHAUSTED, at 32 GiB). Called
   * before a write changes anything, so a refused write leaves no trace.
   */
  checkRoom(key: string): void {
    if (key.length * 3 > MAX_KEY_BYTES && utf8Length(key) > MAX_KEY_BYTES) {
      throw new DkvError(
        "TOO_LARGE",
        `a key of ${utf8Length(key)} bytes is over the engine's ${MAX_KEY_BYTES}; use a shorter key`,
      );
    }
    if (this.u8.length >= CHUNKS_MAX - 1 && this.freeIndexes.length === 0 && this.spare.length === 0) {
      throw new DkvError(
        "RESOURCE_EXHAUSTED",
        `this store's arena is full (${CHUNKS_MAX} chunks of ${CHUNK_BYTES >> 20} MiB); delete keys or spread them over more shards`,
      );
    }
  }

  private sameKey(key: string, chunk: number, offset: number, length: number): boolean {
    const bytes = this.u8[chunk]!;
    const at = offset + HEADER_BYTES;
    if (length === key.length) {
      for (let i = 0; i < length; i++) if (bytes[at + i] !== key.charCodeAt(i)) return false;
      return true;
    }
    if (this.scratch.length < length) this.scratch = new Uint8Array(length * 2);
    const scratch = this.scratch;
    writeKeyBytes(key, scratch, 0, length);
    for (let i = 0; i < length; i++) if (bytes[at + i] !== scratch[i]) return false;
    return true;
  }

  flags(ref: number): number {
    return this.word(ref, 1) & FLAGS_KEPT;
  }

  version(ref: number): number {
    return (this.word(ref, 3) >>> 0) + (this.word(ref, 2) >>> 16) * 0x100000000;
  }

  createRevision(ref: number): number {
    return (this.word(ref, 4) >>> 0) + this.word(ref, 5) * 0x100000000;
  }

  modRevision(ref: number): number {
    return (this.word(ref, 6) >>> 0) + this.word(ref, 7) * 0x100000000;
  }

  valueLength(ref: number): number {
    return this.word(ref, 2) & VALUE_LEN_MASK;
  }

  private word(ref: number, index: number): number {
    return this.i32[ref >>> UNITS_PER_CHUNK_SHIFT]![(((ref & UNIT_MASK) << UNIT_SHIFT) >> 2) + index]!;
  }

  /** The value's bytes, a fresh copy. */
  copyValue(ref: number): Uint8Array {
    const from = this.valueStart(ref);
    return this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!.slice(from, from + this.valueLength(ref));
  }

  /** Where the value of record `ref` starts in its chunk's bytes (after the header and the key). */
  private valueStart(ref: number): number {
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    return (
      offset + HEADER_BYTES + (this.i32[ref >>> UNITS_PER_CHUNK_SHIFT]![(offset >> 2) + 1]! & KEY_LEN_MASK)
    );
  }

  /**
   * The entry of the record `ref` of `key` (without flags: no deadline, value in the
   * record), its value a fresh copy: one read of the header for the server's get.
   */
  entry(
    key: string,
    ref: number,
  ): { key: string; value: Uint8Array; version: number; createRevision: number; modRevision: number } {
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const words = this.i32[chunk]!;
    const w = offset >> 2;
    const from = offset + HEADER_BYTES + (words[w + 1]! & KEY_LEN_MASK);
    return {
      key,
      value: this.u8[chunk]!.slice(from, from + (words[w + 2]! & VALUE_LEN_MASK)),
      version: (words[w + 3]! >>> 0) + (words[w + 2]! >>> 16) * 0x100000000,
      createRevision: (words[w + 4]! >>> 0) + words[w + 5]! * 0x100000000,
      modRevision: (words[w + 6]! >>> 0) + words[w + 7]! * 0x100000000,
    };
  }

  /**
   * The common overwrite, in place: when the record `ref` has no flags, `value` takes the
   * record's padded size and nothing is frozen, writes it with the next version and
   * `modRevision`, and returns true; else changes nothing and returns false.
   */
  overwrite(ref: number, value: Uint8Array, modRevision: number): boolean {
    if (this.frozen) return false;
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const words = this.i32[chunk]!;
    const w = offset >> 2;
    const keyWord = words[w + 1]!;
    if ((keyWord & FLAGS_KEPT) !== 0) return false;
    const keyBytes = keyWord & KEY_LEN_MASK;
    const length = value.length;
    const lengthWord = words[w + 2]!;
    if (recordBytes(keyBytes, lengthWord & VALUE_LEN_MASK) !== recordBytes(keyBytes, length)) return false;
    // The version's low word wraps into its high half (w2's top 16 bits) only every 2^32 writes.
    const low = words[w + 3]! >>> 0;
    if (low === 0xffffffff) return false;
    this.u8[chunk]!.set(value, offset + HEADER_BYTES + keyBytes);
    words[w + 2] = (lengthWord & ~VALUE_LEN_MASK) | length;
    words[w + 3] = low + 1;
    words[w + 6] = modRevision >>> 0;
    words[w + 7] = Math.floor(modRevision / 0x100000000);
    return true;
  }

  /** A view of the value's bytes: valid until the next write. */
  valueView(ref: number): Uint8Array {
    const from = this.valueStart(ref);
    return this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!.subarray(from, from + this.valueLength(ref));
  }

  /** Copies the value into `frame` at `at`; returns its length. */
  copyValueInto(ref: number, frame: Uint8Array, at: number): number {
    const from = this.valueStart(ref);
    const length = this.valueLength(ref);
    const bytes = this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!;
    if (length <= 256) {
      for (let i = 0; i < length; i++) frame[at + i] = bytes[from + i]!;
    } else {
      frame.set(bytes.subarray(from, from + length), at);
    }
    return length;
  }

  valueEquals(ref: number, expected: Uint8Array): boolean {
    const length = this.valueLength(ref);
    if (length !== expected.length) return false;
    const from = this.valueStart(ref);
    const bytes = this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!;
    for (let i = 0; i < length; i++) if (bytes[from + i] !== expected[i]) return false;
    return true;
  }

  /** The record's key as a string. */
  key(ref: number): string {
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const keyWord = this.i32[chunk]![(offset >> 2) + 1]!;
    const length = keyWord & KEY_LEN_MASK;
    const start = offset + HEADER_BYTES;
    const bytes = this.u8[chunk]!;
    if ((keyWord & FLAG_LONE_SURROGATE) !== 0) return decodeWtf8(bytes, start, start + length);
    return utf8Decoder.decode(bytes.subarray(start, start + length));
  }

  /**
   * Adds a record for the key `find` just missed (its hash and length still set): no
   * other call may come between them.
   */
  insert(
    key: string,
    value: Uint8Array,
    version: number,
    createRevision: number,
    modRevision: number,
    flags: number,
  ): void {
    const hash = this.hash;
    const keyBytes = this.keyBytes;
    if (keyBytes > MAX_KEY_BYTES)
      throw new RangeError(`record: a key of ${keyBytes} bytes: checkRoom was skipped`);
    const stored = (flags & FLAG_EXTERNAL) !== 0 ? EMPTY_U8 : value;
    const ref = this.allocate(recordBytes(keyBytes, stored.length));
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const bytes = this.u8[chunk]!;
    const surrogate = this.loneSurrogate ? FLAG_LONE_SURROGATE : 0;
    this.writeHeader(
      chunk,
      offset,
      hash,
      keyBytes | flags | surrogate,
      stored.length,
      version,
      createRevision,
      modRevision,
    );
    writeKeyBytes(key, bytes, offset + HEADER_BYTES, keyBytes);
    if (stored.length > 0) bytes.set(stored, offset + HEADER_BYTES + keyBytes);
    this.insertRef(hash, ref);
    this.settle();
  }

  /**
   * Rewrites the record `ref` (of the key `find` just found): new value (undefined keeps
   * the bytes it holds), revisions and flags (FLAG_TIMED, FLAG_EXTERNAL).
   */
  update(
    ref: number,
    value: Uint8Array | undefined,
    version: number,
    createRevision: number,
    modRevision: number,
    flags: number,
  ): void {
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const words = this.i32[chunk]!;
    const w = offset >> 2;
    const hash = words[w]!;
    const keyWord = words[w + 1]!;
    const keyBytes = keyWord & KEY_LEN_MASK;
    const oldLength = words[w + 2]! & VALUE_LEN_MASK;
    const surrogate = keyWord & FLAG_LONE_SURROGATE;
    const stored = value === undefined ? undefined : (flags & FLAG_EXTERNAL) !== 0 ? EMPTY_U8 : value;
    const newLength = stored === undefined ? oldLength : stored.length;
    if (!this.frozen && recordBytes(keyBytes, oldLength) === recordBytes(keyBytes, newLength)) {
      this.writeHeader(
        chunk,
        offset,
        hash,
        keyBytes | flags | surrogate,
        newLength,
        version,
        createRevision,
        modRevision,
      );
      if (stored !== undefined && stored.length > 0)
        this.u8[chunk]!.set(stored, offset + HEADER_BYTES + keyBytes);
      return;
    }
    const moved = this.allocate(recordBytes(keyBytes, newLength));
    const to = moved >>> UNITS_PER_CHUNK_SHIFT;
    const toOffset = (moved & UNIT_MASK) << UNIT_SHIFT;
    const from = this.u8[chunk]!;
    const bytes = this.u8[to]!;
    // The old record stays where it is until the write is done (allocate compacts nothing).
    const copyBytes = stored === undefined ? keyBytes + oldLength : keyBytes;
    bytes.set(
      from.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + copyBytes),
      toOffset + HEADER_BYTES,
    );
    if (stored !== undefined && stored.length > 0) bytes.set(stored, toOffset + HEADER_BYTES + keyBytes);
    this.writeHeader(
      to,
      toOffset,
      hash,
      keyBytes | flags | surrogate,
      newLength,
      version,
      createRevision,
      modRevision,
    );
    this.replaceRef(hash, ref, moved);
    this.kill(chunk, offset, keyBytes, oldLength);
    this.settle();
  }

  /** Removes the record `ref`. */
  remove(ref: number): void {
    const chunk = ref >>> UNITS_PER_CHUNK_SHIFT;
    const offset = (ref & UNIT_MASK) << UNIT_SHIFT;
    const words = this.i32[chunk]!;
    const w = offset >> 2;
    this.removeRef(words[w]!, ref);
    this.kill(chunk, offset, words[w + 1]! & KEY_LEN_MASK, words[w + 2]! & VALUE_LEN_MASK);
    this.settle();
  }

  private writeHeader(
    chunk: number,
    offset: number,
    hash: number,
    keyWord: number,
    valueLength: number,
    version: number,
    createRevision: number,
    modRevision: number,
  ): void {
    if (valueLength > VALUE_LEN_MASK || !(version >= 0 && version <= VERSION_MAX)) {
      throw new RangeError(`record: value length ${valueLength} or version ${version} out of its bounds`);
    }
    const words = this.i32[chunk]!;
    const w = offset >> 2;
    words[w] = hash;
    words[w + 1] = keyWord;
    words[w + 2] = valueLength | (Math.floor(version / 0x100000000) << 16);
    words[w + 3] = version >>> 0;
    words[w + 4] = createRevision >>> 0;
    words[w + 5] = Math.floor(createRevision / 0x100000000);
    words[w + 6] = modRevision >>> 0;
    words[w + 7] = Math.floor(modRevision / 0x100000000);
  }

  /** Reserves `size` bytes (a multiple of 8); returns the reference. Moves no record. */
  private allocate(size: number): number {
    if (size > MAX_CHUNKED_RECORD_BYTES) return this.allocateOwn(size);
    if (this.top + size > CHUNK_BYTES) this.newChunk();
    const offset = this.top;
    this.top += size;
    return ((this.current << UNITS_PER_CHUNK_SHIFT) | (offset >> UNIT_SHIFT)) >>> 0;
  }

  private allocateOwn(size: number): number {
    const buffer = new ArrayBuffer(size);
    const index = this.freeIndexes.pop() ?? this.u8.length;
    if (index >= CHUNKS_MAX)
      throw new RangeError(`record chunk ${index} past ${CHUNKS_MAX}: checkRoom was skipped`);
    this.u8[index] = new Uint8Array(buffer);
    this.i32[index] = new Int32Array(buffer);
    this.dead[index] = 0;
    this.ends[index] = size;
    this.own[index] = true;
    return (index << UNITS_PER_CHUNK_SHIFT) >>> 0;
  }

  private newChunk(): void {
    const previous = this.current;
    if (previous >= 0) {
      this.ends[previous] = this.top;
      this.dead[previous]! += CHUNK_BYTES - this.top;
      if (this.dead[previous]! * 2 >= CHUNK_BYTES) this.candidates.push(previous);
    }
    const reused = this.spare.pop();
    if (reused !== undefined) {
      this.current = reused;
      this.dead[reused] = 0;
    } else {
      const buffer = new ArrayBuffer(CHUNK_BYTES);
      const index = this.freeIndexes.pop() ?? this.u8.length;
      if (index >= CHUNKS_MAX)
        throw new RangeError(`record chunk ${index} past ${CHUNKS_MAX}: checkRoom was skipped`);
      this.u8[index] = new Uint8Array(buffer);
      this.i32[index] = new Int32Array(buffer);
      this.dead[index] = 0;
      this.own[index] = false;
      this.current = index;
    }
    this.ends[this.current] = 0;
    this.top = 0;
  }

  private kill(chunk: number, offset: number, keyBytes: number, valueLength: number): void {
    const words = this.i32[chunk]!;
    words[(offset >> 2) + 1] = words[(offset >> 2) + 1]! | FLAG_DEAD;
    const size = recordBytes(keyBytes, valueLength);
    const before = this.dead[chunk]!;
    this.dead[chunk] = before + size;
    if (chunk === this.current) return;
    const capacity = this.own[chunk] ? this.ends[chunk]! : CHUNK_BYTES;
    // Once: when the dead bytes first reach half.
    if (before * 2 < capacity && (before + size) * 2 >= capacity) this.candidates.push(chunk);
  }

  /** Compacts the chunks found over half dead (after a write, never during one; not while frozen). */
  private settle(): void {
    if (this.frozen) return;
    // Compaction moves live records into the chunk being filled and may open another: not
    // when the arena is at its bound with nothing to reuse (a rare edge; the chunks stay).
    if (this.u8.length >= CHUNKS_MAX - 1 && this.freeIndexes.length === 0 && this.spare.length === 0) return;
    while (this.candidates.length > 0) {
      const chunk = this.candidates.pop()!;
      if (chunk !== this.current) this.compact(chunk);
    }
  }

  private compact(chunk: number): void {
    if (this.own[chunk]) {
      // A record of its own, dead: release the buffer.
      this.u8[chunk] = EMPTY_U8;
      this.i32[chunk] = EMPTY_I32;
      this.own[chunk] = false;
      this.freeIndexes.push(chunk);
      return;
    }
    const words = this.i32[chunk]!;
    const bytes = this.u8[chunk]!;
    const end = this.ends[chunk]!;
    let offset = 0;
    while (offset < end) {
      const w = offset >> 2;
      const keyWord = words[w + 1]!;
      const size = recordBytes(keyWord & KEY_LEN_MASK, words[w + 2]! & VALUE_LEN_MASK);
      if ((keyWord & FLAG_DEAD) === 0) {
        const oldRef = ((chunk << UNITS_PER_CHUNK_SHIFT) | (offset >> UNIT_SHIFT)) >>> 0;
        const ref = this.allocate(size);
        this.u8[ref >>> UNITS_PER_CHUNK_SHIFT]!.set(
          bytes.subarray(offset, offset + size),
          (ref & UNIT_MASK) << UNIT_SHIFT,
        );
        this.replaceRef(words[w]!, oldRef, ref);
      }
      offset += size;
    }
    this.dead[chunk] = 0;
    this.ends[chunk] = 0;
    if (this.spare.length < SPARE_CHUNKS_MAX) {
      this.spare.push(chunk);
      return;
    }
    // Enough kept for reuse: give the chunk back (after a burst, its bytes are not kept).
    this.u8[chunk] = EMPTY_U8;
    this.i32[chunk] = EMPTY_I32;
    this.freeIndexes.push(chunk);
  }

  private insertRef(hash: number, ref: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    if ((this.sizes[shard]! + 1) * 4 > (this.masks[shard]! + 1) * 3) this.grow(shard);
    const refs = this.refs[shard]!;
    const hashes = this.hashes[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== 0) slot = (slot + 1) & mask;
    refs[slot] = ref;
    hashes[slot] = hash;
    this.sizes[shard]!++;
    this.size++;
  }

  private grow(shard: number): void {
    this.resize(shard, this.refs[shard]!.length * 2);
  }

  /** Rebuilds a shard's table with `slots` slots (a power of two, at least MIN_SLOTS). */
  private resize(shard: number, wanted: number): void {
    const oldRefs = this.refs[shard]!;
    const oldHashes = this.hashes[shard]!;
    const slots = Math.max(MIN_SLOTS, wanted);
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
    this.refs[shard] = refs;
    this.hashes[shard] = hashes;
    this.masks[shard] = mask;
  }

  private replaceRef(hash: number, oldRef: number, ref: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    const refs = this.refs[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    refs[slot] = ref;
  }

  private removeRef(hash: number, oldRef: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    const refs = this.refs[shard]!;
    const hashes = this.hashes[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    // Backward-shift deletion: a later entry of the run moves into the hole when the hole
    // lies between its home slot and where it sits.
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const moving = refs[next]!;
      if (moving === 0) break;
      const home = hashes[next]! & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        refs[hole] = moving;
        hashes[hole] = hashes[next]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    refs[hole] = 0;
    hashes[hole] = 0;
    this.sizes[shard]!--;
    this.size--;
    // A shard's table an eighth full or less is halved twice (to about half full), so a
    // burst's tables are given back as its keys go.
    if (refs.length > MIN_SLOTS && this.sizes[shard]! * 8 <= refs.length)
      this.resize(shard, refs.length >> 2);
  }

  /**
   * Freezes the records for a save and returns every record's reference now: until
   * `thaw`, they are neither rewritten in place nor moved, so the references keep
   * reading the state of this instant.
   */
  freeze(): Uint32Array[] {
    this.frozen = true;
    const copies: Uint32Array[] = [];
    for (let shard = 0; shard < SHARDS; shard++) {
      const live = new Uint32Array(this.sizes[shard]!);
      let n = 0;
      const refs = this.refs[shard]!;
      for (let i = 0; i < refs.length; i++) if (refs[i] !== 0) live[n++] = refs[i]!;
      copies.push(live);
    }
    return copies;
  }

  thaw(): void {
    this.frozen = false;
    this.settle();
  }

  /** The keys of one shard (0 .. shardCount - 1), decoded now. */
  shardKeys(shard: number): string[] {
    const refs = this.refs[shard]!;
    const keys: string[] = [];
    for (let i = 0; i < refs.length; i++) if (refs[i] !== 0) keys.push(this.key(refs[i]!));
    return keys;
  }

  get shardCount(): number {
    return SHARDS;
  }

  /** Bytes of the arena and tables (for info and tests). */
  footprint(): { arenaBytes: number; tableBytes: number; deadBytes: number } {
    let arenaBytes = 0;
    let deadBytes = 0;
    for (let i = 0; i < this.u8.length; i++) {
      arenaBytes += this.u8[i]!.byteLength;
      if (this.u8[i]!.byteLength > 0) deadBytes += this.dead[i]!;
    }
    let tableBytes = 0;
    for (let shard = 0; shard < SHARDS; shard++) {
      tableBytes += this.refs[shard]!.byteLength + this.hashes[shard]!.byteLength;
    }
    return { arenaBytes, tableBytes, deadBytes };
  }
}

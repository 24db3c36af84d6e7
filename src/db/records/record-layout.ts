/**
 * The layout of a record and of a reference to it: the constants RecordTable, its arena
 * and its index share, and a record's padded size. Pure numbers, no state.
 *
 * A record, 8-byte aligned, in 32-bit words: w0 the key's hash; w1 the key's byte length
 * (low 24 bits) and flags (high 8); w2 the value's length (low 16 bits: a value in a
 * record is at most EXTERNAL_VALUE_BYTES) and the version's high 16 bits; w3 the version's
 * low 32 bits (a version is exact to 2^48); w4/w5 the createRevision and w6/w7 the
 * modRevision (low and high 32 bits); then the key's bytes (WTF-8, see wtf8-key.ts) and
 * the value's.
 *
 * A reference counts 8-byte units: its high bits are a chunk's index, its low
 * UNITS_PER_CHUNK_SHIFT bits the record's offset in the chunk (in units).
 */

export const CHUNK_SHIFT = 20;
export const CHUNK_BYTES = 1 << CHUNK_SHIFT;
/** References count 8-byte units: 2^32 × 8 B of arena at most; 0 is never a record. */
export const UNIT_SHIFT = 3;
export const UNITS_PER_CHUNK_SHIFT = CHUNK_SHIFT - UNIT_SHIFT;
export const UNIT_MASK = (1 << UNITS_PER_CHUNK_SHIFT) - 1;
export const HEADER_BYTES = 32;
export const KEY_LEN_MASK = 0xffffff;
/** The value's length in w2 (its high 16 bits are the version's high bits). */
export const VALUE_LEN_MASK = 0xffff;
/** Largest value a record holds; RecordDB keeps larger ones outside (FLAG_EXTERNAL). */
export const RECORD_VALUE_BYTES_MAX = VALUE_LEN_MASK;
/** Versions are exact below this (48 bits: w3 and w2's high half). */
export const VERSION_MAX = 2 ** 48 - 1;
/** References are 32 bits: chunk indexes stop here (32 GiB of 1 MiB chunks). */
export const CHUNKS_MAX = 2 ** (32 - (CHUNK_SHIFT - UNIT_SHIFT));
/** Flags (in w1's high byte). */
export const FLAG_DEAD = 1 << 24;
/** The key has deadlines, kept outside the record (see RecordDB). */
export const FLAG_TIMED = 1 << 25;
/** The value is kept outside the record (a large one, see RecordDB). */
export const FLAG_EXTERNAL = 1 << 26;
/** The key is not well-formed UTF-16 (a lone surrogate): decoded by hand. */
export const FLAG_LONE_SURROGATE = 1 << 27;
export const FLAGS_KEPT = FLAG_TIMED | FLAG_EXTERNAL;
/** Keys longer than this (in bytes) are refused (`--max-key-bytes` has this bound). */
export const MAX_KEY_BYTES = KEY_LEN_MASK;

export const EMPTY_U8 = new Uint8Array(0);
export const EMPTY_I32 = new Int32Array(0);

export function recordBytes(keyBytes: number, valueBytes: number): number {
  return (HEADER_BYTES + keyBytes + valueBytes + 7) & ~7;
}

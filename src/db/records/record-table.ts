/**
 * RecordTable: keys and values out of JS objects. Each key's record (a header, the key's
 * bytes, the value's bytes; see record-layout.ts) lives in large chunks of an arena
 * (record-arena.ts); per shard an open-addressing table (ref-index.ts) maps a key's hash
 * (wtf8-key.ts) to its record's reference. No Map, no string and no object is kept per key.
 * This class is the table's API: finding a key, reading a record, writing one.
 *
 * A record whose new contents take the same padded size is rewritten in place (not while
 * frozen for a save); any other write makes a new record and marks the old one dead (the
 * arena compacts chunks half dead after the write).
 *
 * Callers pass references (`ref`) from `find`; a reference is valid until the next write.
 */
import { DkvError } from "../../errors.ts";
import { RecordArena } from "./record-arena.ts";
import {
  CHUNK_BYTES,
  CHUNKS_MAX,
  EMPTY_U8,
  FLAG_EXTERNAL,
  FLAG_LONE_SURROGATE,
  FLAGS_KEPT,
  HEADER_BYTES,
  KEY_LEN_MASK,
  MAX_KEY_BYTES,
  recordBytes,
  UNIT_MASK,
  UNIT_SHIFT,
  UNITS_PER_CHUNK_SHIFT,
  VALUE_LEN_MASK,
  VERSION_MAX,
} from "./record-layout.ts";
import { SHARD_BITS } from "./ref-index.ts";
import { decodeWtf8, hashKey, lastHashedKey, utf8Length, writeKeyBytes } from "./wtf8-key.ts";

const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

export class RecordTable extends RecordArena {
  /** Set by `find`: the key's hash and byte length, for an `insert` that follows. */
  hash = 0;
  keyBytes = 0;
  private loneSurrogate = false;
  /** Scratch for comparing a non-ASCII key. */
  private scratch = new Uint8Array(256);

  /** The record of `key`, or 0. Sets `hash` and `keyBytes`. */
  find(key: string): number {
    const hash = hashKey(key);
    const length = lastHashedKey.keyBytes;
    this.hash = hash;
    this.keyBytes = length;
    this.loneSurrogate = lastHashedKey.loneSurrogate;
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

  /**
   * Freezes the records for a save and returns every record's reference now: until
   * `thaw`, they are neither rewritten in place nor moved, so the references keep
   * reading the state of this instant.
   */
  freeze(): Uint32Array[] {
    this.frozen = true;
    return this.liveRefs();
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

  /** Bytes of the arena and tables (for info and tests). */
  footprint(): { arenaBytes: number; tableBytes: number; deadBytes: number } {
    const { arenaBytes, deadBytes } = this.arenaFootprint();
    return { arenaBytes, tableBytes: this.tableBytes(), deadBytes };
  }
}

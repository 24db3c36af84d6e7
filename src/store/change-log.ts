/**
 * The kept history of a store's changes (ChangeLog: a ring of parallel arrays, small
 * changes copied into shared chunks) and what a change is charged in the history and in a
 * watcher's buffer.
 */
import { decodeKeyRange } from "../text.ts";
import type { ChangeType, WatchChange } from "./watch-types.ts";

/** What one change is charged in the history and a watcher's buffer: key, value, bookkeeping. */
export const EVENT_OVERHEAD_BYTES = 128;

export function eventBytes(change: WatchChange): number {
  return changeBytes(change.key, change.value);
}

/** What a change of `key` to `value` is charged. */
export function changeBytes(key: string, value: Uint8Array | undefined): number {
  return key.length * 2 + (value?.byteLength ?? 0) + EVENT_OVERHEAD_BYTES;
}

const CHANGE_TYPES: readonly ChangeType[] = ["put", "delete", "expire"];
const CHANGE_LOG_CAPACITY_MIN = 64;
/** The kept changes' own copies of small keys and values live in chunks of this size. */
const CHANGE_CHUNK_BYTES = 64 * 1024;
/** A change whose ASCII key and value together are at most this many bytes is copied into a chunk. */
const CHANGE_INLINE_BYTES_MAX = 4096;
/** valueLengths: a copied change without a value (delete, expire). */
const NO_VALUE = -1;
/** valueLengths: a change kept by reference (keys[] and values[]), not copied. */
const BY_REFERENCE = -2;

const keyDecoder = new TextDecoder();

/**
 * The kept changes as a ring of parallel arrays, not one object per change; dropping the
 * oldest allocates nothing and never copies the arrays (the ring only grows, by doubling,
 * while the byte bound lets more changes in). Objects are made when a change is read.
 *
 * A small change (ASCII key, key and value at most CHANGE_INLINE_BYTES_MAX bytes: the
 * common write) keeps a copy of its key and value bytes in shared chunks instead of the
 * published string and array. Held for the whole history (tens of thousands of writes),
 * those would outlive every eden collection and pile up in the old generation as garbage
 * once the engine replaced the value (a one-member dstore writing 100 keys: ~800 B of
 * promoted garbage per write, the heap swinging 16 -> 50 MiB between full collections);
 * the copies are live bytes in a few 64 KiB chunks, reused as the oldest are dropped. A
 * larger or non-ASCII change is kept by reference, as before (its copy would cost more
 * than its cell). A read gets a fresh string and a fresh copy of the value.
 */
export class ChangeLog {
  private types = new Uint8Array(CHANGE_LOG_CAPACITY_MIN);
  private revisions = new Float64Array(CHANGE_LOG_CAPACITY_MIN);
  /** Where a change's copied bytes start: a position in the stream of chunks (chunk number × CHANGE_CHUNK_BYTES + offset). */
  private starts = new Float64Array(CHANGE_LOG_CAPACITY_MIN);
  private keyLengths = new Uint16Array(CHANGE_LOG_CAPACITY_MIN);
  /** The copied value's length, NO_VALUE, or BY_REFERENCE. */
  private valueLengths = new Int16Array(CHANGE_LOG_CAPACITY_MIN);
  /** Only changes kept by reference: their key and value ("" and undefined otherwise). */
  private keys: string[] = new Array<string>(CHANGE_LOG_CAPACITY_MIN).fill("");
  private values: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(
    CHANGE_LOG_CAPACITY_MIN,
  ).fill(undefined);
  /** Ring position of the oldest kept change. */
  private head = 0;
  private count = 0;
  /** Chunks numbered firstChunk, firstChunk + 1, ...; the last is being written. */
  private chunks: Uint8Array[] = [];
  private firstChunk = 0;
  /** The chunk being written (-1: none yet) and the offset of its next free byte. */
  private writeChunk = -1;
  private writeOffset = CHANGE_CHUNK_BYTES;
  /** A dropped chunk kept for the next one needed, so a steady stream of writes allocates none. */
  private spareChunk: Uint8Array | undefined;

  get size(): number {
    return this.count;
  }

  /** Bytes of chunks held (for tests of the memory bound). */
  get chunkBytes(): number {
    return (this.chunks.length + (this.spareChunk === undefined ? 0 : 1)) * CHANGE_CHUNK_BYTES;
  }

  push(type: ChangeType, key: string, value: Uint8Array | undefined, revision: number): void {
    if (this.count === this.types.length) this.grow();
    const at = (this.head + this.count) & (this.types.length - 1);
    this.types[at] = type === "put" ? 0 : type === "delete" ? 1 : 2;
    this.revisions[at] = revision;
    const keyLength = key.length;
    const valueLength = value === undefined ? 0 : value.length;
    if (keyLength + valueLength <= CHANGE_INLINE_BYTES_MAX && isAscii(key)) {
      if (this.chunks.length === 0 || this.writeOffset + keyLength + valueLength > CHANGE_CHUNK_BYTES)
        this.nextChunk();
      const chunk = this.chunks[this.chunks.length - 1]!;
      const offset = this.writeOffset;
      for (let i = 0; i < keyLength; i++) chunk[offset + i] = key.charCodeAt(i);
      if (value !== undefined) chunk.set(value, offset + keyLength);
      this.starts[at] = this.writeChunk * CHANGE_CHUNK_BYTES + offset;
      this.keyLengths[at] = keyLength;
      this.valueLengths[at] = value === undefined ? NO_VALUE : valueLength;
      this.writeOffset = offset + keyLength + valueLength;
    } else {
      // Takes no bytes of a chunk: its position only orders the chunks' release.
      this.starts[at] = this.writeChunk * CHANGE_CHUNK_BYTES + this.writeOffset;
      this.valueLengths[at] = BY_REFERENCE;
      this.keys[at] = key;
      this.values[at] = value;
    }
    this.count++;
  }

  /** The i-th kept change (0 = oldest) as a fresh object. */
  at(i: number): WatchChange {
    const at = (this.head + i) & (this.types.length - 1);
    const type = CHANGE_TYPES[this.types[at]!]!;
    const revision = this.revisions[at]!;
    const valueLength = this.valueLengths[at]!;
    if (valueLength === BY_REFERENCE) {
      const value = this.values[at];
      const key = this.keys[at]!;
      return value === undefined ? { type, key, revision } : { type, key, value, revision };
    }
    const start = this.starts[at]!;
    const chunk = this.chunks[Math.floor(start / CHANGE_CHUNK_BYTES) - this.firstChunk]!;
    const offset = start % CHANGE_CHUNK_BYTES;
    const keyEnd = offset + this.keyLengths[at]!;
    const key = decodeKeyRange(keyDecoder, chunk, offset, keyEnd);
    if (valueLength === NO_VALUE) return { type, key, revision };
    return { type, key, value: chunk.slice(keyEnd, keyEnd + valueLength), revision };
  }

  revisionAt(i: number): number {
    return this.revisions[(this.head + i) & (this.types.length - 1)]!;
  }

  /** Drops the oldest change (there is one); returns its charged bytes. Read its revision first. */
  dropOldest(): number {
    const at = this.head;
    const valueLength = this.valueLengths[at]!;
    let bytes: number;
    if (valueLength === BY_REFERENCE) {
      bytes = changeBytes(this.keys[at]!, this.values[at]);
      this.keys[at] = "";
      this.values[at] = undefined;
    } else {
      // changeBytes of the copied change (its key is ASCII: one byte per UTF-16 unit).
      bytes = this.keyLengths[at]! * 2 + (valueLength === NO_VALUE ? 0 : valueLength) + EVENT_OVERHEAD_BYTES;
    }
    this.head = (at + 1) & (this.types.length - 1);
    this.count--;
    this.releaseChunks();
    return bytes;
  }

  /** Lets go of the chunks before the oldest kept change's (all of them once none is kept). */
  private releaseChunks(): void {
    const keepFrom =
      this.count === 0 ? this.writeChunk + 1 : Math.floor(this.starts[this.head]! / CHANGE_CHUNK_BYTES);
    while (this.chunks.length > 0 && this.firstChunk < keepFrom) {
      this.spareChunk = this.chunks.shift();
      this.firstChunk++;
    }
    if (this.chunks.length === 0) this.writeOffset = CHANGE_CHUNK_BYTES;
  }

  private nextChunk(): void {
    const chunk = this.spareChunk ?? new Uint8Array(CHANGE_CHUNK_BYTES);
    this.spareChunk = undefined;
    this.writeChunk++;
    if (this.chunks.length === 0) this.firstChunk = this.writeChunk;
    this.chunks.push(chunk);
    this.writeOffset = 0;
  }

  private grow(): void {
    const capacity = this.types.length * 2;
    const types = new Uint8Array(capacity);
    const revisions = new Float64Array(capacity);
    const starts = new Float64Array(capacity);
    const keyLengths = new Uint16Array(capacity);
    const valueLengths = new Int16Array(capacity);
    const keys = new Array<string>(capacity).fill("");
    const values = new Array<Uint8Array | undefined>(capacity).fill(undefined);
    const mask = this.types.length - 1;
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      types[i] = this.types[from]!;
      revisions[i] = this.revisions[from]!;
      starts[i] = this.starts[from]!;
      keyLengths[i] = this.keyLengths[from]!;
      valueLengths[i] = this.valueLengths[from]!;
      keys[i] = this.keys[from]!;
      values[i] = this.values[from];
    }
    this.types = types;
    this.revisions = revisions;
    this.starts = starts;
    this.keyLengths = keyLengths;
    this.valueLengths = valueLengths;
    this.keys = keys;
    this.values = values;
    this.head = 0;
  }
}

/** Every UTF-16 unit of `key` is ASCII (one UTF-8 byte each). */
function isAscii(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0x80) return false;
  return true;
}

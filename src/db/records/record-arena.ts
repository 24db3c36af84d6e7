/**
 * RecordArena: where records live. Large chunks (CHUNK_BYTES) filled in turn; a record
 * too large for a chunk gets a buffer of its own, released once dead. A dead record's
 * bytes are counted per chunk; a chunk whose dead bytes reach half of it is compacted
 * after the write under way (`settle`): its live records move to the chunk being filled
 * (their references updated in the index) and it is kept for reuse or given back. While
 * frozen for a save, nothing is moved or reused.
 *
 * It extends RefIndex (compaction moves references) and RecordTable extends it: one
 * object, so the write path reads chunks and tables with no indirection.
 */
import {
  CHUNK_BYTES,
  CHUNKS_MAX,
  EMPTY_I32,
  EMPTY_U8,
  FLAG_DEAD,
  KEY_LEN_MASK,
  recordBytes,
  UNIT_MASK,
  UNIT_SHIFT,
  UNITS_PER_CHUNK_SHIFT,
  VALUE_LEN_MASK,
} from "./record-layout.ts";
import { RefIndex } from "./ref-index.ts";

/** Emptied chunks kept for reuse; more are given back (a burst's peak is not kept). */
const SPARE_CHUNKS_MAX = 2;
/** A record bigger than this gets a buffer of its own. */
const MAX_CHUNKED_RECORD_BYTES = CHUNK_BYTES >> 2;

export class RecordArena extends RefIndex {
  protected u8: Uint8Array[] = [];
  protected i32: Int32Array[] = [];
  /** Dead bytes per chunk. */
  private dead: number[] = [];
  /** Where each chunk's records end (the current chunk's: `top`). */
  private ends: number[] = [];
  /** Whether a chunk is a record's own buffer. */
  private own: boolean[] = [];
  /** Emptied chunks, ready for reuse; indexes of released own buffers. */
  protected spare: number[] = [];
  protected freeIndexes: number[] = [];
  private current = -1;
  private top = CHUNK_BYTES;
  /** Chunks over half dead, compacted once the write under way is done. */
  private candidates: number[] = [];
  /** While frozen (a save reads the records): nothing is rewritten in place, moved or reused. */
  protected frozen = false;

  constructor() {
    super();
    // Chunk index 0 is never used, so no record's reference is 0 (an empty slot).
    this.u8.push(EMPTY_U8);
    this.i32.push(EMPTY_I32);
    this.dead.push(0);
    this.ends.push(0);
    this.own.push(false);
  }

  /** Reserves `size` bytes (a multiple of 8); returns the reference. Moves no record. */
  protected allocate(size: number): number {
    if (size > MAX_CHUNKED_RECORD_BYTES) return this.allocateOwn(size);
    if (this.top + size > CHUNK_BYTES) this.newChunk();
    const offset = this.top;
    this.top += size;
    return ((this.current << UNITS_PER_CHUNK_SHIFT) | (offset >> UNIT_SHIFT)) >>> 0;
  }

  private allocateOwn(size: number): number {
    const index = this.placeChunk(new ArrayBuffer(size), true);
    this.ends[index] = size;
    return (index << UNITS_PER_CHUNK_SHIFT) >>> 0;
  }

  /** Puts `buffer` in a free chunk slot (`own`: one record's alone) and returns the slot. */
  private placeChunk(buffer: ArrayBuffer, own: boolean): number {
    const index = this.freeIndexes.pop() ?? this.u8.length;
    if (index >= CHUNKS_MAX)
      throw new RangeError(`record chunk ${index} past ${CHUNKS_MAX}: checkRoom was skipped`);
    this.u8[index] = new Uint8Array(buffer);
    this.i32[index] = new Int32Array(buffer);
    this.dead[index] = 0;
    this.own[index] = own;
    return index;
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
      this.current = this.placeChunk(new ArrayBuffer(CHUNK_BYTES), false);
    }
    this.ends[this.current] = 0;
    this.top = 0;
  }

  protected kill(chunk: number, offset: number, keyBytes: number, valueLength: number): void {
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
  protected settle(): void {
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

  /** Bytes of the arena, and of its dead records. */
  protected arenaFootprint(): { arenaBytes: number; deadBytes: number } {
    let arenaBytes = 0;
    let deadBytes = 0;
    for (let i = 0; i < this.u8.length; i++) {
      arenaBytes += this.u8[i]!.byteLength;
      if (this.u8[i]!.byteLength > 0) deadBytes += this.dead[i]!;
    }
    return { arenaBytes, deadBytes };
  }
}

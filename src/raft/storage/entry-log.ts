import { assert, entrySizeBytes } from "../core/index.ts";
import type { Entry, EntryKind } from "../core/types.ts";

/** Entries of at least this many bytes keep a buffer of their own; smaller ones share chunks. */
export const ENTRY_OWN_BUFFER_BYTES_MIN = 8 * 1024;
/** Size of a chunk that small entries' bytes are copied into. */
export const ENTRY_CHUNK_BYTES = 32 * 1024;
const COLUMN_CAPACITY_MIN = 64;

/**
 * The in-memory copy of the log that LogStorage reads answer from: entries after a base
 * point (the last compacted entry, or the snapshot) whose term is still known, so
 * `term(firstIndex - 1)` always answers.
 *
 * Held without an object per entry, so that the tens of thousands of entries between two
 * snapshots are not tens of thousands of objects the collector must keep and later free:
 * columns of typed arrays (term, log time, kind, where the bytes are) and the bytes of
 * small entries copied into shared 32 KiB chunks (a chunk goes once compaction has passed
 * every entry in it); an entry of 8 KiB or more keeps its own buffer (the one given, when
 * it is a whole buffer). Reads build Entry objects on demand, small entries' bytes copied
 * out, so no reader retains a slice of a chunk.
 */
export class EntryLog {
  private base: number;
  private baseTermValue: number;
  // Columns: entry base+1+i is at position start+i, for i < length.
  private start = 0;
  private length = 0;
  private terms = new Float64Array(COLUMN_CAPACITY_MIN);
  private times = new Float64Array(COLUMN_CAPACITY_MIN);
  private kinds = new Uint8Array(COLUMN_CAPACITY_MIN);
  /** Sequence number of the chunk holding the entry's bytes. */
  private chunkOf = new Float64Array(COLUMN_CAPACITY_MIN);
  private offsets = new Uint32Array(COLUMN_CAPACITY_MIN);
  private sizes = new Uint32Array(COLUMN_CAPACITY_MIN);
  // Chunks in sequence order: chunks[0] has sequence number firstChunkSeq.
  private chunks: Uint8Array[] = [];
  private firstChunkSeq = 0;
  /** Where the next small entry's bytes go in the last chunk; -1: the last chunk takes none. */
  private writeAt = -1;

  constructor(base: number, baseTerm: number, entries: readonly Entry[]) {
    this.base = base;
    this.baseTermValue = baseTerm;
    for (let i = 0; i < entries.length; i++) {
      if (entries[i]!.index !== base + 1 + i) assert(false, `entries must be contiguous after index ${base}`);
      this.push(entries[i]!);
    }
  }

  get baseIndex(): number {
    return this.base;
  }

  get baseTerm(): number {
    return this.baseTermValue;
  }

  firstIndex(): number {
    return this.base + 1;
  }

  lastIndex(): number {
    return this.base + this.length;
  }

  /** The term at `index`, or undefined if compacted or beyond the end. */
  termAt(index: number): number | undefined {
    if (index === this.base) return this.baseTermValue;
    const i = index - this.base - 1;
    return i >= 0 && i < this.length ? this.terms[this.start + i] : undefined;
  }

  /** The byte length of entry `index`'s data, or undefined if compacted or beyond the end (nothing is built or copied). */
  dataBytesAt(index: number): number | undefined {
    const i = index - this.base - 1;
    return i >= 0 && i < this.length ? this.sizes[this.start + i] : undefined;
  }

  entryAt(index: number): Entry | undefined {
    const i = index - this.base - 1;
    return i >= 0 && i < this.length ? this.build(this.start + i, index) : undefined;
  }

  /** Entries in [lo, hi) within the size budget (at least one); outside the log an assertion (the caller's bug). */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    // The messages only when a check fails (no closure per call: slice runs per Ready).
    if (lo <= this.base) assert(false, `entry ${lo} is compacted (first index ${this.firstIndex()})`);
    if (hi > this.lastIndex() + 1) assert(false, `entry ${hi - 1} is beyond last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    // Bounded by hi - lo.
    for (let index = lo; index < hi; index++) {
      const entry = this.build(this.start + index - this.base - 1, index);
      bytes += entrySizeBytes(entry);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(entry);
    }
    return out;
  }

  /**
   * Appends contiguous entries, replacing any suffix from the first new index on.
   * Entries at or below the base are committed and identical, so they are skipped.
   * Returns the position in `entries` of the first one applied (entries.length if none).
   */
  append(entries: readonly Entry[]): number {
    let from = 0;
    // Bounded by entries.length.
    while (from < entries.length && entries[from]!.index <= this.base) from++;
    if (from === entries.length) return from;
    this.truncate(entries[from]!.index - this.base - 1);
    for (let i = from; i < entries.length; i++) this.push(entries[i]!);
    return from;
  }

  /** Drops entries up to and including `index` (which must be in the log). */
  compactTo(index: number): void {
    if (index <= this.base) return;
    const term = this.termAt(index);
    if (term === undefined) throw new RangeError(`compact ${index} is beyond last index ${this.lastIndex()}`);
    const dropped = index - this.base;
    this.start += dropped;
    this.length -= dropped;
    this.base = index;
    this.baseTermValue = term;
    if (this.length === 0) {
      this.start = 0;
      this.dropChunksBefore(this.firstChunkSeq + this.chunks.length);
    } else {
      this.dropChunksBefore(this.chunkOf[this.start]!);
    }
    const capacity = this.terms.length;
    if (capacity > COLUMN_CAPACITY_MIN && this.length * 8 < capacity) {
      let fit = COLUMN_CAPACITY_MIN;
      while (fit < this.length * 2) fit *= 2;
      this.moveColumns(fit);
    }
  }

  /** Replaces the whole log by a snapshot point (a leader's snapshot that our log does not contain). */
  reset(index: number, term: number): void {
    this.base = index;
    this.baseTermValue = term;
    this.start = 0;
    this.length = 0;
    this.dropChunksBefore(this.firstChunkSeq + this.chunks.length);
    if (this.terms.length > COLUMN_CAPACITY_MIN) this.moveColumns(COLUMN_CAPACITY_MIN);
  }

  /** Bytes held: the columns, and every chunk and own buffer (for tests and monitoring). */
  get heldBytes(): number {
    let bytes = this.terms.length * (8 + 8 + 1 + 8 + 4 + 4);
    for (const chunk of this.chunks) bytes += chunk.byteLength;
    return bytes;
  }

  private build(pos: number, index: number): Entry {
    const chunk = this.chunks[this.chunkOf[pos]! - this.firstChunkSeq]!;
    const size = this.sizes[pos]!;
    const offset = this.offsets[pos]!;
    // An own buffer is handed out as it is (as before); a chunk's bytes are copied out.
    const data = size >= ENTRY_OWN_BUFFER_BYTES_MIN ? chunk : chunk.slice(offset, offset + size);
    return {
      term: this.terms[pos]!,
      index,
      kind: this.kinds[pos]! as EntryKind,
      timeMs: this.times[pos]!,
      data,
    };
  }

  private push(entry: Entry): void {
    if (this.start + this.length === this.terms.length) {
      this.moveColumns(this.length * 2 >= this.terms.length ? this.terms.length * 2 : this.terms.length);
    }
    const pos = this.start + this.length;
    this.terms[pos] = entry.term;
    this.times[pos] = entry.timeMs;
    this.kinds[pos] = entry.kind;
    const data = entry.data;
    const size = data.byteLength;
    this.sizes[pos] = size;
    if (size >= ENTRY_OWN_BUFFER_BYTES_MIN) {
      const whole =
        data.byteOffset === 0 && data.buffer.byteLength === size && data.buffer instanceof ArrayBuffer;
      this.chunks.push(whole ? data : data.slice());
      this.offsets[pos] = 0;
      this.writeAt = -1;
    } else {
      if (this.writeAt < 0 || this.writeAt + size > ENTRY_CHUNK_BYTES) {
        this.chunks.push(new Uint8Array(ENTRY_CHUNK_BYTES));
        this.writeAt = 0;
      }
      this.chunks[this.chunks.length - 1]!.set(data, this.writeAt);
      this.offsets[pos] = this.writeAt;
      this.writeAt += size;
    }
    this.chunkOf[pos] = this.firstChunkSeq + this.chunks.length - 1;
    this.length++;
  }

  /** Keeps the first `keep` entries; chunks only the dropped ones used go too. */
  private truncate(keep: number): void {
    if (keep >= this.length) return;
    this.length = keep;
    if (keep === 0) {
      this.start = 0;
      this.dropChunksAfter(this.firstChunkSeq - 1);
      return;
    }
    const last = this.start + keep - 1;
    this.dropChunksAfter(this.chunkOf[last]!);
    // The last chunk takes more small entries after the kept one's bytes (not after an own buffer).
    this.writeAt =
      this.sizes[last]! >= ENTRY_OWN_BUFFER_BYTES_MIN ? -1 : this.offsets[last]! + this.sizes[last]!;
  }

  private dropChunksBefore(seq: number): void {
    const count = Math.min(seq - this.firstChunkSeq, this.chunks.length);
    if (count <= 0) return;
    this.chunks.splice(0, count);
    this.firstChunkSeq += count;
    if (this.chunks.length === 0) this.writeAt = -1;
  }

  private dropChunksAfter(seq: number): void {
    const keep = Math.max(0, seq - this.firstChunkSeq + 1);
    if (keep >= this.chunks.length) return;
    this.chunks.length = keep;
    this.writeAt = -1;
  }

  /** Moves the live columns to position 0 of columns with `capacity` slots. */
  private moveColumns(capacity: number): void {
    const from = this.start;
    const to = from + this.length;
    const move = <T extends Float64Array | Uint32Array | Uint8Array>(column: T, fresh: T): T => {
      fresh.set(column.subarray(from, to));
      return fresh;
    };
    this.terms = move(this.terms, new Float64Array(capacity));
    this.times = move(this.times, new Float64Array(capacity));
    this.kinds = move(this.kinds, new Uint8Array(capacity));
    this.chunkOf = move(this.chunkOf, new Float64Array(capacity));
    this.offsets = move(this.offsets, new Uint32Array(capacity));
    this.sizes = move(this.sizes, new Uint32Array(capacity));
    this.start = 0;
  }
}

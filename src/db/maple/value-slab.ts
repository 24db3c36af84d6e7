import { DkvError } from "../../errors.ts";
import type { LentBytes, LentEntry } from "../kvdb.ts";
import type { SnapshotEncoder, SnapshotRevisions } from "./snapshot-codec.ts";

/**
 * Small values and their revisions packed into shared chunks, so a key without deadlines
 * costs its map slot and one record here instead of an Entry object plus a Uint8Array
 * (a typed-array cell and its separate backing store): measured at 1M keys × 128 B,
 * ~100 B less per key.
 *
 * A record is [f64 version][f64 createRevision][f64 modRevision][f64 length][value bytes],
 * rounded up to a size class (16-byte steps; a 128 B value takes 160 B). Each chunk (an ArrayBuffer of at most
 * 64 KiB) holds records of one class; a class's chunks start small and double up to
 * 64 KiB, so a store with a few keys stays small. A record's reference is a plain
 * number, chunk × 65536 + offset (bit operations only): no object per key. Past 65536
 * chunks (4 GiB) `alloc` answers -1 and the caller keeps the value in an object instead. Freed records go on a per-class
 * free list threaded through the records themselves (the next reference is kept in the
 * version field), so no side array grows with deletions.
 *
 * Chunks are never given back (like a malloc arena): memory is bounded by the peak of
 * what was stored; a snapshot load builds a fresh, packed slab.
 */
export class ValueSlab {
  private readonly bytes: Uint8Array[] = [];
  private readonly f64: Float64Array[] = [];
  /** The same chunks as 32-bit words: a lent value is copied a word at a time. */
  private readonly u32: Uint32Array[] = [];
  /** Per class: the next never-used record in the class's newest chunk, or -1. */
  private readonly bump: number[] = [];
  /** Per class: the end (exclusive reference) of that newest chunk. */
  private readonly bumpEnd: number[] = [];
  /** Per class: head of the free list, or -1. */
  private readonly freeHead: number[] = [];
  /** Per class: how many chunks it has (the next chunk's size doubles with it). */
  private readonly chunksOfClass: number[] = [];
  /** References freed while a save may still read them; released when it ends (see deferFree). */
  private deferred: number[] = [];
  private heldBytes = 0;
  /** How many times a record's bytes were written: a loan made before the next write is void. */
  private fills = 0;

  constructor() {
    for (let c = 0; c < CLASS_COUNT; c++) {
      this.bump.push(-1);
      this.bumpEnd.push(-1);
      this.freeHead.push(-1);
      this.chunksOfClass.push(0);
    }
  }

  /** Bytes of chunks allocated (used or free). */
  get bytesHeld(): number {
    return this.heldBytes;
  }

  /**
   * Stores a new record; returns its reference, or -1 when the slab is full (keep the
   * value elsewhere). `value.byteLength` must be at most SLAB_VALUE_MAX.
   */
  alloc(value: Uint8Array, version: number, createRevision: number, modRevision: number): number {
    const ref = this.take(classOf(value.byteLength));
    if (ref !== -1) this.fill(ref, value, version, createRevision, modRevision);
    return ref;
  }

  /**
   * The write path of an existing record: the value changes, the version goes up by one,
   * the create revision stays. In place when the value fits the same size class, else
   * in a new record (the old one is freed). Returns the reference now holding it, or -1
   * when it had to move and the slab is full (the old record is then left as it was).
   * Only when no save can still read `ref`.
   */
  overwrite(ref: number, value: Uint8Array, modRevision: number): number {
    const f64 = this.f64[ref >>> 16]!;
    const at = (ref & OFFSET_MASK) >>> 3;
    const version = f64[at]! + 1;
    const createRevision = f64[at + 1]!;
    const cls = classOf(value.byteLength);
    if (cls !== classOf(f64[at + 3]!)) {
      const moved = this.take(cls);
      if (moved === -1) return -1;
      this.free(ref);
      ref = moved;
    }
    this.fill(ref, value, version, createRevision, modRevision);
    return ref;
  }

  free(ref: number): void {
    const f64 = this.f64[ref >>> 16]!;
    const at = (ref & OFFSET_MASK) >>> 3;
    const cls = classOf(f64[at + 3]!);
    f64[at] = this.freeHead[cls]!;
    this.freeHead[cls] = ref;
  }

  /** Frees `ref` once `releaseDeferred` runs (a running save may still read it). */
  deferFree(ref: number): void {
    this.deferred.push(ref);
  }

  releaseDeferred(): void {
    const refs = this.deferred;
    this.deferred = [];
    for (const ref of refs) this.free(ref);
  }

  length(ref: number): number {
    return this.f64[ref >>> 16]![((ref & OFFSET_MASK) >>> 3) + 3]!;
  }

  version(ref: number): number {
    return this.f64[ref >>> 16]![(ref & OFFSET_MASK) >>> 3]!;
  }

  createRevision(ref: number): number {
    return this.f64[ref >>> 16]![((ref & OFFSET_MASK) >>> 3) + 1]!;
  }

  modRevision(ref: number): number {
    return this.f64[ref >>> 16]![((ref & OFFSET_MASK) >>> 3) + 2]!;
  }

  /** Whether no record was written since `fillsAtLoan` (see lend). */
  unchangedSince(fillsAtLoan: number): boolean {
    return this.fills === fillsAtLoan;
  }

  /**
   * The entry of record `ref`, its value lent without a copy (a SlabLoan over the chunk):
   * valid until the next write to any record, which may rewrite this one in place.
   */
  lend(ref: number): SlabLoan {
    const chunk = ref >>> 16;
    const offset = ref & OFFSET_MASK;
    const f64 = this.f64[chunk]!;
    const at = offset >>> 3;
    return new SlabLoan(
      this,
      this.u32[chunk]!,
      (offset + VALUE_AT) >>> 2,
      f64[at + 3]!,
      f64[at]!,
      f64[at + 1]!,
      f64[at + 2]!,
      this.fills,
    );
  }

  /** A fresh copy of the value: the caller may keep and change it. */
  copy(ref: number): Uint8Array {
    const chunk = ref >>> 16;
    const offset = ref & OFFSET_MASK;
    const start = offset + VALUE_AT;
    return this.bytes[chunk]!.slice(start, start + this.f64[chunk]![(offset >>> 3) + 3]!);
  }

  /** Adds record `ref` to a snapshot, its value copied straight from the chunk (no view). */
  saveInto(encoder: SnapshotEncoder, key: string, ref: number, revisions: SnapshotRevisions): void {
    const chunk = ref >>> 16;
    const offset = ref & OFFSET_MASK;
    encoder.addFrom(
      key,
      this.bytes[chunk]!,
      offset + VALUE_AT,
      this.f64[chunk]![(offset >>> 3) + 3]!,
      revisions,
    );
  }

  equals(ref: number, other: Uint8Array): boolean {
    const chunk = ref >>> 16;
    const offset = ref & OFFSET_MASK;
    const length = this.f64[chunk]![(offset >>> 3) + 3]!;
    if (length !== other.byteLength) return false;
    const bytes = this.bytes[chunk]!;
    const start = offset + VALUE_AT;
    for (let i = 0; i < length; i++) if (bytes[start + i] !== other[i]) return false;
    return true;
  }

  private fill(
    ref: number,
    value: Uint8Array,
    version: number,
    createRevision: number,
    modRevision: number,
  ): void {
    const chunk = ref >>> 16;
    const offset = ref & OFFSET_MASK;
    const f64 = this.f64[chunk]!;
    const at = offset >>> 3;
    this.fills++;
    f64[at] = version;
    f64[at + 1] = createRevision;
    f64[at + 2] = modRevision;
    f64[at + 3] = value.byteLength;
    this.bytes[chunk]!.set(value, offset + VALUE_AT);
  }

  /**
   * An unused record of class `cls`: from its free list, else the newest chunk, else a
   * new chunk; -1 when every chunk is taken.
   */
  private take(cls: number): number {
    const head = this.freeHead[cls]!;
    if (head !== -1) {
      this.freeHead[cls] = this.f64[head >>> 16]![(head & OFFSET_MASK) >>> 3]!;
      return head;
    }
    const size = recordBytesOf(cls);
    let ref = this.bump[cls]!;
    if (ref === -1 || ref + size > this.bumpEnd[cls]!) {
      if (this.bytes.length >= MAX_CHUNKS) return -1;
      ref = this.addChunk(cls, size);
    }
    this.bump[cls] = ref + size;
    return ref;
  }

  private addChunk(cls: number, recordBytes: number): number {
    const chunk = this.bytes.length;
    const count = this.chunksOfClass[cls]!;
    const records = Math.max(
      1,
      Math.min(Math.floor(CHUNK_MAX_BYTES / recordBytes), FIRST_CHUNK_RECORDS * 2 ** Math.min(count, 16)),
    );
    const chunkBytes = records * recordBytes;
    const buffer = new ArrayBuffer(chunkBytes);
    this.bytes.push(new Uint8Array(buffer));
    this.f64.push(new Float64Array(buffer));
    this.u32.push(new Uint32Array(buffer));
    this.chunksOfClass[cls] = count + 1;
    this.heldBytes += chunkBytes;
    const start = chunk * CHUNK_MAX_BYTES;
    this.bumpEnd[cls] = start + chunkBytes;
    return start;
  }
}

/**
 * A slab record lent to a reader that copies it at once (the RPC server's get reply):
 * the entry and its value in one object, no Uint8Array made. `copyInto` refuses once any
 * record was written after the loan, so a loan kept past a write cannot leak another
 * value's bytes.
 */
export class SlabLoan implements LentEntry, LentBytes {
  /** The entry's value is the loan itself (one object per get). */
  readonly value: LentBytes = this;

  constructor(
    private readonly slab: ValueSlab,
    private readonly words: Uint32Array,
    /** Index in `words` of the value's first 4 bytes (records are 16-byte aligned). */
    private readonly startWord: number,
    readonly byteLength: number,
    readonly version: number,
    readonly createRevision: number,
    readonly modRevision: number,
    private readonly fillsAtLoan: number,
  ) {}

  copyInto(target: Uint8Array, targetView: DataView, offset: number): void {
    if (!this.slab.unchangedSince(this.fillsAtLoan)) {
      throw new DkvError(
        "INTERNAL",
        "a value lent by the engine was read after a later write; copy a lent value in the turn it is lent",
      );
    }
    // A word at a time: a fourth of the loads and stores of a byte loop, and no view made
    // (`set` of a subarray costs an object per get). The words are read in the platform's
    // order and written little-endian: Bun runs on little-endian machines only.
    const words = this.words;
    const length = this.byteLength;
    const whole = length >>> 2;
    let word = this.startWord;
    let at = offset;
    for (let i = 0; i < whole; i++) {
      targetView.setUint32(at, words[word++]!, true);
      at += 4;
    }
    const rest = length & 3;
    if (rest !== 0) {
      let last = words[word]!;
      for (let i = 0; i < rest; i++) {
        target[at++] = last & 0xff;
        last >>>= 8;
      }
    }
  }
}

/** Values up to this many bytes (without deadlines) live in the slab; larger ones in Entry objects. */
export const SLAB_VALUE_MAX = 1024;
const VALUE_AT = 32;
const CLASS_STEP = 16;
const CLASS_COUNT = Math.ceil((VALUE_AT + SLAB_VALUE_MAX) / CLASS_STEP);
const CHUNK_MAX_BYTES = 65536;
const OFFSET_MASK = CHUNK_MAX_BYTES - 1;
/** References stay below 2^32, so `ref >>> 16` is the chunk and `ref & 0xffff` the offset. */
const MAX_CHUNKS = 65536;
const FIRST_CHUNK_RECORDS = 8;

function classOf(length: number): number {
  return ((VALUE_AT + length + CLASS_STEP - 1) >>> 4) - 1;
}

function recordBytesOf(cls: number): number {
  return (cls + 1) * CLASS_STEP;
}

/**
 * Maple snapshot format, versions 1 to 3 read; written as version 2 (flags 0), which every
 * release since revisions reads (a rolling upgrade). All integers little-endian.
 *
 * Record order: MapleDB writes the records in hash-map order, shard by shard; a load
 * builds the ordered index in O(n) from records that come in the keys' byte order and
 * sorts them otherwise. The order is not a format change: every version's reader takes
 * any order.
 *
 * Version 3 (the release that built its index on a first list, with FLAG_LISTED) is
 * read, never written: this build keeps the index from the first write, so the flag
 * tells it nothing (tests make version 3 headers by patching a version 2 one).
 *
 *   offset  size  field
 *   0       8     magic: ASCII "DKVMAPLE"
 *   8       4     u32 format version (3)
 *   12      4     u32 flags: bit 0 (FLAG_LISTED, version 3 only) the store's ordered
 *                 index was in use (listed), for the release that built it on a list
 *                 (this one keeps it always and ignores the bit); every other bit must
 *                 be 0 (in versions 1 and 2, every bit)
 *   16      8     f64 the store's revision (versions 2 and 3)
 *   24      ...   records, then the trailer
 *
 * Entry record (tag 0x01: key is UTF-8; tag 0x02: key is UTF-16LE code units, used
 * only for keys with lone surrogates, which UTF-8 cannot carry, so every JS string key
 * round-trips exactly):
 *   1  u8  tag
 *   4  u32 key length in bytes
 *   4  u32 value length in bytes
 *   8  f64 expireAt: absolute ms, +Infinity = never
 *   8  f64 deleteAt: absolute ms, +Infinity = never
 *   8  f64 version          (versions 2 and 3; version 1 loads as 1)
 *   8  f64 createRevision   (versions 2 and 3; version 1 loads as 0)
 *   8  f64 modRevision      (versions 2 and 3; version 1 loads as 0)
 *   n  key bytes
 *   m  value bytes
 *
 * Trailer:
 *   1  u8  tag 0xFF
 *   8  u64 number of entry records
 *   4  u32 CRC-32 (IEEE) of every byte before this field, from offset 0
 *
 * Nothing may follow the trailer. Deadlines are absolute so a snapshot restored later
 * keeps the same expiry and deletion instants; f64 keeps any ms value exactly, and
 * +Infinity for "never" keeps a deadline at time 0 expressible. Revisions are whole
 * numbers below 2^53, exact in an f64.
 */
import { DkvError } from "../../errors.ts";
import type { Entry } from "./timed-entry.ts";

export const SNAPSHOT_MAGIC = new Uint8Array([0x44, 0x4b, 0x56, 0x4d, 0x41, 0x50, 0x4c, 0x45]); // "DKVMAPLE"
export const SNAPSHOT_VERSION = 3;
/** Header flag (version 3): the ordered index was in use when the snapshot was taken. */
export const FLAG_LISTED = 0x1;
/**
 * The version MapleDB writes (flags 0): version 3's flag no longer matters to this release,
 * and version 2 is read by every release since revisions, so it reaches any member during
 * a rolling upgrade.
 */
export const SNAPSHOT_VERSION_UNLISTED = 2;
/** The oldest format version this build still reads. */
export const SNAPSHOT_VERSION_MIN = 1;
export const TAG_ENTRY_UTF8 = 0x01;
export const TAG_ENTRY_UTF16 = 0x02;
export const TAG_TRAILER = 0xff;

const HEADER_BYTES = 16;
/** The store revision following the fixed header in version 2. */
const HEADER_REVISION_BYTES = 8;
/** tag + key length + value length + expireAt + deleteAt */
const RECORD_HEAD_BYTES_V1 = 25;
/** ... + version + createRevision + modRevision */
const RECORD_HEAD_BYTES = 49;
const TRAILER_COUNT_BYTES = 8;
const CRC_BYTES = 4;
/** Output chunk size: large enough to amortise sink calls, small enough to stay in cache. */
export const SNAPSHOT_CHUNK_BYTES = 64 * 1024;
/** Values at least this big go to the sink as they are instead of being copied into a chunk. */
const DIRECT_VALUE_BYTES = 16 * 1024;

/**
 * Encodes entries into 64 KiB chunks. Each chunk handed out is fresh: the sink may keep
 * it. Large values are handed out as they are (not copied); sinks must not modify them.
 * The encoder never holds more than the current chunk plus one entry's pieces.
 */
export class SnapshotEncoder {
  private chunk: Buffer;
  private view: DataView;
  private pos = 0;
  private crc = 0;
  private entryCount = 0;
  /** Finished pieces waiting for the caller to pass them to the sink. */
  private ready: Uint8Array[] = [];

  /** Writes version 2 (flags 0), which every release since revisions reads. */
  constructor(storeRevision: number) {
    this.chunk = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.byteLength);
    this.chunk.set(SNAPSHOT_MAGIC, 0);
    this.view.setUint32(8, SNAPSHOT_VERSION_UNLISTED, true);
    this.view.setUint32(12, 0, true);
    this.view.setFloat64(HEADER_BYTES, storeRevision, true);
    this.pos = HEADER_BYTES + HEADER_REVISION_BYTES;
  }

  /** True when pieces are waiting; call `takeReady()` and write them to the sink. */
  get hasReady(): boolean {
    return this.ready.length > 0;
  }

  takeReady(): Uint8Array[] {
    const pieces = this.ready;
    this.ready = [];
    return pieces;
  }

  add(key: string, entry: Entry, expireAtMs: number, deleteAtMs: number): void {
    const value = entry.value;
    const utf8 = key.isWellFormed();
    // Worst case key size; exact size is patched in after encoding.
    const keyBytesMax = utf8 ? key.length * 3 : key.length * 2;
    const headAndKeyMax = RECORD_HEAD_BYTES + keyBytesMax;
    if (headAndKeyMax > SNAPSHOT_CHUNK_BYTES - this.pos) this.flush();
    if (headAndKeyMax > SNAPSHOT_CHUNK_BYTES) {
      // A key larger than a chunk gets a buffer of its own.
      const own = Buffer.allocUnsafe(headAndKeyMax);
      const ownView = new DataView(own.buffer, own.byteOffset, own.byteLength);
      const length = writeHeadAndKey(own, ownView, 0, key, utf8);
      writeHeadNumbers(ownView, 0, entry, expireAtMs, deleteAtMs);
      this.emit(own.subarray(0, length));
    } else {
      const start = this.pos;
      this.pos = writeHeadAndKey(this.chunk, this.view, start, key, utf8);
      writeHeadNumbers(this.view, start, entry, expireAtMs, deleteAtMs);
    }
    this.addValue(value);
    this.entryCount++;
  }

  /** Writes the trailer and returns the last pieces for the sink. */
  finish(): Uint8Array[] {
    if (TRAILER_COUNT_BYTES + 1 + CRC_BYTES > SNAPSHOT_CHUNK_BYTES - this.pos) this.flush();
    this.chunk[this.pos] = TAG_TRAILER;
    this.view.setBigUint64(this.pos + 1, BigInt(this.entryCount), true);
    this.pos += 1 + TRAILER_COUNT_BYTES;
    this.crc = Bun.hash.crc32(this.chunk.subarray(0, this.pos), this.crc);
    this.view.setUint32(this.pos, this.crc, true);
    this.pos += CRC_BYTES;
    this.ready.push(this.chunk.subarray(0, this.pos));
    this.pos = 0;
    return this.takeReady();
  }

  private addValue(value: Uint8Array): void {
    const length = value.byteLength;
    if (length <= SNAPSHOT_CHUNK_BYTES - this.pos) {
      this.chunk.set(value, this.pos);
      this.pos += length;
      return;
    }
    this.flush();
    if (length >= DIRECT_VALUE_BYTES) {
      this.emit(value);
    } else {
      this.chunk.set(value, 0);
      this.pos = length;
    }
  }

  private emit(piece: Uint8Array): void {
    this.crc = Bun.hash.crc32(piece, this.crc);
    this.ready.push(piece);
  }

  private flush(): void {
    if (this.pos === 0) return;
    this.emit(this.chunk.subarray(0, this.pos));
    this.chunk = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.byteLength);
    this.pos = 0;
  }
}

/** Writes tag, key length and key at `start`; returns the position after the key. */
function writeHeadAndKey(buffer: Buffer, view: DataView, start: number, key: string, utf8: boolean): number {
  const keyStart = start + RECORD_HEAD_BYTES;
  let keyBytes: number;
  if (utf8) {
    keyBytes = buffer.write(key, keyStart, "utf8");
  } else {
    for (let i = 0; i < key.length; i++) view.setUint16(keyStart + 2 * i, key.charCodeAt(i), true);
    keyBytes = key.length * 2;
  }
  buffer[start] = utf8 ? TAG_ENTRY_UTF8 : TAG_ENTRY_UTF16;
  view.setUint32(start + 1, keyBytes, true);
  return keyStart + keyBytes;
}

function writeHeadNumbers(
  view: DataView,
  start: number,
  entry: Entry,
  expireAtMs: number,
  deleteAtMs: number,
): void {
  view.setUint32(start + 5, entry.value.byteLength, true);
  view.setFloat64(start + 9, expireAtMs, true);
  view.setFloat64(start + 17, deleteAtMs, true);
  view.setFloat64(start + 25, entry.version, true);
  view.setFloat64(start + 33, entry.createRevision, true);
  view.setFloat64(start + 41, entry.modRevision, true);
}

export interface SnapshotRevisions {
  version: number;
  createRevision: number;
  modRevision: number;
}

/** `revisions` is reused for every entry: copy its fields, do not keep it. */
export type SnapshotEntryHandler = (
  key: string,
  value: Uint8Array,
  expireAtMs: number,
  deleteAtMs: number,
  revisions: SnapshotRevisions,
) => void;

const STEP_HEADER = 0;
const STEP_HEADER_REVISION = 1;
const STEP_RECORD_HEAD = 2;
const STEP_KEY = 3;
const STEP_VALUE = 4;
const STEP_TRAILER_COUNT = 5;
const STEP_CRC = 6;
const STEP_DONE = 7;

/** Results of `fixed` besides a chunk offset. */
const NOT_YET = -1;
const IN_SCRATCH = -2;

const STEP_NAMES = [
  "the header",
  "the header's store revision",
  "a record header",
  "a key",
  "a value",
  "the trailer's entry count",
  "the trailer's checksum",
  "nothing (complete)",
];

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Incremental parser: feed chunks of any size with `push`, then call `end`. Each entry is
 * passed to `onEntry` as soon as it is complete; the caller must treat them as tentative
 * until `end` returns, because the checksum is only known at the trailer. Every
 * problem throws DkvError("CORRUPT") naming what is wrong and the byte offset.
 */
export class SnapshotDecoder {
  private readonly onEntry: SnapshotEntryHandler;
  private step = STEP_HEADER;
  /** Bytes of the input before the current chunk. */
  private base = 0;
  private crc = 0;
  private entryCount = 0;
  // A fixed-size field split across chunks is gathered here.
  private readonly scratch = new Uint8Array(64);
  private readonly scratchView = new DataView(this.scratch.buffer);
  private scratchFill = 0;
  // The record being read.
  private recordStart = 0;
  private keyIsUtf8 = true;
  private keyBytes = 0;
  private valueBytes = 0;
  private expireAtMs = 0;
  private deleteAtMs = 0;
  private readonly revisions: SnapshotRevisions = { version: 1, createRevision: 0, modRevision: 0 };
  private recordHeadBytes = RECORD_HEAD_BYTES;
  private revision = 0;
  private key = "";
  /** Pieces of a key or value that spans chunks. */
  private parts: Uint8Array[] = [];
  private partsBytes = 0;

  constructor(onEntry: SnapshotEntryHandler) {
    this.onEntry = onEntry;
  }

  push(chunk: Uint8Array): void {
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    let crcFrom = 0;
    while (pos < chunk.length) {
      switch (this.step) {
        case STEP_HEADER: {
          const at = this.fixed(chunk, pos, HEADER_BYTES);
          if (at === NOT_YET) {
            pos = chunk.length;
            break;
          }
          pos = this.fixedEnd;
          const v1 = this.checkHeader(
            at === IN_SCRATCH ? this.scratchView : view,
            at === IN_SCRATCH ? 0 : at,
          );
          this.recordHeadBytes = v1 ? RECORD_HEAD_BYTES_V1 : RECORD_HEAD_BYTES;
          this.step = v1 ? STEP_RECORD_HEAD : STEP_HEADER_REVISION;
          break;
        }
        case STEP_HEADER_REVISION: {
          const at = this.fixed(chunk, pos, HEADER_REVISION_BYTES);
          if (at === NOT_YET) {
            pos = chunk.length;
            break;
          }
          pos = this.fixedEnd;
          const revision = (at === IN_SCRATCH ? this.scratchView : view).getFloat64(
            at === IN_SCRATCH ? 0 : at,
            true,
          );
          if (!isRevision(revision))
            throw corrupt(`store revision ${revision} is not a whole number >= 0`, 16);
          this.revision = revision;
          this.step = STEP_RECORD_HEAD;
          break;
        }
        case STEP_RECORD_HEAD: {
          const recordStart = this.base + pos - this.scratchFill;
          if (this.scratchFill === 0 && chunk[pos] === TAG_TRAILER) {
            this.recordStart = recordStart;
            pos += 1;
            this.step = STEP_TRAILER_COUNT;
            break;
          }
          if (this.scratchFill === 0) this.recordStart = recordStart;
          const at = this.fixed(chunk, pos, this.recordHeadBytes);
          if (at === NOT_YET) {
            pos = chunk.length;
            break;
          }
          pos = this.fixedEnd;
          this.readRecordHead(at === IN_SCRATCH ? this.scratchView : view, at === IN_SCRATCH ? 0 : at);
          break;
        }
        case STEP_KEY: {
          const body = this.body(chunk, pos, this.keyBytes);
          pos = this.fixedEnd;
          if (body === undefined) break;
          this.key = this.decodeKey(body);
          this.step = STEP_VALUE;
          if (this.valueBytes === 0) this.finishRecord(new Uint8Array(0));
          break;
        }
        case STEP_VALUE: {
          const body = this.body(chunk, pos, this.valueBytes);
          pos = this.fixedEnd;
          if (body !== undefined) this.finishRecord(body);
          break;
        }
        case STEP_TRAILER_COUNT: {
          const at = this.fixed(chunk, pos, TRAILER_COUNT_BYTES);
          if (at === NOT_YET) {
            pos = chunk.length;
            break;
          }
          pos = this.fixedEnd;
          const source = at === IN_SCRATCH ? this.scratchView : view;
          const stored = source.getBigUint64(at === IN_SCRATCH ? 0 : at, true);
          if (stored !== BigInt(this.entryCount)) {
            throw corrupt(
              `the trailer says ${stored} entries but ${this.entryCount} were read`,
              this.base + pos - TRAILER_COUNT_BYTES,
            );
          }
          // Everything up to here is covered by the checksum.
          this.crc = Bun.hash.crc32(chunk.subarray(crcFrom, pos), this.crc);
          crcFrom = pos;
          this.step = STEP_CRC;
          break;
        }
        case STEP_CRC: {
          const at = this.fixed(chunk, pos, CRC_BYTES);
          if (at === NOT_YET) {
            pos = chunk.length;
            break;
          }
          pos = this.fixedEnd;
          const stored = (at === IN_SCRATCH ? this.scratchView : view).getUint32(
            at === IN_SCRATCH ? 0 : at,
            true,
          );
          if (stored !== this.crc) {
            throw corrupt(
              `checksum mismatch: stored 0x${hex32(stored)}, computed 0x${hex32(this.crc)}; ` +
                "the file was modified or damaged",
              this.base + pos - CRC_BYTES,
            );
          }
          this.step = STEP_DONE;
          break;
        }
        default:
          throw corrupt(`${chunk.length - pos} unexpected bytes after the trailer`, this.base + pos);
      }
    }
    if (this.step < STEP_CRC) this.crc = Bun.hash.crc32(chunk.subarray(crcFrom), this.crc);
    this.base += chunk.length;
  }

  /** Confirms the input was complete; returns the number of entries. */
  end(): number {
    if (this.step !== STEP_DONE) {
      throw corrupt(
        `the snapshot is truncated: input ended while reading ${STEP_NAMES[this.step]} ` +
          `(record starting at byte offset ${this.recordStart})`,
        this.base,
      );
    }
    return this.entryCount;
  }

  /** The store's revision recorded in the snapshot (0 for format version 1); valid after `end`. */
  get storeRevision(): number {
    return this.revision;
  }

  // Set by `fixed` and `body`: where parsing continues in the chunk.
  private fixedEnd = 0;

  /**
   * Makes `size` bytes available. Returns the chunk offset when they are all in the
   * chunk, IN_SCRATCH when they were gathered in `scratch`, NOT_YET when the chunk ran
   * out first.
   */
  private fixed(chunk: Uint8Array, pos: number, size: number): number {
    if (this.scratchFill === 0 && chunk.length - pos >= size) {
      this.fixedEnd = pos + size;
      return pos;
    }
    const take = Math.min(size - this.scratchFill, chunk.length - pos);
    this.scratch.set(chunk.subarray(pos, pos + take), this.scratchFill);
    this.scratchFill += take;
    this.fixedEnd = pos + take;
    if (this.scratchFill < size) return NOT_YET;
    this.scratchFill = 0;
    return IN_SCRATCH;
  }

  /** Collects `size` bytes of a key or value; returns them once complete (a copy). */
  private body(chunk: Uint8Array, pos: number, size: number): Uint8Array | undefined {
    if (this.partsBytes === 0 && chunk.length - pos >= size) {
      this.fixedEnd = pos + size;
      return chunk.slice(pos, pos + size);
    }
    // Bytes are only gathered as they arrive, so a corrupted huge length cannot make
    // us allocate more than the input actually holds.
    const take = Math.min(size - this.partsBytes, chunk.length - pos);
    this.parts.push(chunk.slice(pos, pos + take));
    this.partsBytes += take;
    this.fixedEnd = pos + take;
    if (this.partsBytes < size) return undefined;
    const joined = new Uint8Array(size);
    let offset = 0;
    for (const part of this.parts) {
      joined.set(part, offset);
      offset += part.length;
    }
    this.parts = [];
    this.partsBytes = 0;
    return joined;
  }

  /** Returns true for a version 1 snapshot (no revisions). */
  private checkHeader(view: DataView, at: number): boolean {
    for (let i = 0; i < SNAPSHOT_MAGIC.length; i++) {
      if (view.getUint8(at + i) !== SNAPSHOT_MAGIC[i]) {
        throw corrupt(
          `not a dkv Maple snapshot: the magic number at byte offset ${i} does not match "DKVMAPLE"`,
          i,
        );
      }
    }
    const version = view.getUint32(at + 8, true);
    if (version < SNAPSHOT_VERSION_MIN || version > SNAPSHOT_VERSION) {
      throw corrupt(
        `snapshot format version ${version} is not supported (this build reads versions ${SNAPSHOT_VERSION_MIN} to ${SNAPSHOT_VERSION}); ` +
          "use the dkv release that wrote it",
        8,
      );
    }
    const flags = view.getUint32(at + 12, true);
    const known = version >= 3 ? FLAG_LISTED : 0;
    if ((flags & ~known) !== 0) {
      throw corrupt(
        `reserved header flags are 0x${hex32(flags)}, expected 0x${hex32(flags & known)} (format version ${version})`,
        12,
      );
    }
    return version === 1;
  }

  private readRecordHead(view: DataView, at: number): void {
    const tag = view.getUint8(at);
    if (tag !== TAG_ENTRY_UTF8 && tag !== TAG_ENTRY_UTF16) {
      throw corrupt(`unknown record tag 0x${tag.toString(16).padStart(2, "0")}`, this.recordStart);
    }
    this.keyIsUtf8 = tag === TAG_ENTRY_UTF8;
    this.keyBytes = view.getUint32(at + 1, true);
    this.valueBytes = view.getUint32(at + 5, true);
    this.expireAtMs = view.getFloat64(at + 9, true);
    this.deleteAtMs = view.getFloat64(at + 17, true);
    if (!this.keyIsUtf8 && this.keyBytes % 2 !== 0) {
      throw corrupt(`UTF-16 key length ${this.keyBytes} is odd`, this.recordStart + 1);
    }
    if (!isDeadline(this.expireAtMs)) {
      throw corrupt(`expireAt ${this.expireAtMs} is not a valid deadline`, this.recordStart + 9);
    }
    if (!isDeadline(this.deleteAtMs)) {
      throw corrupt(`deleteAt ${this.deleteAtMs} is not a valid deadline`, this.recordStart + 17);
    }
    if (this.recordHeadBytes === RECORD_HEAD_BYTES) this.readRevisions(view, at);
    this.step = STEP_KEY;
    if (this.keyBytes === 0) {
      this.key = "";
      this.step = STEP_VALUE;
      if (this.valueBytes === 0) this.finishRecord(new Uint8Array(0));
    }
  }

  private readRevisions(view: DataView, at: number): void {
    const version = view.getFloat64(at + 25, true);
    const createRevision = view.getFloat64(at + 33, true);
    const modRevision = view.getFloat64(at + 41, true);
    if (!isRevision(version) || version < 1) {
      throw corrupt(`version ${version} is not a whole number >= 1`, this.recordStart + 25);
    }
    if (!isRevision(createRevision) || !isRevision(modRevision) || createRevision > modRevision) {
      throw corrupt(
        `revisions ${createRevision}..${modRevision} are not whole numbers with create <= mod`,
        this.recordStart + 33,
      );
    }
    if (modRevision > this.revision) {
      throw corrupt(
        `modRevision ${modRevision} is above the store revision ${this.revision}`,
        this.recordStart + 41,
      );
    }
    this.revisions.version = version;
    this.revisions.createRevision = createRevision;
    this.revisions.modRevision = modRevision;
  }

  private decodeKey(bytes: Uint8Array): string {
    if (!this.keyIsUtf8) return decodeUtf16le(bytes);
    try {
      return utf8Decoder.decode(bytes);
    } catch (error) {
      throw new DkvError(
        "CORRUPT",
        `snapshot is corrupt at byte offset ${this.recordStart + this.recordHeadBytes}: key is not valid UTF-8`,
        { cause: error },
      );
    }
  }

  private finishRecord(value: Uint8Array): void {
    this.onEntry(this.key, value, this.expireAtMs, this.deleteAtMs, this.revisions);
    this.entryCount++;
    this.step = STEP_RECORD_HEAD;
  }

  /** For error messages of the caller (e.g. duplicate keys). */
  get currentRecordOffset(): number {
    return this.recordStart;
  }
}

function isRevision(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function isDeadline(ms: number): boolean {
  return !Number.isNaN(ms) && ms !== Number.NEGATIVE_INFINITY;
}

function decodeUtf16le(bytes: Uint8Array): string {
  const units = new Uint16Array(bytes.length / 2);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < units.length; i++) units[i] = view.getUint16(2 * i, true);
  // In slices: spreading a huge array into one call would overflow the stack.
  let text = "";
  for (let i = 0; i < units.length; i += 4096) {
    text += String.fromCharCode(...units.subarray(i, i + 4096));
  }
  return text;
}

function hex32(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

export function corrupt(what: string, offset: number): DkvError {
  return new DkvError(
    "CORRUPT",
    `snapshot is corrupt at byte offset ${offset}: ${what}. Nothing was loaded; restore from another snapshot.`,
  );
}

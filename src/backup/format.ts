/**
 * The backup file of `dkv snapshot save`, version 1. All integers little-endian.
 *
 *   header   "DKVBAK01" | u32 version (1) | u32 flags (0) | f64 createdAtMs         (24 bytes)
 *   section  (one per replicated shard, ascending shard id)
 *     start  u8 'S' | u32 shard | u64 index | u64 term | f64 timeMs | u16 typeBytes | type
 *            | u32 CRC-32 of the start record before this field
 *     chunk  u8 'C' | u32 length (1 .. CHUNK_BYTES_MAX) | bytes       (repeated)
 *     end    u8 'E' | u64 dataBytes | u64 keys | u32 CRC-32 of the section's chunk bytes
 *   trailer  u8 'Z' | u32 sectionCount | 32 bytes SHA-256 of every byte before these 32
 *
 * A section's chunk bytes are the dstore state machine's snapshot at `index` (the Raft
 * snapshot payload a member restores), so a restore writes them as they are. The format is
 * written front to back as the data streams; sizes and checksums come after the data.
 */
import { DkvError } from "../errors.ts";

export const BACKUP_MAGIC = "DKVBAK01";
export const BACKUP_VERSION = 1;
export const HEADER_BYTES = 24;
export const TAG_SECTION = 0x53; // 'S'
export const TAG_CHUNK = 0x43; // 'C'
export const TAG_END = 0x45; // 'E'
export const TAG_TRAILER = 0x5a; // 'Z'
/** Chunks are split to at most this size when written; bounds what a reader buffers at once. */
export const CHUNK_BYTES_MAX = 1024 * 1024;
const SHA256_BYTES = 32;
/** Maple's snapshot trailer: u8 0xFF | u64 entry count | u32 CRC (see db/maple/snapshot-codec.ts). */
const MAPLE_TRAILER_BYTES = 13;
const MAPLE_TRAILER_TAG = 0xff;
const TYPE_BYTES_MAX = 64;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** One shard's consistent point in a backup. */
export interface SectionMeta {
  shard: number;
  /** The Raft index the state is at (≥ a ReadIndex taken when the save began). */
  index: number;
  term: number;
  /** The leader's time of the read: restored reads never evaluate before it. */
  timeMs: number;
  /** "dstore" or "lockmgr(dstore)". */
  type: string;
}

export interface SectionSummary extends SectionMeta {
  keys: number;
  bytes: number;
}

export interface BackupSummary {
  shards: SectionSummary[];
  sha256: string;
  createdAtMs: number;
}

export function encodeHeader(createdAtMs: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(utf8.encode(BACKUP_MAGIC), 0);
  view.setUint32(8, BACKUP_VERSION, true);
  view.setUint32(12, 0, true);
  view.setFloat64(16, createdAtMs, true);
  return bytes;
}

export function encodeSectionStart(meta: SectionMeta): Uint8Array {
  const type = utf8.encode(meta.type);
  const bytes = new Uint8Array(1 + 4 + 8 + 8 + 8 + 2 + type.length + 4);
  const view = new DataView(bytes.buffer);
  bytes[0] = TAG_SECTION;
  view.setUint32(1, meta.shard, true);
  view.setBigUint64(5, BigInt(meta.index), true);
  view.setBigUint64(13, BigInt(meta.term), true);
  view.setFloat64(21, meta.timeMs, true);
  view.setUint16(29, type.length, true);
  bytes.set(type, 31);
  const crcAt = 31 + type.length;
  view.setUint32(crcAt, Bun.hash.crc32(bytes.subarray(0, crcAt)), true);
  return bytes;
}

/** A chunk record: head and bytes in one piece (one copy of at most CHUNK_BYTES_MAX). */
export function encodeChunk(data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(5 + data.length);
  bytes[0] = TAG_CHUNK;
  new DataView(bytes.buffer).setUint32(1, data.length, true);
  bytes.set(data, 5);
  return bytes;
}

export function encodeSectionEnd(dataBytes: number, keys: number, crc: number): Uint8Array {
  const bytes = new Uint8Array(1 + 8 + 8 + 4);
  const view = new DataView(bytes.buffer);
  bytes[0] = TAG_END;
  view.setBigUint64(1, BigInt(dataBytes), true);
  view.setBigUint64(9, BigInt(keys), true);
  view.setUint32(17, crc, true);
  return bytes;
}

/** The trailer's first part (hashed); the SHA-256 digest follows it. */
export function encodeTrailerHead(sectionCount: number): Uint8Array {
  const bytes = new Uint8Array(5);
  bytes[0] = TAG_TRAILER;
  new DataView(bytes.buffer).setUint32(1, sectionCount, true);
  return bytes;
}

/**
 * Follows a section's data as it passes: its size, CRC-32 and last bytes, from which the
 * key count is read (Maple's trailer ends every state machine snapshot).
 */
export class SectionDataTracker {
  bytes = 0;
  crc = 0;
  private readonly tail = new Uint8Array(MAPLE_TRAILER_BYTES);
  private tailLength = 0;

  add(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    this.crc = Bun.hash.crc32(chunk, this.crc);
    if (chunk.length >= MAPLE_TRAILER_BYTES) {
      this.tail.set(chunk.subarray(chunk.length - MAPLE_TRAILER_BYTES));
      this.tailLength = MAPLE_TRAILER_BYTES;
      return;
    }
    const keep = Math.min(this.tailLength, MAPLE_TRAILER_BYTES - chunk.length);
    this.tail.copyWithin(0, this.tailLength - keep, this.tailLength);
    this.tail.set(chunk, keep);
    this.tailLength = keep + chunk.length;
  }

  /** Entries in the Maple snapshot that ended the data; undefined when it does not end with one. */
  keys(): number | undefined {
    if (this.tailLength < MAPLE_TRAILER_BYTES || this.tail[0] !== MAPLE_TRAILER_TAG) return undefined;
    const count = new DataView(this.tail.buffer).getBigUint64(1, true);
    return count <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(count) : undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/** Reads exact byte counts from a stream of chunks, tracking the offset and hashing as it goes. */
class StreamReader {
  offset = 0;
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private readonly iterator: AsyncIterator<Uint8Array>;
  private ended = false;
  readonly hasher = new Bun.CryptoHasher("sha256");

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly name: string,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  corrupt(offset: number, what: string): DkvError {
    return new DkvError(
      "CORRUPT",
      `${this.name}: offset ${offset}: ${what}; the backup is damaged or incomplete — use another copy or take a new one with 'dkv snapshot save'`,
    );
  }

  /** `n` bytes (a view, or a copy when they span chunks); CORRUPT naming the offset at the end of the stream. */
  async exact(n: number, what: string, hash = true): Promise<Uint8Array> {
    const start = this.offset;
    let out: Uint8Array | undefined;
    let filled = 0;
    // Bounded: each turn consumes at least one byte or pulls a new chunk; the source ends.
    while (filled < n) {
      if (this.pos >= this.chunk.length) {
        if (!(await this.pull())) {
          throw this.corrupt(
            start,
            `the file ends inside ${what} (${n} bytes expected, ${filled} there): it is truncated`,
          );
        }
        continue;
      }
      const take = Math.min(n - filled, this.chunk.length - this.pos);
      const piece = this.chunk.subarray(this.pos, this.pos + take);
      this.pos += take;
      if (out === undefined && take === n) {
        out = piece;
      } else {
        out ??= new Uint8Array(n);
        out.set(piece, filled);
      }
      filled += take;
    }
    this.offset += n;
    const bytes = out ?? new Uint8Array(0);
    if (hash) this.hasher.update(bytes);
    return bytes;
  }

  /** Ends the source early (closing its file), e.g. after an error. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.iterator.return?.();
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (!(await this.pull())) return true;
    }
    return false;
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    this.chunk = next.value;
    this.pos = 0;
    return true;
  }
}

export interface BackupVisitor {
  /**
   * Called once per section, in file order; `data` yields the section's bytes (as
   * views valid until the next one is asked for). What the visitor leaves unread is skipped.
   */
  section(meta: SectionMeta, data: AsyncIterable<Uint8Array>): Promise<void>;
}

function readU64(view: DataView, at: number): number {
  const value = view.getBigUint64(at, true);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.NaN;
}

/**
 * Reads a whole backup, checking its structure, every section's CRC and key count, and
 * the trailing SHA-256; any damage is a CORRUPT DkvError naming the offset. `name` names
 * the source in errors (the file path).
 */
export async function readBackup(
  source: AsyncIterable<Uint8Array>,
  name: string,
  visitor?: BackupVisitor,
): Promise<BackupSummary> {
  const reader = new StreamReader(source, name);
  try {
    return await readSections(reader, visitor);
  } finally {
    await reader.close();
  }
}

async function readSections(
  reader: StreamReader,
  visitor: BackupVisitor | undefined,
): Promise<BackupSummary> {
  const header = await reader.exact(HEADER_BYTES, "the header");
  const headerView = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (utf8Decoder.decode(header.subarray(0, 8)) !== BACKUP_MAGIC) {
    throw reader.corrupt(0, `not a dkv backup (no ${BACKUP_MAGIC} magic)`);
  }
  const version = headerView.getUint32(8, true);
  if (version !== BACKUP_VERSION) {
    throw reader.corrupt(
      8,
      `backup format version ${version}; this dkv reads version ${BACKUP_VERSION} (upgrade dkv)`,
    );
  }
  if (headerView.getUint32(12, true) !== 0) throw reader.corrupt(12, "unknown flags are set");
  const createdAtMs = headerView.getFloat64(16, true);
  const shards: SectionSummary[] = [];
  let lastShard = -1;
  // Bounded by the file: each section consumes at least its start record.
  for (;;) {
    const tagOffset = reader.offset;
    const tag = (await reader.exact(1, "a record tag"))[0]!;
    if (tag === TAG_TRAILER) break;
    if (tag !== TAG_SECTION) {
      throw reader.corrupt(
        tagOffset,
        `expected a section (0x53) or the trailer (0x5a), found 0x${tag.toString(16)}`,
      );
    }
    const fixed = await reader.exact(30, "a section start");
    const fixedView = new DataView(fixed.buffer, fixed.byteOffset, fixed.byteLength);
    const typeBytes = fixedView.getUint16(28, true);
    if (typeBytes > TYPE_BYTES_MAX) throw reader.corrupt(tagOffset + 29, `shard type of ${typeBytes} bytes`);
    const typeAndCrc = await reader.exact(typeBytes + 4, "a section start");
    const record = new Uint8Array(1 + 30 + typeBytes);
    record[0] = tag;
    record.set(fixed, 1);
    record.set(typeAndCrc.subarray(0, typeBytes), 31);
    const crcView = new DataView(typeAndCrc.buffer, typeAndCrc.byteOffset, typeAndCrc.byteLength);
    if (Bun.hash.crc32(record) !== crcView.getUint32(typeBytes, true)) {
      throw reader.corrupt(tagOffset, "the section start's checksum does not match");
    }
    const meta: SectionMeta = {
      shard: fixedView.getUint32(0, true),
      index: readU64(fixedView, 4),
      term: readU64(fixedView, 12),
      timeMs: fixedView.getFloat64(20, true),
      type: utf8Decoder.decode(typeAndCrc.subarray(0, typeBytes)),
    };
    if (!Number.isSafeInteger(meta.index) || !Number.isSafeInteger(meta.term) || meta.shard <= lastShard) {
      throw reader.corrupt(tagOffset, "the section start holds impossible values");
    }
    lastShard = meta.shard;
    const tracker = new SectionDataTracker();
    let endOffset = -1;
    let sectionDone = false;
    const data = async function* (): AsyncGenerator<Uint8Array> {
      // Bounded by the file: each record consumes at least 5 bytes.
      for (;;) {
        const recordOffset = reader.offset;
        const recordTag = (await reader.exact(1, "a chunk or section end"))[0]!;
        if (recordTag === TAG_END) {
          endOffset = recordOffset;
          return;
        }
        if (recordTag !== TAG_CHUNK) {
          throw reader.corrupt(
            recordOffset,
            `expected a chunk (0x43) or the section end (0x45), found 0x${recordTag.toString(16)}`,
          );
        }
        const lengthBytes = await reader.exact(4, "a chunk length");
        const length = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 4).getUint32(0, true);
        if (length === 0 || length > CHUNK_BYTES_MAX) {
          throw reader.corrupt(recordOffset + 1, `chunk length ${length} is outside 1..${CHUNK_BYTES_MAX}`);
        }
        const chunk = await reader.exact(length, "a chunk");
        tracker.add(chunk);
        yield chunk;
      }
    };
    const drain = async (iterable: AsyncIterable<Uint8Array>) => {
      for await (const _ of iterable) {
        // skipping what the visitor did not read
      }
      sectionDone = true;
    };
    const sectionData = data();
    if (visitor !== undefined) await visitor.section(meta, sectionData);
    await drain(sectionData);
    if (!sectionDone || endOffset < 0) throw reader.corrupt(reader.offset, "the section has no end record");
    const end = await reader.exact(20, "a section end");
    const endView = new DataView(end.buffer, end.byteOffset, end.byteLength);
    const dataBytes = readU64(endView, 0);
    const keys = readU64(endView, 8);
    if (dataBytes !== tracker.bytes) {
      throw reader.corrupt(
        endOffset,
        `shard ${meta.shard}: the end says ${dataBytes} data bytes, the section holds ${tracker.bytes}`,
      );
    }
    if (endView.getUint32(16, true) !== tracker.crc) {
      throw reader.corrupt(
        endOffset,
        `shard ${meta.shard}: the data checksum does not match (a chunk before this offset is damaged)`,
      );
    }
    if (tracker.keys() !== keys) {
      throw reader.corrupt(
        endOffset,
        `shard ${meta.shard}: the end says ${keys} keys, the data's own trailer disagrees`,
      );
    }
    shards.push({ ...meta, keys, bytes: dataBytes });
  }
  const countOffset = reader.offset;
  const countBytes = await reader.exact(4, "the trailer");
  const count = new DataView(countBytes.buffer, countBytes.byteOffset, 4).getUint32(0, true);
  if (count !== shards.length) {
    throw reader.corrupt(countOffset, `the trailer says ${count} sections, the file holds ${shards.length}`);
  }
  const expected = reader.hasher.digest("hex");
  const digestOffset = reader.offset;
  const digest = Buffer.from(await reader.exact(SHA256_BYTES, "the trailer's SHA-256", false)).toString(
    "hex",
  );
  if (digest !== expected)
    throw reader.corrupt(digestOffset, "the SHA-256 of the file does not match its trailer");
  if (!(await reader.atEnd())) throw reader.corrupt(reader.offset, "bytes follow the trailer");
  return { shards, sha256: digest, createdAtMs };
}

/** The `--json` shape of `dkv snapshot save|status`. */
export function summaryJson(summary: BackupSummary): {
  ok: true;
  shards: { shard: number; index: number; keys: number; bytes: number }[];
  sha256: string;
} {
  return {
    ok: true,
    shards: summary.shards.map((s) => ({ shard: s.shard, index: s.index, keys: s.keys, bytes: s.bytes })),
    sha256: summary.sha256,
  };
}

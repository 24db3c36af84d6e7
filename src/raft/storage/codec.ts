import type { Entry, EntryKind, HardState } from "../core/types.ts";

/**
 * Byte layout of the write-ahead log (little-endian throughout; see README.md here).
 *
 * Segment = 16-byte header, then frames. A frame is one group-commit batch:
 *   u32 payloadBytes | u32 crc | payload | zero padding to a multiple of 8
 * The crc covers the payload and is seeded with the frame's segment sequence and file
 * offset, so a frame copied elsewhere (say, inside an entry's data) never validates.
 * A payload is a run of records, each starting with a one-byte tag.
 */

export const SEGMENT_MAGIC = "DKVWAL01";
export const SEGMENT_HEADER_BYTES = 16;
export const SEGMENT_FORMAT_VERSION = 1;
export const FRAME_HEADER_BYTES = 8;
/** A frame larger than this is damage, not data: the writer never builds one (see PENDING_BYTES_MAX). */
export const FRAME_PAYLOAD_BYTES_MAX = 1024 * 1024 * 1024;
/** Bytes that may wait for the next write; an append beyond it is refused, not queued. */
export const PENDING_BYTES_MAX = 256 * 1024 * 1024;
/** Encoded size of an entry record without its data. */
export const ENTRY_RECORD_OVERHEAD_BYTES = 32;

export const RecordTag = { Entry: 1, HardState: 2, SnapshotMarker: 3, Group: 4 } as const;

/** Segments of the one shared log per process (shared-log.ts): same frames, group-tagged records. */
export const SHARED_SEGMENT_MAGIC = "DKVLOG01";

/** Entry: tag u8 | kind u8 | u16 0 | u32 dataBytes | u64 index | u64 term | u64 timeMs | data */
const ENTRY_HEADER_BYTES = ENTRY_RECORD_OVERHEAD_BYTES;
/** HardState: tag u8 | hasVote u8 | u16 voteBytes | u32 0 | u64 term | u64 commit | vote (utf-8) */
const HARD_STATE_HEADER_BYTES = 24;
/** SnapshotMarker: tag u8 | 7 bytes 0 | u64 index | u64 term */
const SNAPSHOT_MARKER_BYTES = 24;
/** Group (shared log only): tag u8 | 3 bytes 0 | u32 groupId — the records after it, up to the next one, are that group's. */
const GROUP_RECORD_BYTES = 8;
const VOTE_BYTES_MAX = 0xffff;
const TWO_POW_32 = 0x1_0000_0000;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export function align8(n: number): number {
  return (n + 7) & ~7;
}

export function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value >>> 0, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_POW_32), true);
}

/** Returns -1 when the value is not a safe integer (only damage produces that). */
export function readU64(view: DataView, offset: number): number {
  const hi = view.getUint32(offset + 4, true);
  if (hi >= 0x20_0000) return -1;
  return hi * TWO_POW_32 + view.getUint32(offset, true);
}

const seedScratch = new DataView(new ArrayBuffer(8));

/** The crc seed that binds a frame to its place: segment sequence and file offset. */
export function frameCrcSeed(segmentSeq: number, offset: number): number {
  seedScratch.setUint32(0, segmentSeq >>> 0, true);
  seedScratch.setUint32(4, offset >>> 0, true);
  return Bun.hash.crc32(seedScratch);
}

export function encodeSegmentHeader(magic: string = SEGMENT_MAGIC): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_HEADER_BYTES);
  bytes.set(textEncoder.encode(magic), 0);
  const view = new DataView(bytes.buffer);
  view.setUint32(8, SEGMENT_FORMAT_VERSION, true);
  view.setUint32(12, Bun.hash.crc32(bytes.subarray(0, 12)), true);
  return bytes;
}

export function isValidSegmentHeader(bytes: Uint8Array, magic: string = SEGMENT_MAGIC): boolean {
  if (bytes.length < SEGMENT_HEADER_BYTES) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, SEGMENT_HEADER_BYTES);
  if (view.getUint32(12, true) !== Bun.hash.crc32(bytes.subarray(0, 12))) return false;
  return (
    textDecoder.decode(bytes.subarray(0, 8)) === magic && view.getUint32(8, true) === SEGMENT_FORMAT_VERSION
  );
}

/**
 * A reusable buffer that accumulates the records of one frame. Space for the frame
 * header is reserved up front so `seal` can fill it in without copying.
 */
export class FrameBuffer {
  private bytes: Uint8Array;
  private view: DataView;
  private length = FRAME_HEADER_BYTES;
  /** Records in the frame, for stats and tests. */
  recordCount = 0;
  /** Index of the first entry record, 0 if none (names a segment rolled for this frame). */
  firstEntryIndex = 0;
  /** Index of the last entry record, 0 if none. */
  lastEntryIndex = 0;
  /** Highest entry index in the frame, 0 if none (decides when a segment may be deleted). */
  maxEntryIndex = 0;
  /** The last hard state in the frame, if any: what a rolled segment must repeat. */
  lastHardState: HardState | null = null;
  /** Shared log only: the group the records being added belong to (-1: none selected yet in this frame). */
  private currentGroup = -1;
  /** Shared log only: highest entry index per group in this frame. */
  readonly groupMaxEntryIndex = new Map<number, number>();
  /** Shared log only: the last hard state per group in this frame. */
  readonly groupHardStates = new Map<number, HardState>();

  constructor(initialBytes = 64 * 1024) {
    this.bytes = new Uint8Array(initialBytes);
    this.view = new DataView(this.bytes.buffer);
  }

  get isEmpty(): boolean {
    return this.recordCount === 0;
  }

  get payloadBytes(): number {
    return this.length - FRAME_HEADER_BYTES;
  }

  /** Bytes the sealed frame will take on disk, padding included. */
  get frameBytes(): number {
    return align8(this.length);
  }

  /** Capacity held, so an owner can drop a buffer that one huge batch blew up. */
  get capacityBytes(): number {
    return this.bytes.length;
  }

  reset(): void {
    this.length = FRAME_HEADER_BYTES;
    this.recordCount = 0;
    this.firstEntryIndex = 0;
    this.lastEntryIndex = 0;
    this.maxEntryIndex = 0;
    this.lastHardState = null;
    this.currentGroup = -1;
    this.groupMaxEntryIndex.clear();
    this.groupHardStates.clear();
  }

  /**
   * Shared log only: the records added next belong to `groupId`. Writes a Group record
   * when the group changes, so a run of one group's records costs one 8-byte tag.
   */
  selectGroup(groupId: number): void {
    if (groupId === this.currentGroup) return;
    const at = this.reserve(GROUP_RECORD_BYTES);
    this.view.setUint32(at, 0, true);
    this.view.setUint8(at, RecordTag.Group);
    this.view.setUint32(at + 4, groupId, true);
    this.currentGroup = groupId;
  }

  private reserve(extraBytes: number): number {
    const needed = this.length + extraBytes + 8; // + worst-case padding at seal
    if (needed > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < needed) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += extraBytes;
    this.recordCount++;
    return at;
  }

  addEntry(entry: Entry): void {
    const data = entry.data;
    const at = this.reserve(ENTRY_HEADER_BYTES + data.byteLength);
    const view = this.view;
    view.setUint8(at, RecordTag.Entry);
    view.setUint8(at + 1, entry.kind);
    view.setUint16(at + 2, 0, true);
    view.setUint32(at + 4, data.byteLength, true);
    writeU64(view, at + 8, entry.index);
    writeU64(view, at + 16, entry.term);
    writeU64(view, at + 24, entry.timeMs);
    this.bytes.set(data, at + ENTRY_HEADER_BYTES);
    if (this.firstEntryIndex === 0) this.firstEntryIndex = entry.index;
    this.lastEntryIndex = entry.index;
    if (entry.index > this.maxEntryIndex) this.maxEntryIndex = entry.index;
    if (this.currentGroup >= 0) {
      const max = this.groupMaxEntryIndex.get(this.currentGroup) ?? 0;
      if (entry.index > max) this.groupMaxEntryIndex.set(this.currentGroup, entry.index);
    }
  }

  addHardState(hardState: HardState): void {
    const vote = hardState.vote === null ? null : textEncoder.encode(hardState.vote);
    if (vote !== null && vote.byteLength > VOTE_BYTES_MAX) {
      throw new RangeError(`vote id is ${vote.byteLength} bytes; node ids must be under 64 KiB`);
    }
    const voteBytes = vote?.byteLength ?? 0;
    const at = this.reserve(HARD_STATE_HEADER_BYTES + voteBytes);
    const view = this.view;
    view.setUint8(at, RecordTag.HardState);
    view.setUint8(at + 1, vote === null ? 0 : 1);
    view.setUint16(at + 2, voteBytes, true);
    view.setUint32(at + 4, 0, true);
    writeU64(view, at + 8, hardState.term);
    writeU64(view, at + 16, hardState.commit);
    if (vote !== null) this.bytes.set(vote, at + HARD_STATE_HEADER_BYTES);
    this.lastHardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
    if (this.currentGroup >= 0) this.groupHardStates.set(this.currentGroup, this.lastHardState);
  }

  addSnapshotMarker(index: number, term: number): void {
    const at = this.reserve(SNAPSHOT_MARKER_BYTES);
    this.bytes.fill(0, at, at + 8);
    this.view.setUint8(at, RecordTag.SnapshotMarker);
    writeU64(this.view, at + 8, index);
    writeU64(this.view, at + 16, term);
  }

  /** Fills in the frame header and padding for a frame at `offset`; returns the bytes to write. */
  seal(segmentSeq: number, offset: number): Uint8Array {
    const payloadBytes = this.length - FRAME_HEADER_BYTES;
    const frameBytes = align8(this.length);
    this.bytes.fill(0, this.length, frameBytes);
    const crc = Bun.hash.crc32(
      this.bytes.subarray(FRAME_HEADER_BYTES, this.length),
      frameCrcSeed(segmentSeq, offset),
    );
    this.view.setUint32(0, payloadBytes, true);
    this.view.setUint32(4, crc, true);
    return this.bytes.subarray(0, frameBytes);
  }
}

export type WalRecord =
  | { tag: typeof RecordTag.Entry; entry: Entry }
  | { tag: typeof RecordTag.HardState; hardState: HardState }
  | { tag: typeof RecordTag.SnapshotMarker; index: number; term: number }
  | { tag: typeof RecordTag.Group; groupId: number };

/** Where a frame ends, or why the bytes at `offset` are not a whole, valid frame. */
export type FrameCheck =
  | { ok: true; payloadBytes: number; nextOffset: number }
  | { ok: false; reason: string };

export function checkFrame(segment: Uint8Array, segmentSeq: number, offset: number): FrameCheck {
  const remaining = segment.length - offset;
  if (remaining < FRAME_HEADER_BYTES)
    return { ok: false, reason: `partial frame header (${remaining} bytes)` };
  const view = new DataView(segment.buffer, segment.byteOffset + offset, FRAME_HEADER_BYTES);
  const payloadBytes = view.getUint32(0, true);
  if (payloadBytes === 0 || payloadBytes > FRAME_PAYLOAD_BYTES_MAX) {
    return { ok: false, reason: `implausible frame length ${payloadBytes}` };
  }
  const nextOffset = offset + align8(FRAME_HEADER_BYTES + payloadBytes);
  if (nextOffset > segment.length) {
    return { ok: false, reason: `frame of ${payloadBytes} bytes runs past the end of the file` };
  }
  const payloadStart = offset + FRAME_HEADER_BYTES;
  const tag = segment[payloadStart];
  if (
    tag !== RecordTag.Entry &&
    tag !== RecordTag.HardState &&
    tag !== RecordTag.SnapshotMarker &&
    tag !== RecordTag.Group
  ) {
    return { ok: false, reason: `unknown record tag ${tag}` };
  }
  const crc = Bun.hash.crc32(
    segment.subarray(payloadStart, payloadStart + payloadBytes),
    frameCrcSeed(segmentSeq, offset),
  );
  if (crc !== view.getUint32(4, true)) return { ok: false, reason: "checksum mismatch" };
  return { ok: true, payloadBytes, nextOffset };
}

/**
 * Decodes the records of a frame whose checksum already passed. Entry data is copied so
 * the segment's buffer can be dropped after replay. Returns an error string on a
 * malformed payload (a valid checksum over bad structure means a writer bug).
 */
export function decodeFramePayload(payload: Uint8Array, out: WalRecord[]): string | null {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  // Each record is at least 8 bytes, which bounds the loop.
  while (at < payload.length) {
    const tag = payload[at];
    if (tag === RecordTag.Entry) {
      if (at + ENTRY_HEADER_BYTES > payload.length) return `entry record header cut at payload byte ${at}`;
      const dataBytes = view.getUint32(at + 4, true);
      const end = at + ENTRY_HEADER_BYTES + dataBytes;
      if (end > payload.length) return `entry data runs past the frame at payload byte ${at}`;
      const index = readU64(view, at + 8);
      const term = readU64(view, at + 16);
      const timeMs = readU64(view, at + 24);
      if (index < 1 || term < 0 || timeMs < 0)
        return `entry with invalid index/term/time at payload byte ${at}`;
      const kind = view.getUint8(at + 1) as EntryKind;
      const data = payload.slice(at + ENTRY_HEADER_BYTES, end);
      out.push({ tag, entry: { term, index, kind, timeMs, data } });
      at = end;
    } else if (tag === RecordTag.HardState) {
      if (at + HARD_STATE_HEADER_BYTES > payload.length) return `hard state record cut at payload byte ${at}`;
      const hasVote = view.getUint8(at + 1) === 1;
      const voteBytes = view.getUint16(at + 2, true);
      const end = at + HARD_STATE_HEADER_BYTES + voteBytes;
      if (end > payload.length) return `hard state vote runs past the frame at payload byte ${at}`;
      const term = readU64(view, at + 8);
      const commit = readU64(view, at + 16);
      if (term < 0 || commit < 0) return `hard state with invalid term/commit at payload byte ${at}`;
      let vote: string | null = null;
      if (hasVote) {
        try {
          vote = textDecoder.decode(payload.subarray(at + HARD_STATE_HEADER_BYTES, end));
        } catch {
          return `hard state vote is not UTF-8 at payload byte ${at}`;
        }
      }
      out.push({ tag, hardState: { term, vote, commit } });
      at = end;
    } else if (tag === RecordTag.SnapshotMarker) {
      if (at + SNAPSHOT_MARKER_BYTES > payload.length) return `snapshot marker cut at payload byte ${at}`;
      const index = readU64(view, at + 8);
      const term = readU64(view, at + 16);
      if (index < 0 || term < 0) return `snapshot marker with invalid index/term at payload byte ${at}`;
      out.push({ tag, index, term });
      at += SNAPSHOT_MARKER_BYTES;
    } else if (tag === RecordTag.Group) {
      if (at + GROUP_RECORD_BYTES > payload.length) return `group record cut at payload byte ${at}`;
      out.push({ tag, groupId: view.getUint32(at + 4, true) });
      at += GROUP_RECORD_BYTES;
    } else {
      return `unknown record tag ${tag} at payload byte ${at}`;
    }
  }
  return null;
}

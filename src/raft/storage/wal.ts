import type { FileHandle } from "node:fs/promises";
import { open, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import type { HardState } from "../core/types.ts";
import {
  checkFrame,
  decodeFramePayload,
  encodeSegmentHeader,
  FRAME_HEADER_BYTES,
  FrameBuffer,
  isValidSegmentHeader,
  RecordTag,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  type WalRecord,
} from "./codec.ts";
import { FsyncFailedError, fsyncDir, type SyncCounter, syncHandle, writeFully } from "./fs-util.ts";
import { GroupCommit } from "./group-commit.ts";
import type { StorageLogger } from "./snapshot-store.ts";
import { testFaults } from "./test-faults.ts";

/** One segment file: `wal/<seq:20>-<firstIndex:20>.seg`. */
export interface WalSegment {
  /** Increases by one per roll; replay order and the crc seed of every frame. */
  seq: number;
  /** The first entry index this segment was opened for (a name for humans; truncation may go lower). */
  firstIndex: number;
  path: string;
  sizeBytes: number;
  /** Highest entry index written in the segment, 0 if none: compaction deletes it once this is covered. */
  maxEntryIndex: number;
}

const SEGMENT_PATTERN = /^(\d{20})-(\d{20})\.seg$/;

function pad20(n: number): string {
  return n.toString().padStart(20, "0");
}

export function segmentFileName(seq: number, firstIndex: number): string {
  return `${pad20(seq)}-${pad20(firstIndex)}.seg`;
}

export function walCorruption(path: string, offset: number, what: string): DkvError {
  return new DkvError(
    "CORRUPT",
    `${path} offset ${offset}: ${what} — restore this member from a snapshot or remove its data dir to rejoin`,
  );
}

/**
 * Receives every record in log order; throws (a walCorruption) if the log does not make
 * sense. `offset` is the record's frame: it changes exactly when a new frame starts.
 */
export type WalRecordVisitor = (record: WalRecord, path: string, offset: number, segment: WalSegment) => void;

/** How a kind of log names and marks its segment files: the per-group WAL or the shared log. */
export interface SegmentFormat {
  /** Group 1: the sequence number; group 2 (optional): the first index. */
  pattern: RegExp;
  magic: string;
}

export const GROUP_WAL_FORMAT: SegmentFormat = { pattern: SEGMENT_PATTERN, magic: SEGMENT_MAGIC };

export async function listSegments(
  walDir: string,
  format: SegmentFormat = GROUP_WAL_FORMAT,
): Promise<WalSegment[]> {
  const segments: WalSegment[] = [];
  for (const name of await readdir(walDir)) {
    const match = format.pattern.exec(name);
    if (match === null) continue;
    segments.push({
      seq: Number(match[1]),
      firstIndex: Number(match[2] ?? 0),
      path: join(walDir, name),
      sizeBytes: 0,
      maxEntryIndex: 0,
    });
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segments.length; i++) {
    const previous = segments[i - 1]!;
    const segment = segments[i]!;
    if (segment.seq !== previous.seq + 1) {
      throw walCorruption(segment.path, 0, `segment sequence jumps from ${previous.seq} to ${segment.seq}`);
    }
  }
  return segments;
}

/** The first offset after `from` where a whole valid frame starts, or -1. Frames are 8-aligned. */
function findValidFrame(bytes: Uint8Array, seq: number, from: number): number {
  // One candidate per 8 bytes: bounded by the file size.
  for (let offset = from; offset + FRAME_HEADER_BYTES <= bytes.length; offset += 8) {
    if (checkFrame(bytes, seq, offset).ok) return offset;
  }
  return -1;
}

/** Whether every byte from `from` to the end is zero (a frame header never is: its length is >= 1). */
export function isZeroFrom(bytes: Uint8Array, from: number): boolean {
  // Bounded by the file size.
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Reads every segment in order and hands each record to `visit`. Damage in the last
 * segment with nothing valid after it is a torn write from a crash (never acknowledged,
 * since acknowledgement waits for fsync): it is cut off with a warning. Zeros from a
 * frame boundary to the end of the last segment are space written ahead (shared-log.ts,
 * "Preallocation"): the log ends there, quietly, and the zeros stay. Any other damage
 * throws a CORRUPT error naming file and offset. Returns the surviving segments; each
 * one's sizeBytes is where its log ends, not its file size.
 */
export async function replayWal(
  walDir: string,
  logger: StorageLogger,
  counter: SyncCounter,
  visit: WalRecordVisitor,
  format: SegmentFormat = GROUP_WAL_FORMAT,
): Promise<WalSegment[]> {
  const segments = await listSegments(walDir, format);
  const records: WalRecord[] = [];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const isLast = i === segments.length - 1;
    const bytes = new Uint8Array(await readFile(segment.path));
    let validFrames = 0;
    let offset = SEGMENT_HEADER_BYTES;
    if (!isValidSegmentHeader(bytes, format.magic)) {
      const tornHeader = isLast && findValidFrame(bytes, segment.seq, SEGMENT_HEADER_BYTES) < 0;
      if (!tornHeader) throw walCorruption(segment.path, 0, "bad segment header");
      offset = bytes.length; // nothing to read; the empty-segment rule below removes it
    }
    // Each pass moves `offset` forward by at least 8 bytes.
    while (offset < bytes.length) {
      const frame = checkFrame(bytes, segment.seq, offset);
      if (!frame.ok) {
        // Space the shared log wrote ahead (zeros, fsynced) that no frame has used yet:
        // the clean end of the last segment, kept so the writer continues in place.
        if (isLast && isZeroFrom(bytes, offset)) break;
        const validAfter = findValidFrame(bytes, segment.seq, offset + 8);
        if (!isLast || validAfter >= 0) {
          const followed = validAfter >= 0 ? `, followed by valid data at offset ${validAfter}` : "";
          throw walCorruption(segment.path, offset, `${frame.reason}${followed}`);
        }
        logger.warn(
          `${segment.path} offset ${offset}: torn write at the end of the log (${frame.reason}); ` +
            `cutting ${bytes.length - offset} bytes that were never acknowledged`,
        );
        await truncateFile(segment.path, offset, counter);
        break;
      }
      const payload = bytes.subarray(
        offset + FRAME_HEADER_BYTES,
        offset + FRAME_HEADER_BYTES + frame.payloadBytes,
      );
      records.length = 0;
      const malformed = decodeFramePayload(payload, records);
      if (malformed !== null) throw walCorruption(segment.path, offset, `malformed frame: ${malformed}`);
      for (const record of records) {
        if (record.tag === RecordTag.Entry && record.entry.index > segment.maxEntryIndex)
          segment.maxEntryIndex = record.entry.index;
        visit(record, segment.path, offset, segment);
      }
      validFrames++;
      offset = frame.nextOffset;
    }
    segment.sizeBytes = Math.min(offset, bytes.length);
    if (isLast && validFrames === 0) {
      // A roll that crashed before its first frame was durable: the previous segment is
      // still complete and current, so this file is dropped rather than left without the
      // hard state every segment is meant to start with.
      logger.warn(`${segment.path}: removing a segment left empty by a crash while it was being created`);
      await unlink(segment.path);
      await fsyncDir(walDir, counter);
      segments.pop();
    }
  }
  return segments;
}

export async function truncateFile(path: string, sizeBytes: number, counter: SyncCounter): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.truncate(sizeBytes);
    await syncHandle(handle, path, "all", counter);
  } finally {
    await handle.close();
  }
}

export interface WalWriterOptions {
  segmentBytesMax: number;
}

export interface WalWriterStats {
  /** write+fsync rounds; each makes every append queued before it durable. */
  batches: number;
  bytesWritten: number;
}

/**
 * Appends frames to the active segment with group commit: callers encode records into
 * `frame()` and await `commit()`. While one write+fsync is running, everything committed
 * meanwhile accumulates in the other buffer and goes out in the next single write+fsync.
 * A failed write or fsync poisons the writer: the page cache state is unknown after a
 * failed fsync, so retrying could acknowledge data that is not on disk.
 */
export class WalWriter {
  private readonly queue = new GroupCommit({
    writeBatch: (batch) => this.writeBatch(batch),
    failureOf: (error) => this.failureOf(error),
  });
  private closed = false;
  /** Size of the active segment right after its roll frame; a segment is never rolled before holding a batch. */
  private activeStartBytes: number;
  private lastEntryIndex = 0;
  readonly stats: WalWriterStats = { batches: 0, bytesWritten: 0 };

  private constructor(
    private readonly walDir: string,
    private readonly segments: WalSegment[],
    private active: WalSegment,
    private handle: FileHandle,
    /** The hard state as of the last durable frame: every new segment starts with it. */
    private durableHardState: HardState,
    private readonly counter: SyncCounter,
    private readonly options: WalWriterOptions,
  ) {
    this.activeStartBytes = active.sizeBytes;
  }

  /**
   * Continues the last surviving segment, or creates the first one (named `nextIndex`).
   * `segments` is shared: the writer appends to it when it rolls.
   */
  static async open(
    walDir: string,
    segments: WalSegment[],
    durableHardState: HardState,
    nextIndex: number,
    counter: SyncCounter,
    options: WalWriterOptions,
  ): Promise<WalWriter> {
    const last = segments[segments.length - 1];
    if (last !== undefined) {
      const handle = await open(last.path, "r+");
      const writer = new WalWriter(walDir, segments, last, handle, durableHardState, counter, options);
      writer.lastEntryIndex = nextIndex - 1;
      return writer;
    }
    const { segment, handle } = await createSegment(walDir, 1, nextIndex, durableHardState, counter);
    segments.push(segment);
    const writer = new WalWriter(walDir, segments, segment, handle, durableHardState, counter, options);
    writer.lastEntryIndex = nextIndex - 1;
    return writer;
  }

  /** Throws if the writer can no longer accept records. Call before encoding into `frame()`. */
  assertWritable(): void {
    if (this.queue.failure !== null) throw this.queue.failure;
    if (this.closed) throw new DkvError("CLOSED", `the WAL in ${this.walDir} is closed — reopen the storage`);
  }

  /** The frame collecting records for the next write. Encode and `commit()` in the same tick. */
  frame(): FrameBuffer {
    return this.queue.pending;
  }

  /** Resolves once every record encoded so far is durable. */
  commit(): Promise<void> {
    return this.queue.commit();
  }

  commitLater(): void {
    this.queue.commitLater();
  }

  /** Resolves once everything committed so far is durable, without writing anything itself. */
  durable(): Promise<void> {
    return this.queue.durable();
  }

  /** Bytes already queued for the next write (bounds what an append may add). */
  get pendingPayloadBytes(): number {
    return this.queue.pending.payloadBytes;
  }

  get activeSegment(): WalSegment {
    return this.active;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  private async writeBatch(batch: FrameBuffer): Promise<void> {
    // Test builds only (see test-faults.ts): the batch sits in memory as if in a volatile cache.
    if (testFaults.ackBeforeFsync) await Bun.sleep(testFaults.ackBeforeFsyncHoldMs);
    const frameBytes = batch.frameBytes;
    if (
      this.active.sizeBytes > this.activeStartBytes &&
      this.active.sizeBytes + frameBytes > this.options.segmentBytesMax
    ) {
      await this.roll(batch.firstEntryIndex || this.lastEntryIndex + 1);
    }
    const segment = this.active;
    const bytes = batch.seal(segment.seq, segment.sizeBytes);
    await writeFully(this.handle, bytes, segment.sizeBytes);
    // datasync also persists the file size, which is all the metadata an append changes.
    await syncHandle(this.handle, segment.path, "data", this.counter);
    segment.sizeBytes += bytes.length;
    if (batch.maxEntryIndex > segment.maxEntryIndex) segment.maxEntryIndex = batch.maxEntryIndex;
    if (batch.lastEntryIndex !== 0) this.lastEntryIndex = batch.lastEntryIndex;
    if (batch.lastHardState !== null) this.durableHardState = batch.lastHardState;
    this.stats.batches++;
    this.stats.bytesWritten += bytes.length;
  }

  private async roll(firstIndex: number): Promise<void> {
    const { segment, handle } = await createSegment(
      this.walDir,
      this.active.seq + 1,
      firstIndex,
      this.durableHardState,
      this.counter,
    );
    await this.handle.close();
    this.handle = handle;
    this.active = segment;
    this.activeStartBytes = segment.sizeBytes;
    this.segments.push(segment);
    this.stats.bytesWritten += segment.sizeBytes;
  }

  private failureOf(error: unknown): DkvError {
    const reason = error instanceof Error ? error.message : String(error);
    // A failed fsync stays an FsyncFailedError: the runtime must end the process on it.
    return error instanceof FsyncFailedError
      ? error
      : new DkvError(
          "INTERNAL",
          `${this.active.path} offset ${this.active.sizeBytes}: WAL write failed (${reason}) — ` +
            "restart this member; recovery keeps everything that was acknowledged",
          { cause: error, outcome: "unknown" },
        );
  }

  /**
   * Deletes whole segments, oldest first, whose entries are all at or below `index`.
   * The active segment is never deleted; it always holds the latest hard state.
   */
  async removeSegmentsThrough(index: number): Promise<number> {
    let count = 0;
    while (count < this.segments.length - 1) {
      const segment = this.segments[count]!;
      if (segment === this.active || segment.maxEntryIndex > index) break;
      count++;
    }
    if (count === 0) return 0;
    const doomed = this.segments.splice(0, count);
    for (const segment of doomed) await unlink(segment.path);
    await fsyncDir(this.walDir, this.counter);
    return count;
  }

  /** Waits for queued writes, then closes the file. Later appends fail with CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.idle();
    await this.handle.close();
  }
}

/** A new segment: header plus a frame with the current hard state, fsynced with its directory entry. */
async function createSegment(
  walDir: string,
  seq: number,
  firstIndex: number,
  hardState: HardState,
  counter: SyncCounter,
): Promise<{ segment: WalSegment; handle: FileHandle }> {
  const path = join(walDir, segmentFileName(seq, firstIndex));
  const handle = await open(path, "wx+");
  try {
    const header = encodeSegmentHeader();
    const frame = new FrameBuffer(256);
    frame.addHardState(hardState);
    const frameBytes = frame.seal(seq, SEGMENT_HEADER_BYTES);
    const bytes = new Uint8Array(header.length + frameBytes.length);
    bytes.set(header, 0);
    bytes.set(frameBytes, header.length);
    await writeFully(handle, bytes, 0);
    await syncHandle(handle, path, "all", counter);
    await fsyncDir(walDir, counter);
    return { segment: { seq, firstIndex, path, sizeBytes: bytes.length, maxEntryIndex: 0 }, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

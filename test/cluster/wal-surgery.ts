import { readdir, readFile, truncate } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  checkFrame,
  decodeFramePayload,
  FRAME_HEADER_BYTES,
  RecordTag,
  SEGMENT_HEADER_BYTES,
  type WalRecord,
} from "../../src/raft/storage/codec.ts";
import { isZeroFrom } from "../../src/raft/storage/wal.ts";

/**
 * Damage to a stopped member's write-ahead log for the cluster tests, done with the
 * storage's own frame checks (src/raft/storage/shared-log.ts has the layout): the shared
 * log's segments `raft-log/<seq:20>.log`, a 16-byte header, then 8-aligned frames
 * `u32 payloadBytes | u32 crc | payload | pad`, one per group-commit batch, whose records
 * are tagged with their group; the newest segment may end in zeros written ahead.
 */

export interface TornEntryFrame {
  /** The segment cut. */
  segmentPath: string;
  /** The entries of the torn frame, all lost: [lostFromIndex, lostToIndex]. */
  lostFromIndex: number;
  lostToIndex: number;
  /** File size after the cut. */
  sizeBytes: number;
}

/** The shared log of a member's data dir. */
export function sharedLogDir(dataDir: string): string {
  return join(dataDir, "raft-log");
}

async function newestSegment(walDir: string): Promise<string> {
  const segments = (await readdir(walDir)).filter((name) => name.endsWith(".log")).sort();
  const newest = segments.at(-1);
  if (newest === undefined) throw new Error(`no WAL segment in ${walDir}`);
  return join(walDir, newest);
}

/**
 * Cuts `cutBytes` off the last record of the newest segment's last frame that holds log
 * entries of group `groupId`, so that frame fails its check at the next start and is repaired as a torn write.
 * Frames after it (commit-index updates, written without waiting) go too: a crash while
 * the entry frame was being written would not have left them. The entries of that frame
 * had been fsynced and acknowledged: this is a disk that lost acknowledged data. (Other
 * groups' records in those frames are lost with them.)
 */
/**
 * Where a segment's frames end: after its last valid frame, before the zeros the log wrote
 * ahead (a killed member's newest segment) or any damage.
 */
export function framesEnd(bytes: Uint8Array, seq: number): number {
  let offset = SEGMENT_HEADER_BYTES;
  // Bounded: each valid frame moves the offset forward by at least 8 bytes.
  while (offset < bytes.length) {
    const frame = checkFrame(bytes, seq, offset);
    if (!frame.ok) break;
    offset = frame.nextOffset;
  }
  return Math.min(offset, bytes.length);
}

export async function tearLastEntryFrame(
  walDir: string,
  groupId: number,
  cutBytes: number,
): Promise<TornEntryFrame> {
  const segmentPath = await newestSegment(walDir);
  const seq = Number(basename(segmentPath).slice(0, 20));
  const bytes = new Uint8Array(await readFile(segmentPath));
  const records: WalRecord[] = [];
  let lastEntryFrame: { offset: number; payloadEnd: number; minIndex: number; maxIndex: number } | undefined;
  // Bounded: each valid frame moves the offset forward by at least 8 bytes.
  for (let offset = SEGMENT_HEADER_BYTES; offset < bytes.length; ) {
    const frame = checkFrame(bytes, seq, offset);
    // Zeros the log wrote ahead and no frame has used yet: its end (a killed member's file).
    if (!frame.ok && isZeroFrom(bytes, offset)) break;
    if (!frame.ok) throw new Error(`${segmentPath} offset ${offset} is already damaged: ${frame.reason}`);
    const payloadStart = offset + FRAME_HEADER_BYTES;
    records.length = 0;
    const malformed = decodeFramePayload(
      bytes.subarray(payloadStart, payloadStart + frame.payloadBytes),
      records,
    );
    if (malformed !== null) throw new Error(`${segmentPath} offset ${offset}: ${malformed}`);
    let minIndex = Number.POSITIVE_INFINITY;
    let maxIndex = 0;
    let group = -1;
    for (const record of records) {
      if (record.tag === RecordTag.Group) group = record.groupId;
      if (record.tag !== RecordTag.Entry || group !== groupId) continue;
      minIndex = Math.min(minIndex, record.entry.index);
      maxIndex = Math.max(maxIndex, record.entry.index);
    }
    if (maxIndex > 0)
      lastEntryFrame = { offset, payloadEnd: payloadStart + frame.payloadBytes, minIndex, maxIndex };
    offset = frame.nextOffset;
  }
  if (lastEntryFrame === undefined) throw new Error(`${segmentPath} holds no entry frame`);
  const payloadBytes = lastEntryFrame.payloadEnd - lastEntryFrame.offset - FRAME_HEADER_BYTES;
  if (cutBytes <= 0 || cutBytes >= payloadBytes) {
    throw new Error(`cannot cut ${cutBytes} bytes off a frame of ${payloadBytes} payload bytes`);
  }
  const sizeBytes = lastEntryFrame.payloadEnd - cutBytes;
  await truncate(segmentPath, sizeBytes);
  return {
    segmentPath,
    lostFromIndex: lastEntryFrame.minIndex,
    lostToIndex: lastEntryFrame.maxIndex,
    sizeBytes,
  };
}

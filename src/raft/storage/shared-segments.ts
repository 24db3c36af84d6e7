/**
 * The shared log's segment files (layout and frame format: shared-log.ts): their names,
 * the creation of a new segment (header plus one frame with every group's durable hard
 * state, fsynced with its directory entry), and the scan that routes each group-tagged
 * record of a replay to that group's LogReplay while indexing each group's highest entry
 * index per segment.
 */

import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import type { HardState } from "../core/types.ts";
import {
  encodeSegmentHeader,
  FrameBuffer,
  RecordTag,
  SEGMENT_HEADER_BYTES,
  SHARED_SEGMENT_MAGIC,
  type WalRecord,
} from "./codec.ts";
import { fsyncDir, type SyncCounter, syncHandle, writeFully } from "./fs-util.ts";
import { LogReplay } from "./recovery.ts";
import { type SegmentFormat, type WalSegment, walCorruption } from "./wal.ts";

/** The shared log's directory inside the data dir. */
export const SHARED_LOG_DIR = "raft-log";
export const SHARED_LOG_FORMAT: SegmentFormat = { pattern: /^(\d{20})\.log$/, magic: SHARED_SEGMENT_MAGIC };

function pad20(n: number): string {
  return n.toString().padStart(20, "0");
}

export function sharedSegmentFileName(seq: number): string {
  return `${pad20(seq)}.log`;
}

/** Reads the group-tagged records of the shared segments into one LogReplay per group. */
export class SharedReplay {
  readonly groups = new Map<number, LogReplay>();
  /** Per segment seq: each group's highest entry index in it. */
  readonly segmentGroups = new Map<number, Map<number, number>>();
  private current: LogReplay | undefined;
  private currentGroup = -1;
  private framePath = "";
  private frameOffset = -1;

  readonly visit = (record: WalRecord, path: string, offset: number, segment: WalSegment): void => {
    if (offset !== this.frameOffset || path !== this.framePath) {
      // A new frame: it must name its group before any record.
      this.framePath = path;
      this.frameOffset = offset;
      this.current = undefined;
      this.currentGroup = -1;
    }
    if (record.tag === RecordTag.Group) {
      this.currentGroup = record.groupId;
      this.current = this.groups.get(record.groupId);
      if (this.current === undefined) {
        this.current = new LogReplay();
        this.groups.set(record.groupId, this.current);
      }
      return;
    }
    const replay = this.current;
    if (replay === undefined)
      throw walCorruption(path, offset, "a record before any group record in its frame");
    try {
      replay.visit(record, path, offset);
    } catch (error) {
      if (DkvError.is(error, "CORRUPT"))
        throw new DkvError("CORRUPT", `group ${this.currentGroup}: ${error.message}`);
      throw error;
    }
    if (record.tag === RecordTag.Entry) {
      let groups = this.segmentGroups.get(segment.seq);
      if (groups === undefined) {
        groups = new Map();
        this.segmentGroups.set(segment.seq, groups);
      }
      const max = groups.get(this.currentGroup) ?? 0;
      if (record.entry.index > max) groups.set(this.currentGroup, record.entry.index);
    }
  };
}

/** A new segment: header plus one frame with every group's hard state, fsynced with its directory entry. */
export async function createSegment(
  dir: string,
  seq: number,
  hardStates: ReadonlyMap<number, HardState>,
  counter: SyncCounter,
): Promise<{ segment: WalSegment; handle: FileHandle }> {
  const path = join(dir, sharedSegmentFileName(seq));
  const handle = await open(path, "wx+");
  try {
    const header = encodeSegmentHeader(SHARED_SEGMENT_MAGIC);
    let bytes = header;
    if (hardStates.size > 0) {
      const frame = new FrameBuffer(256 + hardStates.size * 64);
      for (const [groupId, hardState] of hardStates) {
        frame.selectGroup(groupId);
        frame.addHardState(hardState);
      }
      const frameBytes = frame.seal(seq, SEGMENT_HEADER_BYTES);
      bytes = new Uint8Array(header.length + frameBytes.length);
      bytes.set(header, 0);
      bytes.set(frameBytes, header.length);
    }
    await writeFully(handle, bytes, 0);
    await syncHandle(handle, path, "all", counter);
    await fsyncDir(dir, counter);
    return { segment: { seq, firstIndex: 0, path, sizeBytes: bytes.length, maxEntryIndex: 0 }, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

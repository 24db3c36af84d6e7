/**
 * Segment GC of the shared log (the rule: shared-log.ts, "Segment GC"): which sealed
 * segments no group needs any more (each group's "removable through" index against its
 * highest entry index per segment), their deletion oldest first, and the relocation of
 * idle groups that would otherwise pin the oldest segment for ever.
 */

import { rm } from "node:fs/promises";
import type { Entry } from "../core/types.ts";
import { fsyncDir } from "./fs-util.ts";
import type { LogReplay } from "./recovery.ts";
import type { SharedLog } from "./shared-log.ts";
import type { StorageLogger } from "./snapshot-store.ts";
import type { WalSegment } from "./wal.ts";

/** Sealed segments kept before the groups pinning the oldest one are relocated. */
const RELOCATE_SEALED_SEGMENTS_MIN = 2;
/**
 * One relocation writes at most segmentBytesMax / this of live logs in all (smallest
 * first), so a roll costs at most that much rewriting: a larger live log, or one that does
 * not fit after smaller ones, waits for a later roll or its own compaction.
 */
const RELOCATE_SHARE = 16;
/**
 * Sealed segments past which, when no pinning live log fits the share, the smallest one is
 * relocated alone if it is at most a RELOCATE_SHARE-th of the sealed segments past the
 * first RELOCATE_SEALED_SEGMENTS_MIN: an idle group whose live log is over the share (its
 * compaction tail of large values) never compacts again, and would otherwise keep every
 * later segment for ever. Reached only after about RELOCATE_SHARE rolls without the oldest
 * segment going, so it is rare. A group whose live log is about as large as what it keeps
 * (a busy one that does not compact: its own records fill those segments) never qualifies:
 * writing it again would free little and come back at every roll.
 */
const RELOCATE_BACKLOG_SEGMENTS = RELOCATE_SEALED_SEGMENTS_MIN + RELOCATE_SHARE;

/** One open group's live log (what its storage holds in memory): what a relocation writes again. */
export interface LiveLog {
  entries(): Entry[];
  /** Its bytes as data plus `overheadBytes` per entry, counted without copying; only "above" once past `maxBytes`. */
  bytes(overheadBytes: number, maxBytes: number): number;
}

/** Bytes a relocated entry is counted for beside its data (its record header, roughly). */
const RELOCATED_ENTRY_OVERHEAD_BYTES = 32;

/** Decides which of the log's segments can go, deletes them, and relocates idle groups. */
export class SegmentGc {
  /** Each group's entries at or below this are no longer needed on disk (raised by compact). */
  private readonly removableThrough = new Map<number, number>();
  /** Per group: segments with a lower seq hold nothing it needs (its live log was written again later). */
  private readonly relocatedBefore = new Map<number, number>();
  /** Groups in the log but not open here that were reported as keeping old segments. */
  private readonly reportedPinning = new Set<number>();
  /** The relocation running (relocatePinning), if any; the log's close() waits for it. */
  relocation: Promise<void> | undefined;

  constructor(
    private readonly log: SharedLog,
    /** The log's segments, oldest first (the same array the log appends to on a roll). */
    private readonly segments: WalSegment[],
    /** Per segment seq: each group's highest entry index in it (the same map the log's writer updates). */
    private readonly segmentGroups: Map<number, Map<number, number>>,
    /** Replayed groups not opened yet (the log's map). */
    private readonly recovered: ReadonlyMap<number, LogReplay>,
    /** Each open group's live log (the log's map). */
    private readonly liveLogs: ReadonlyMap<number, LiveLog>,
    private readonly segmentBytesMax: number,
    private readonly logger: StorageLogger,
  ) {}

  /** Group `groupId` no longer needs its entries up to `index`. */
  raiseRemovable(groupId: number, index: number): void {
    if (index > (this.removableThrough.get(groupId) ?? 0)) this.removableThrough.set(groupId, index);
  }

  /** Deletes segments, oldest first, while no group needs them; never the active one. */
  async sweep(): Promise<number> {
    let count = 0;
    const active = this.log.activeSegment;
    // Bounded by the segment count; the active segment is never deleted.
    while (count < this.segments.length - 1) {
      const segment = this.segments[count]!;
      if (segment === active || this.isNeeded(segment)) break;
      count++;
    }
    if (count === 0) return 0;
    const doomed = this.segments.splice(0, count);
    for (const segment of doomed) {
      this.segmentGroups.delete(segment.seq);
      await rm(segment.path);
    }
    await fsyncDir(this.log.dir, this.log.counter);
    return count;
  }

  private isNeeded(segment: WalSegment): boolean {
    const groups = this.segmentGroups.get(segment.seq);
    if (groups === undefined) return false;
    for (const [groupId, maxEntryIndex] of groups) {
      if (this.pins(groupId, maxEntryIndex, segment.seq)) return true;
    }
    return false;
  }

  /** Whether group `groupId`, whose highest entry in segment `seq` is `maxEntryIndex`, still needs that segment. */
  private pins(groupId: number, maxEntryIndex: number, seq: number): boolean {
    if ((this.relocatedBefore.get(groupId) ?? 0) > seq) return false;
    return maxEntryIndex > (this.removableThrough.get(groupId) ?? 0);
  }

  /**
   * A group that stopped compacting (an idle one: it never reaches the next snapshot)
   * would pin the oldest segment, and every segment after it, for ever. So once
   * RELOCATE_SEALED_SEGMENTS_MIN segments are sealed, the open groups pinning the oldest
   * one have their live log (what their storage holds in memory, small for an idle group)
   * appended again; replay rebuilds the same log from it (an entry at i replaces the
   * group's entries from i on), so segments before that write no longer hold anything the
   * group needs. One relocation writes at most segmentBytesMax / RELOCATE_SHARE in all,
   * smallest live logs first: many busy groups that have not compacted yet (each with a
   * live log below that share: 50 dstore shards a few minutes after start) would otherwise
   * have all their logs written again at every roll, more than the segment itself. A group
   * left out pins until a later relocation takes it (it no longer competes with those
   * already moved) or until it compacts; a large live log is left alone (it is busy and
   * compacts soon) until RELOCATE_BACKLOG_SEGMENTS are sealed (an idle group with a large
   * tail never compacts): then, if nothing fits, the smallest goes alone when it is small
   * against the segments kept. Groups in the log but not open in this process are never
   * relocated, so they pin (a warning names them once).
   */
  startRelocation(): void {
    if (this.relocation !== undefined || !this.log.accepting) return;
    if (this.segments.length - 1 < RELOCATE_SEALED_SEGMENTS_MIN) return;
    this.relocation = this.relocatePinning().finally(() => {
      this.relocation = undefined;
    });
  }

  private async relocatePinning(): Promise<void> {
    try {
      const oldest = this.segments[0]!;
      const seqBefore = this.log.activeSegment.seq;
      const budget = this.segmentBytesMax / RELOCATE_SHARE;
      // Bounded by the groups with entries in the oldest segment.
      const candidates: { groupId: number; live: LiveLog; bytes: number }[] = [];
      const over: { groupId: number; live: LiveLog }[] = [];
      for (const [groupId, maxEntryIndex] of this.segmentGroups.get(oldest.seq) ?? []) {
        if (!this.pins(groupId, maxEntryIndex, oldest.seq)) continue;
        const live = this.liveLogs.get(groupId);
        if (live === undefined) {
          this.reportUnopenedPin(groupId, oldest);
          continue;
        }
        // Measured, not copied: only the logs relocated are built.
        const bytes = live.bytes(RELOCATED_ENTRY_OVERHEAD_BYTES, budget);
        if (bytes <= budget) candidates.push({ groupId, live, bytes });
        else over.push({ groupId, live });
      }
      candidates.sort((a, b) => a.bytes - b.bytes);
      const sealed = this.segments.length - 1;
      if (candidates.length === 0 && sealed >= RELOCATE_BACKLOG_SEGMENTS) {
        const allowance = ((sealed - RELOCATE_SEALED_SEGMENTS_MIN) * this.segmentBytesMax) / RELOCATE_SHARE;
        const smallest = this.smallestLive(over, allowance);
        if (smallest !== undefined) candidates.push(smallest);
      }
      const moved: number[] = [];
      let spent = 0;
      for (const { groupId, live, bytes } of candidates) {
        if (spent > 0 && spent + bytes > budget) break;
        spent += bytes;
        const entries = live.entries();
        if (entries.length > 0) {
          const frame = this.log.frameFor(groupId);
          for (const entry of entries) frame.addEntry(entry);
        }
        moved.push(groupId);
      }
      if (moved.length === 0) return;
      await this.log.durable();
      for (const groupId of moved) this.relocatedBefore.set(groupId, seqBefore);
      this.log.countRelocations(moved.length);
      await this.sweep();
    } catch (error) {
      // A failed write or fsync has poisoned the log and every group reports it; this only
      // says where it happened.
      this.logger.warn(`${this.log.dir}: relocating idle groups' logs failed: ${String(error)}`);
    }
  }

  /** The smallest of `logs` at most `maxBytes` (each measured only that far), or undefined when none is. */
  private smallestLive(
    logs: readonly { groupId: number; live: LiveLog }[],
    maxBytes: number,
  ): { groupId: number; live: LiveLog; bytes: number } | undefined {
    let smallest: { groupId: number; live: LiveLog; bytes: number } | undefined;
    // Bounded by the groups with entries in the oldest segment.
    for (const { groupId, live } of logs) {
      const bytes = live.bytes(RELOCATED_ENTRY_OVERHEAD_BYTES, smallest?.bytes ?? maxBytes);
      if (bytes <= maxBytes && (smallest === undefined || bytes < smallest.bytes))
        smallest = { groupId, live, bytes };
    }
    return smallest;
  }

  private reportUnopenedPin(groupId: number, segment: WalSegment): void {
    if (!this.recovered.has(groupId) || this.reportedPinning.has(groupId)) return;
    this.reportedPinning.add(groupId);
    this.logger.warn(
      `${segment.path}: kept (with every later segment) for group ${groupId}, which has entries in this log but is not served here; ` +
        `serve shard ${groupId} again (--shards) so it compacts, or remove this member's data dir and let it rejoin to drop it`,
    );
  }
}

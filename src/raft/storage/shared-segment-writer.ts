/**
 * SharedSegmentWriter: the shared log's segment files as the writer sees them. It writes
 * each group-commit batch at the end of the active segment (one write and one fdatasync),
 * rolls to a new segment (starting with every group's durable hard state) once the active
 * one is full, and keeps what a written batch tells about the segments: each group's
 * highest entry index per segment (for segment GC) and each group's durable hard state
 * (for the next roll). SharedLog drives it from its GroupCommit.
 *
 * When a batch runs past the space written ahead, the same write round writes zeros
 * after it, and a segment is cut back to its log before a roll and on close (the rule:
 * shared-log.ts, "Preallocation").
 */
import type { FileHandle } from "node:fs/promises";
import type { HardState } from "../core/types.ts";
import type { FrameBuffer } from "./codec.ts";
import { type SyncCounter, syncHandle, writeFully, writeFullySync } from "./fs-util.ts";
import type { LogReplay } from "./recovery.ts";
import { createSegment } from "./shared-segments.ts";
import { testFaults } from "./test-faults.ts";
import type { WalSegment, WalWriterStats } from "./wal.ts";

/**
 * A batch up to this size is written from the event loop's thread (then fsynced through
 * the thread pool): copying it into the page cache takes microseconds, less than the
 * pool's hand-off and completion wake-ups, which a log of many groups pays per batch (on
 * this 2-core machine 3 members at c=50 over 50 groups: ~0.1 batches per write). A larger
 * batch (big values) goes through the pool, so the loop never stalls for long.
 */
const SYNC_WRITE_BYTES_MAX = 256 * 1024;
const PAGE_BYTES = 4096;

export class SharedSegmentWriter {
  /** Size of the active segment right after its roll frame; a segment is never rolled before holding a batch. */
  private activeStartBytes: number;
  /** Each group's hard state as of the last durable frame: every new segment starts with all of them. */
  private readonly durableHardStates = new Map<number, HardState>();
  /** Set when a batch rolled to a new segment: SharedLog starts a relocation after that batch. */
  relocateSoon = false;
  /** Zeros written once and reused for every preallocation (empty when it is off). */
  private readonly zeros: Uint8Array;
  readonly writeStats: WalWriterStats & { relocations: number } = {
    batches: 0,
    bytesWritten: 0,
    relocations: 0,
  };

  constructor(
    private readonly dir: string,
    private readonly segments: WalSegment[],
    /** Per segment seq: each group's highest entry index in it. */
    private readonly segmentGroups: Map<number, Map<number, number>>,
    /** The replayed groups: each one's hard state as of the last frame replayed is durable. */
    recovered: ReadonlyMap<number, LogReplay>,
    private active: WalSegment,
    private handle: FileHandle,
    /** The active segment's file size: from active.sizeBytes on, zeros written and synced ahead. */
    private allocatedBytes: number,
    private readonly counter: SyncCounter,
    private readonly segmentBytesMax: number,
    private readonly preallocateBytes: number,
  ) {
    this.activeStartBytes = active.sizeBytes;
    this.zeros = new Uint8Array(preallocateBytes > 0 ? preallocateBytes + PAGE_BYTES : 0);
    for (const [groupId, replay] of recovered) this.durableHardStates.set(groupId, replay.hardState);
  }

  /** The segment being written (never deleted). */
  get activeSegment(): WalSegment {
    return this.active;
  }

  /** Cuts the active segment back to its log (`trim`: not after a failure), then closes its file. */
  async close(trim: boolean): Promise<void> {
    try {
      if (trim) await this.trimActive();
    } finally {
      await this.handle.close();
    }
  }

  /** Cuts the active segment's file back to where its log ends (no zeros left after it). */
  private async trimActive(): Promise<void> {
    if (this.allocatedBytes <= this.active.sizeBytes) return;
    await this.handle.truncate(this.active.sizeBytes);
    await syncHandle(this.handle, this.active.path, "all", this.counter);
    this.allocatedBytes = this.active.sizeBytes;
  }

  /** Writes and fdatasyncs one batch at the end of the active segment (rolling first when it is full). */
  async writeBatch(batch: FrameBuffer): Promise<void> {
    // Test builds only (see test-faults.ts): the batch sits in memory as if in a volatile cache.
    if (testFaults.ackBeforeFsync) await Bun.sleep(testFaults.ackBeforeFsyncHoldMs);
    if (
      this.active.sizeBytes > this.activeStartBytes &&
      this.active.sizeBytes + batch.frameBytes > this.segmentBytesMax
    ) {
      await this.roll();
      this.relocateSoon = true;
    }
    const segment = this.active;
    const bytes = batch.seal(segment.seq, segment.sizeBytes);
    if (bytes.length <= SYNC_WRITE_BYTES_MAX) {
      // A usual batch goes into the page cache from this thread: a trip through the file
      // thread pool costs more than the copy. One microtask first: the pass that committed
      // this batch queued its peers' flush (the leader's appends) behind this call, and
      // those should leave before this thread copies, so the followers' fsyncs start first.
      await Promise.resolve();
      writeFullySync(this.handle, bytes, segment.sizeBytes);
    } else await writeFully(this.handle, bytes, segment.sizeBytes);
    const end = segment.sizeBytes + bytes.length;
    if (end > this.allocatedBytes) {
      // Past the space written ahead: write the next stretch of zeros in the same round.
      const from = end;
      const to =
        this.preallocateBytes === 0
          ? end
          : Math.min(
              Math.ceil(end / PAGE_BYTES) * PAGE_BYTES + this.preallocateBytes,
              Math.max(end, this.segmentBytesMax),
            );
      if (to > from) await writeFully(this.handle, this.zeros.subarray(0, to - from), from);
      this.allocatedBytes = Math.max(end, to);
    }
    // datasync also persists the file size, which is all the metadata an append changes.
    await syncHandle(this.handle, segment.path, "data", this.counter);
    segment.sizeBytes += bytes.length;
    if (batch.groupMaxEntryIndex.size > 0) {
      let groups = this.segmentGroups.get(segment.seq);
      if (groups === undefined) {
        groups = new Map();
        this.segmentGroups.set(segment.seq, groups);
      }
      for (const [groupId, index] of batch.groupMaxEntryIndex) {
        if (index > (groups.get(groupId) ?? 0)) groups.set(groupId, index);
      }
    }
    for (const [groupId, hardState] of batch.groupHardStates) this.durableHardStates.set(groupId, hardState);
    this.writeStats.batches++;
    this.writeStats.bytesWritten += bytes.length;
  }

  private async roll(): Promise<void> {
    // Before the next segment exists, so zeros are only ever at the end of the last one.
    await this.trimActive();
    const { segment, handle } = await createSegment(
      this.dir,
      this.active.seq + 1,
      this.durableHardStates,
      this.counter,
    );
    const previous = this.handle;
    this.segments.push(segment);
    this.active = segment;
    this.handle = handle;
    this.allocatedBytes = segment.sizeBytes;
    this.activeStartBytes = segment.sizeBytes;
    await previous.close();
  }
}

/**
 * One group's view of the shared log: the GroupLogWriter its RaftStorage writes through.
 * Every call goes straight to the SharedLog with the group's id; closing it forgets the
 * group in the log.
 */

import { DkvError } from "../../errors.ts";
import type { FrameBuffer } from "./codec.ts";
import type { GroupLogWriter } from "./raft-storage.ts";
import type { SharedLog } from "./shared-log.ts";
import type { WalWriterStats } from "./wal.ts";

/** One group's view of the shared log: what RaftStorage writes through. */
export class SharedGroupWriter implements GroupLogWriter {
  private closed = false;

  constructor(
    private readonly log: SharedLog,
    private readonly groupId: number,
  ) {}

  assertWritable(): void {
    this.log.assertWritable();
    if (this.closed) {
      throw new DkvError(
        "CLOSED",
        `group ${this.groupId}'s storage is closed — reopen it from the shared log`,
      );
    }
  }

  frame(): FrameBuffer {
    return this.log.frameFor(this.groupId);
  }

  get pendingPayloadBytes(): number {
    return this.log.pendingPayloadBytes;
  }

  commit(): Promise<void> {
    return this.log.commit();
  }

  commitLater(): void {
    this.log.commitLater();
  }

  durable(): Promise<void> {
    return this.log.durable();
  }

  removeSegmentsThrough(index: number): Promise<number> {
    return this.log.removeThrough(this.groupId, index);
  }

  get stats(): WalWriterStats {
    return this.log.batchStats;
  }

  get segmentCount(): number {
    return this.log.segmentCount;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.log.closeGroup(this.groupId);
  }
}

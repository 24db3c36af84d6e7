import type { DkvError } from "../../errors.ts";
import { FrameBuffer } from "./codec.ts";

/**
 * Everyone waiting for one batch: a single promise, shared by every commit() of the batch
 * (a pass of many Raft groups makes one commit each: one promise, not one per group).
 */
interface BatchWaiter {
  promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

function batchWaiter(): BatchWaiter {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  return { promise, resolve, reject };
}
/** A frame buffer grown past this (a burst of big entries) is dropped after its batch instead of kept. */
const FRAME_BUFFER_KEEP_BYTES = 16 * 1024 * 1024;

/** What a log does with a batch: the one place that touches the disk. */
export interface GroupCommitLog {
  /** Writes `batch` as one frame and fsyncs it; throws if either failed. */
  writeBatch(batch: FrameBuffer): Promise<void>;
  /** The error every waiter (and every later commit) gets after `error` broke a write. */
  failureOf(error: unknown): DkvError;
  /** After each durable batch, before the next one starts. */
  afterBatch?(): void;
}

/** How a queue gathers a batch that waits behind another (see GroupCommit.gather). */
export interface GatherOptions {
  /**
   * At most this many event-loop turns a batch queued behind a running write waits for
   * more records once that write is durable (0: it starts at once). Never a lone write's
   * wait: one committed on an idle queue starts in the same turn.
   */
  turns: number;
  /** Runs a function after pending I/O (setImmediate; the host's scheduler in tests). */
  later(run: () => void): void;
}

/**
 * Group commit, shared by the per-group WAL (wal.ts) and the shared log (shared-log.ts):
 * callers encode records into `pending` and await `commit()`. While one write+fsync runs,
 * everything committed meanwhile accumulates in the other buffer and goes out in the next
 * single write+fsync. A failed write or fsync poisons the queue for good: the page cache
 * state is unknown after a failed fsync, so retrying could acknowledge data that is not
 * on disk.
 */
export class GroupCommit {
  /** The frame collecting records for the next write. Encode and `commit()` in the same turn. */
  pending = new FrameBuffer();
  private spare = new FrameBuffer();
  /** Who waits for `pending`: null until someone commits it. */
  private pendingWaiter: BatchWaiter | null = null;
  /** Who waits for the batch being written; null between batches. */
  private inflightWaiter: BatchWaiter | null = null;
  /** Records encoded with `commitLater` wait in `pending` for the next batch. */
  private heldBack = false;
  private idleWaiters: (() => void)[] = [];
  private flushingNow = false;
  private failed: DkvError | null = null;

  constructor(
    private readonly log: GroupCommitLog,
    private readonly gathering: GatherOptions = { turns: 0, later: setImmediate },
  ) {}

  /** The error that poisoned the queue, or null. */
  get failure(): DkvError | null {
    return this.failed;
  }

  /** A batch is being written (or about to be). */
  get flushing(): boolean {
    return this.flushingNow;
  }

  /** Resolves once every record encoded so far is durable. */
  commit(): Promise<void> {
    if (this.failed !== null) return Promise.reject(this.failed);
    this.pendingWaiter ??= batchWaiter();
    if (!this.flushingNow) {
      this.flushingNow = true;
      // A microtask, not a direct call: appends made in this turn (by any group) join the batch.
      queueMicrotask(() => void this.flushLoop());
    }
    return this.pendingWaiter.promise;
  }

  /**
   * Leaves the records encoded so far in `pending` without a write of their own: they go
   * out with the next batch someone commits (or at `idle`), and nobody waits for them. For
   * records whose loss a crash tolerates (a Raft hard state that only raised the commit
   * index), so they never cost an fsync that the next real commit would queue behind. A
   * failure of that later write fails its own callers (and poisons the queue) as usual.
   */
  commitLater(): void {
    if (this.failed !== null) throw this.failed;
    this.heldBack = true;
  }

  /** Resolves once everything committed so far is durable, without writing anything itself. */
  durable(): Promise<void> {
    if (this.failed !== null) return Promise.reject(this.failed);
    if (!this.pending.isEmpty) return this.commit();
    return this.inflightWaiter?.promise ?? Promise.resolve();
  }

  /** Resolves once no batch is being written and nothing encoded is left behind (see commitLater). */
  idle(): Promise<void> {
    if (this.heldBack && this.failed === null) return this.commit().then(() => this.idle());
    if (!this.flushingNow) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.idleWaiters.push(resolve);
    return promise;
  }

  private async flushLoop(): Promise<void> {
    // Runs while callers keep committing; each pass drains everything queued so far
    // (records of commitLater alone start no pass: they wait for the next commit).
    while (this.pendingWaiter !== null && this.failed === null) {
      const batch = this.pending;
      const waiter = this.pendingWaiter;
      this.heldBack = false;
      this.pending = this.spare;
      this.pendingWaiter = null;
      this.inflightWaiter = waiter;
      try {
        await this.log.writeBatch(batch);
      } catch (error) {
        this.poison(error, waiter);
        this.inflightWaiter = null;
        break;
      }
      this.inflightWaiter = null;
      batch.reset();
      this.spare = batch.capacityBytes > FRAME_BUFFER_KEEP_BYTES ? new FrameBuffer() : batch;
      waiter.resolve();
      this.log.afterBatch?.();
      if (this.pendingWaiter !== null) await this.gather();
    }
    this.flushingNow = false;
    const idle = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of idle) resolve();
  }

  /**
   * Records committed while a write ran wait for more, at most `turns` event-loop turns and
   * only while each turn adds some: when writes run back to back (many groups, each write
   * a few records), the records that arrive in the turns right after a write is durable
   * (a follower's appends read from its peers, a leader's new proposals) join this batch
   * instead of each starting another write+fsync, another round of acks and replies.
   */
  private async gather(): Promise<void> {
    let bytes = this.pending.payloadBytes;
    for (let turn = 0; turn < this.gathering.turns; turn++) {
      await new Promise<void>((resolve) => this.gathering.later(resolve));
      const now = this.pending.payloadBytes;
      if (now === bytes || this.failed !== null) return;
      bytes = now;
    }
  }

  private poison(error: unknown, inflight: BatchWaiter): void {
    const failure = this.log.failureOf(error);
    this.failed = failure;
    inflight.reject(failure);
    this.pendingWaiter?.reject(failure);
    this.heldBack = false;
    this.pendingWaiter = null;
    this.pending.reset();
  }
}

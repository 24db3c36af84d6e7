/**
 * One watch as a stream: an async iterator that replays kept history, then delivers the
 * changes its hub offers, queued and bounded by bytes (a consumer that falls behind is cut
 * with WATCH_SLOW, so the writers never wait), with progress events when idle; and
 * watchCopies, the same events with each value copied.
 */
import { DkvError } from "../errors.ts";
import { eventBytes } from "./change-log.ts";
import type { WatchHub } from "./watch.ts";
import type { WatchChange, WatchEvent } from "./watch-types.ts";

export interface WatcherOptions {
  bufferBytesMax: number;
  progressIntervalMs: number;
  signal: AbortSignal | undefined;
}

/**
 * One watch: an async iterator of changes. It first replays kept history (read lazily by
 * sequence, so a long replay costs no copy), then the changes queued since it started.
 */
export class Watcher implements AsyncIterableIterator<WatchEvent> {
  private queue: WatchChange[] = [];
  private queueHead = 0;
  private queueBytes = 0;
  private replaySeq: number;
  private error: DkvError | undefined;
  private ended = false;
  /** Aborted or returned: queued changes are dropped, not delivered. */
  private stopped = false;
  /**
   * The first event is a progress event: the revision this watch starts after, or the
   * store's revision when the watch starts beyond it.
   */
  private announced = false;
  private wake: (() => void) | undefined;
  private readonly onAbort = (): void => this.stop();
  /** The revision the next change must have at least (what a resume would start from). */
  nextRevision: number;

  constructor(
    private readonly hub: WatchHub,
    readonly key: string,
    readonly prefix: boolean,
    fromRevision: number,
    replaySeq: number,
    private readonly liveSeq: number,
    private readonly options: WatcherOptions,
  ) {
    this.nextRevision = fromRevision;
    this.replaySeq = replaySeq;
    if (options.signal?.aborted) this.stop();
    else options.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /** A new change that matches (called by the hub, synchronously). */
  offer(change: WatchChange, bytes: number): void {
    if (this.ended || change.revision < this.nextRevision) return;
    this.queue.push(change);
    this.queueBytes += bytes;
    if (this.queueBytes > this.options.bufferBytesMax) {
      this.fail(
        new DkvError(
          "WATCH_SLOW",
          `the watcher fell more than ${this.options.bufferBytesMax} bytes of changes behind and was cut; consume events faster, or watch again from revision ${this.nextRevision}`,
        ),
      );
      return;
    }
    this.wakeUp();
  }

  /** Ends the watch with `error` (the consumer sees it at its next pull). */
  fail(error: DkvError): void {
    if (this.ended) return;
    this.error = error;
    this.end();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    if (!this.announced && !this.ended) {
      this.announced = true;
      // Never past the store's own revision: a watch from a revision the store has not
      // reached yet reports where the store is, as etcd's progress does (see next()).
      const revision = Math.min(this.nextRevision - 1, this.hub.revision);
      return { done: false, value: { type: "progress", revision } };
    }
    // Bounded: each turn returns a change or progress, or waits for one.
    for (;;) {
      const change = this.take();
      if (change !== undefined) {
        this.nextRevision = change.revision;
        return { done: false, value: change };
      }
      if (this.ended) {
        const error = this.error;
        this.error = undefined;
        if (error !== undefined) throw error;
        return { done: true, value: undefined };
      }
      const woken = await this.waitForChange();
      if (!woken && !this.ended) {
        // Everything up to the hub's revision has been delivered (or is not wanted). For a
        // watch from a revision beyond the store's, that is the store's revision, not the
        // one before the start: progress N promises the store reached N and every wanted
        // change up to N was delivered, so a reader at N sees nothing the watch missed.
        return { done: false, value: { type: "progress", revision: this.hub.revision } };
      }
    }
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.stop();
    return { done: true, value: undefined };
  }

  private stop(): void {
    this.stopped = true;
    this.queue = [];
    this.queueHead = 0;
    this.queueBytes = 0;
    this.end();
  }

  private take(): WatchChange | undefined {
    if (this.error !== undefined || this.stopped) return undefined;
    // Replay first: kept history from the start revision up to where live delivery began.
    while (this.replaySeq < this.liveSeq) {
      if (!this.hub.isKept(this.replaySeq)) {
        this.fail(
          new DkvError(
            "WATCH_SLOW",
            `the watch history moved past this watcher while it replayed; watch again from revision ${this.nextRevision}`,
          ),
        );
        return undefined;
      }
      const change = this.hub.changeAt(this.replaySeq++)!;
      if (this.matches(change) && change.revision >= this.nextRevision) return change;
    }
    if (this.queueHead >= this.queue.length) return undefined;
    const change = this.queue[this.queueHead]!;
    this.queue[this.queueHead] = undefined as unknown as WatchChange;
    this.queueHead++;
    this.queueBytes -= eventBytes(change);
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
    return change;
  }

  private matches(change: WatchChange): boolean {
    return this.prefix ? change.key.startsWith(this.key) : change.key === this.key;
  }

  /** True when woken by a change or the end; false when the progress interval passed first. */
  private waitForChange(): Promise<boolean> {
    const intervalMs = this.options.progressIntervalMs;
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      this.wake = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
      if (intervalMs > 0) {
        timer = setTimeout(() => {
          this.wake = undefined;
          resolve(false);
        }, intervalMs);
      }
    });
  }

  private wakeUp(): void {
    this.wake?.();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.options.signal?.removeEventListener("abort", this.onAbort);
    this.hub.remove(this);
    this.wakeUp();
  }
}

/**
 * The events of `watcher` with each value copied, so a consumer that changes the bytes it
 * got cannot change the stored value (the engine and the history share one array).
 */
export async function* watchCopies(watcher: Watcher): AsyncGenerator<WatchEvent, void, undefined> {
  try {
    for await (const event of watcher) {
      yield event.type !== "progress" && event.value !== undefined
        ? { ...event, value: event.value.slice() }
        : event;
    }
  } finally {
    await watcher.return();
  }
}

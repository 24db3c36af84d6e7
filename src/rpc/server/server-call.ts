/**
 * One request in flight on the server (ServerCall): its deadline links, its timer when its
 * timeout differs from the queue's, and the exactly-once reply (or server-side timeout)
 * with its dedup record; plus toDkvError, how a thrown value goes on the wire.
 */

import { DkvError } from "../../errors.ts";
import type { StageTrace } from "../../raft/host/types.ts";
import type { WriteReceiver } from "../../store/replicated/command.ts";
import type { DeadlineEntry } from "../deadline-queue.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import type { Message } from "../protocol/types.ts";
import { type DedupGeneration, EMPTY_REPLY } from "./dedup-cache.ts";
import type { ReplyTarget, RequestObserver } from "./dispatcher-types.ts";

/**
 * One request being applied; `done` makes the reply (or the server-side timeout) happen
 * once. It is its own reply header (the request's fields, copied at start: the frame's
 * header may be the decoder's, refilled per frame), and the dispatcher reuses it once its
 * outcome is delivered (`recycle`): every holder lets go by then — the deadline queue
 * removed it, its timer is cleared, and its store tells it exactly once.
 */
export class ServerCall implements DeadlineEntry, WriteReceiver, FrameHeader {
  private done = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  startMs = 0;
  trace: StageTrace | undefined;
  // DeadlineEntry: the dispatcher's deadline queue links calls through these.
  expiresAtMs = 0;
  olderEntry: DeadlineEntry | undefined;
  newerEntry: DeadlineEntry | undefined;
  queued = false;
  // FrameHeader: the request's, which its reply repeats.
  serializer = 0;
  flags = 0;
  bodyLength = 0;
  requestId = 0;
  shard = 0;
  op = 0;
  clientIdHigh = 0;
  clientIdLow = 0;
  private target: ReplyTarget | undefined;
  private dedup: DedupGeneration | undefined;
  private dedupAt = -1;
  private isWrite = false;

  constructor(
    private readonly dispatcher: CallOwner,
    private readonly observer?: RequestObserver,
  ) {}

  /** Starts the call for the request `header` (read now, not kept). */
  start(
    header: FrameHeader,
    target: ReplyTarget,
    dedup: DedupGeneration | undefined,
    dedupAt: number,
    isWrite: boolean,
  ): this {
    this.done = false;
    this.startMs = performance.now();
    this.trace = undefined;
    this.serializer = header.serializer;
    this.flags = header.flags;
    this.bodyLength = header.bodyLength;
    this.requestId = header.requestId;
    this.shard = header.shard;
    this.op = header.op;
    this.clientIdHigh = header.clientIdHigh;
    this.clientIdLow = header.clientIdLow;
    this.target = target;
    this.dedup = dedup;
    this.dedupAt = dedupAt;
    this.isWrite = isWrite;
    return this;
  }

  /** A timer of its own (a call whose timeout differs from the queue's). */
  armTimeout(ms: number): void {
    this.timer = setTimeout(() => this.timedOut(ms), ms);
  }

  /** The deadline queue's timeout (`ms`) passed. */
  expire(ms: number): void {
    this.timedOut(ms);
  }

  private timedOut(ms: number): void {
    if (this.done) return;
    this.done = true;
    const error = new DkvError(
      "TIMEOUT",
      `the server did not finish the request within ${ms} ms; it may still apply`,
      { outcome: this.isWrite ? "unknown" : "not-applied" },
    );
    this.observer?.replied(this, error, this.startMs, this.trace);
    this.target?.deliver(this, undefined, error);
  }

  onResponse(response: Message): void {
    this.finish(response, undefined);
  }
  onError(error: unknown): void {
    this.finish(undefined, toDkvError(error, this.isWrite));
  }
  /** A replicated write (OriginWrites) is over: its reply is empty. */
  writeDone(error: DkvError | undefined): void {
    this.finish(error === undefined ? EMPTY_REPLY : undefined, error);
  }

  private finish(response: Message | undefined, error: DkvError | undefined): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.dedup?.complete(this.dedupAt, response, error);
    this.dispatcher.finished(this);
    if (!this.done) {
      this.done = true;
      this.observer?.replied(this, error, this.startMs, this.trace);
      this.target?.deliver(this, response, error);
    }
    this.target = undefined;
    this.dedup = undefined;
    this.trace = undefined;
    this.dispatcher.recycle(this);
  }
}

/** What a ServerCall reports to: its dispatcher. */
export interface CallOwner {
  /** The call is over (answered or not): out of the deadline queue and the count. */
  finished(call: ServerCall): void;
  /** The call's outcome is delivered and nothing holds it: it may serve another request. */
  recycle(call: ServerCall): void;
}

export function toDkvError(error: unknown, mayHaveApplied: boolean): DkvError {
  if (error instanceof DkvError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new DkvError("INTERNAL", `internal server error: ${detail}; see the server log`, {
    outcome: mayHaveApplied ? "unknown" : "not-applied",
    cause: error,
  });
}

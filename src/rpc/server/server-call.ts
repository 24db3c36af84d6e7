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
import type { RequestDispatcher } from "./dispatcher.ts";
import type { ReplyTarget, RequestObserver } from "./dispatcher-types.ts";

/** One request being applied; `done` makes the reply (or the server-side timeout) happen once. */
export class ServerCall implements DeadlineEntry, WriteReceiver {
  private done = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  readonly startMs = performance.now();
  trace: StageTrace | undefined;
  // DeadlineEntry: the dispatcher's deadline queue links calls through these.
  expiresAtMs = 0;
  olderEntry: DeadlineEntry | undefined;
  newerEntry: DeadlineEntry | undefined;
  queued = false;

  constructor(
    private readonly header: FrameHeader,
    private readonly target: ReplyTarget,
    private readonly dedup: DedupGeneration | undefined,
    private readonly dedupAt: number,
    private readonly isWrite: boolean,
    private readonly dispatcher: RequestDispatcher,
    private readonly observer?: RequestObserver,
  ) {}

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
    this.observer?.replied(this.header, error, this.startMs, this.trace);
    this.target.deliver(this.header, undefined, error);
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
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.dedup?.complete(this.dedupAt, response, error);
    this.dispatcher.finished(this);
    if (this.done) return;
    this.done = true;
    this.observer?.replied(this.header, error, this.startMs, this.trace);
    this.target.deliver(this.header, response, error);
  }
}

export function toDkvError(error: unknown, mayHaveApplied: boolean): DkvError {
  if (error instanceof DkvError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new DkvError("INTERNAL", `internal server error: ${detail}; see the server log`, {
    outcome: mayHaveApplied ? "unknown" : "not-applied",
    cause: error,
  });
}

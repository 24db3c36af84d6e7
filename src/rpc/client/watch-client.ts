import { WATCH_PROGRESS_INTERVAL_MS_DEFAULT } from "../../config/defaults.ts";
import { DkvError, type DkvErrorCode } from "../../errors.ts";
import {
  type WatchChange,
  WatchCompactedError,
  type WatchEvent,
  type WatchOptions,
} from "../../store/watch.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import {
  beginFrame,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagError,
  readErrorBody,
} from "../protocol/frame.ts";
import { type Message, streamOpCodes, watchEventSchema, watchRequestSchemaFor } from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import type { ClientTls } from "./socket-channel.ts";
import { bunClientTlsOptions } from "./tls-connect.ts";

/** What one attempt reports: events in order, then at most one failure. */
export interface WatchAttemptSink {
  event(event: WatchEvent): void;
  /** The attempt ended: a server error frame, or the connection lost. */
  fail(error: DkvError): void;
}

/** Opens watch attempts, each on the next endpoint; returns how to cancel one. */
export interface WatchTransport {
  readonly endpointCount: number;
  open(attempt: number, shard: number, request: Message, sink: WatchAttemptSink): () => void;
}

export interface RpcWatchLimits {
  /** Consecutive failed attempts (no frame received) before the watch gives up. */
  attemptsMax: number;
  /** Bytes of events received but not consumed before the watch ends with WATCH_SLOW. */
  bufferBytesMax: number;
}

/** Server errors after which the watch resumes elsewhere (the member went away or stopped serving). */
const RESUMABLE: ReadonlySet<DkvErrorCode> = new Set([
  "UNAVAILABLE",
  "CLOSED",
  "NOT_LEADER",
  "TIMEOUT",
  "REMOVED",
]);
const BACKOFF_MIN_MS = 25;
const BACKOFF_MAX_MS = 1000;
const EVENT_OVERHEAD_BYTES = 64;
/**
 * A stream silent (not even progress) for this many progress intervals is taken as lost
 * (a half-open connection, a stalled member) and resumed elsewhere.
 */
const SILENT_INTERVALS_MAX = 3;

/** Decodes one reply frame of a watch stream into an event, or the error that ends it. */
export function decodeWatchFrame(
  header: FrameHeader,
  body: Uint8Array,
  serializer: Serializer,
): { event: WatchEvent } | { error: DkvError } {
  if ((header.flags & flagError) !== 0) return { error: readWatchError(body) };
  try {
    const message = serializer.read(watchEventSchema, body);
    const type = message.type as string;
    const revision = message.revision as number;
    if (type === "progress") return { event: { type, revision } };
    if (type !== "put" && type !== "delete" && type !== "expire") {
      return { error: new DkvError("BAD_FRAME", `unknown watch event type "${type}"; upgrade this client`) };
    }
    const key = message.key as string;
    const value = message.value as Uint8Array | undefined;
    return { event: value === undefined ? { type, key, revision } : { type, key, value, revision } };
  } catch (error) {
    return { error: DkvError.from(error, "not-applied", "BAD_FRAME") };
  }
}

/** An error frame; COMPACTED keeps its compactRevision. */
function readWatchError(body: Uint8Array): DkvError {
  const error = readErrorBody(body);
  if (error.code !== "COMPACTED") return error;
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as { compactRevision?: unknown };
    if (typeof parsed.compactRevision === "number") {
      const compacted = new WatchCompactedError(parsed.compactRevision, 0);
      return Object.assign(compacted, { message: error.message });
    }
  } catch {
    // readErrorBody parsed it already; a body without compactRevision stays a plain COMPACTED
  }
  return error;
}

/**
 * A watch over RPC that survives a lost connection or a member going away: it resumes on
 * the next endpoint from the last revision it delivered, skipping the changes of that
 * revision it already delivered (a transaction spans several), so the consumer sees no
 * gap and no duplicate. Progress events move the resume point too.
 */
export class RpcWatch implements AsyncIterableIterator<WatchEvent> {
  private readonly queue: WatchEvent[] = [];
  private queueBytes = 0;
  private error: DkvError | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  private cancelAttempt: (() => void) | undefined;
  private attempt = 0;
  private failedAttempts = 0;
  /** Endpoints that answered COMPACTED in a row. */
  private compactedAnswers = 0;
  /** Resume point: from this revision, skipping `skip` changes of exactly that revision. */
  private from: number | undefined;
  private skip = 0;
  private lastRevision = 0;
  /** The revision the caller asked to start from (0: now); a resume never starts before it. */
  private readonly startRevision: number;
  private seenAtLast = 0;
  private progressYielded = -1;
  private silenceTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly progressIntervalMs: number;
  private readonly onAbort = (): void => this.stop();

  constructor(
    private readonly transport: WatchTransport,
    private readonly shard: number,
    private readonly key: string,
    private readonly options: WatchOptions,
    private readonly limits: RpcWatchLimits,
    private readonly onEnd: (watch: RpcWatch) => void = () => {},
  ) {
    this.from = options.fromRevision;
    this.startRevision = options.fromRevision ?? 0;
    // Asked for explicitly, so silence can be told from an idle key (0: no progress, no check).
    this.progressIntervalMs = options.progressIntervalMs ?? WATCH_PROGRESS_INTERVAL_MS_DEFAULT;
    if (options.signal?.aborted) {
      this.ended = true;
      return;
    }
    options.signal?.addEventListener("abort", this.onAbort, { once: true });
    this.open();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    // Bounded: each turn returns a queued event or waits for one or the end.
    for (;;) {
      const event = this.queue.shift();
      if (event !== undefined) {
        this.queueBytes -= bytesOf(event);
        return { done: false, value: event };
      }
      if (this.error !== undefined) {
        const error = this.error;
        this.error = undefined;
        throw error;
      }
      if (this.ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.stop();
    return { done: true, value: undefined };
  }

  private stop(): void {
    this.queue.length = 0;
    this.finish(undefined);
  }

  private finish(error: DkvError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.options.signal?.removeEventListener("abort", this.onAbort);
    this.cancelAttempt?.();
    this.cancelAttempt = undefined;
    clearTimeout(this.silenceTimer);
    this.onEnd(this);
    this.wake?.();
  }

  private open(): void {
    if (this.ended) return;
    const attempt = this.attempt++;
    let live = true;
    const request: Message = {
      key: this.key,
      prefix: this.options.prefix === true,
      fromRevision: this.from ?? 0,
      progressIntervalMs: this.progressIntervalMs,
      ...(this.options.requireLeader === true ? { requireLeader: true } : {}),
    };
    this.skip = this.from === this.lastRevision && this.lastRevision > 0 ? this.seenAtLast : 0;
    const fail = (error: DkvError): void => {
      if (!live || this.ended) return;
      live = false;
      clearTimeout(this.silenceTimer);
      this.cancelAttempt = undefined;
      this.onAttemptFailed(error);
    };
    const onSilence = (): void => {
      cancel();
      fail(this.silent());
    };
    const cancel = this.transport.open(attempt, this.shard, request, {
      event: (event) => {
        if (!live || this.ended) return;
        this.failedAttempts = 0;
        this.compactedAnswers = 0;
        this.armSilenceTimer(onSilence);
        this.receive(event);
      },
      fail,
    });
    if (live) {
      this.cancelAttempt = () => {
        live = false;
        clearTimeout(this.silenceTimer);
        cancel();
      };
      this.armSilenceTimer(onSilence);
    }
  }

  /** Restarts the wait for the next event; a stream silent past it is resumed elsewhere. */
  private armSilenceTimer(onSilence: () => void): void {
    clearTimeout(this.silenceTimer);
    if (this.progressIntervalMs <= 0) return;
    this.silenceTimer = setTimeout(onSilence, SILENT_INTERVALS_MAX * this.progressIntervalMs);
  }

  private silent(): DkvError {
    return new DkvError(
      "UNAVAILABLE",
      `the watch stream sent nothing, not even progress, for ${SILENT_INTERVALS_MAX * this.progressIntervalMs} ms; resuming on another endpoint`,
    );
  }

  private onAttemptFailed(error: DkvError): void {
    if (error.code === "COMPACTED" && this.compactedAnswers < this.transport.endpointCount - 1) {
      // One member may have restarted from a snapshot and lack history another still has:
      // ask each endpoint once before giving up.
      this.compactedAnswers++;
      this.open();
      return;
    }
    if (!RESUMABLE.has(error.code)) {
      this.finish(error);
      return;
    }
    this.failedAttempts++;
    if (this.failedAttempts > this.limits.attemptsMax) {
      this.finish(
        new DkvError(
          error.code,
          `${error.message} (the watch tried ${this.failedAttempts} times on every endpoint)`,
        ),
      );
      return;
    }
    const delayMs = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(10, this.failedAttempts - 1));
    setTimeout(() => this.open(), this.failedAttempts <= this.transport.endpointCount ? 0 : delayMs);
  }

  private receive(event: WatchEvent): void {
    if (event.type === "progress") {
      // The first event of an attempt repeats where it starts: never let progress go back.
      if (this.from === undefined) this.from = event.revision + 1;
      if (event.revision < this.lastRevision || event.revision <= this.progressYielded) return;
      // Progress of a watch asked from a revision the store had not reached yet stays below
      // that start: a resume must still start there, not at the progress.
      this.from = Math.max(event.revision + 1, this.startRevision);
      this.skip = 0;
      this.lastRevision = event.revision;
      this.seenAtLast = 0;
      this.progressYielded = event.revision;
      this.enqueue(event);
      return;
    }
    if (this.skip > 0 && event.revision === this.from) {
      this.skip--;
      return;
    }
    this.skip = 0;
    if (event.revision === this.lastRevision) this.seenAtLast++;
    else {
      this.lastRevision = event.revision;
      this.seenAtLast = 1;
    }
    this.from = this.lastRevision;
    this.enqueue(event);
  }

  private enqueue(event: WatchEvent): void {
    this.queue.push(event);
    this.queueBytes += bytesOf(event);
    if (this.queueBytes > this.limits.bufferBytesMax) {
      this.queue.length = 0;
      this.finish(
        new DkvError(
          "WATCH_SLOW",
          `more than ${this.limits.bufferBytesMax} bytes of watch events were not consumed; consume faster, or watch again from revision ${this.from}`,
        ),
      );
      return;
    }
    this.wake?.();
  }
}

function bytesOf(event: WatchEvent): number {
  if (event.type === "progress") return EVENT_OVERHEAD_BYTES;
  const change = event as WatchChange;
  return change.key.length * 2 + (change.value?.byteLength ?? 0) + EVENT_OVERHEAD_BYTES;
}

export interface HttpWatchOptions {
  endpoints: readonly string[];
  serializer: Serializer;
  maxFrameBytes: number;
  tls: ClientTls | undefined;
  token: string | undefined;
  clientIdHigh: number;
  clientIdLow: number;
  /** host and port of an endpoint, and whether it is IPv6. */
  parse(endpoint: string): { hostname: string; port: number };
}

/** Watch attempts over http: POST /v1/<shard>/watch with a request frame; the body streams event frames. */
export function httpWatchTransport(options: HttpWatchOptions): WatchTransport {
  return {
    endpointCount: options.endpoints.length,
    open(attempt, shard, request, sink) {
      const endpoint = options.endpoints[attempt % options.endpoints.length]!;
      const controller = new AbortController();
      void runHttpWatch(options, endpoint, shard, request, sink, controller.signal);
      return () => controller.abort();
    },
  };
}

async function runHttpWatch(
  options: HttpWatchOptions,
  endpoint: string,
  shard: number,
  request: Message,
  sink: WatchAttemptSink,
  signal: AbortSignal,
): Promise<void> {
  const { hostname, port } = options.parse(endpoint);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const out = new ByteWriter(256);
  const start = beginFrame(out);
  options.serializer.write(watchRequestSchemaFor(request), request, out);
  finishFrame(out, start, {
    serializer: options.serializer.id,
    flags: 0,
    requestId: 1,
    shard,
    op: streamOpCodes.watch,
    clientIdHigh: options.clientIdHigh,
    clientIdLow: options.clientIdLow,
  });
  let ended = false;
  const decoder = new FrameDecoder(options.maxFrameBytes, {
    onFrame: (header, body) => {
      if (ended) return;
      const decoded = decodeWatchFrame(header, body, options.serializer);
      if ("error" in decoded) {
        ended = true;
        sink.fail(decoded.error);
      } else sink.event(decoded.event);
    },
    onOversized: (_header, max) => {
      ended = true;
      sink.fail(new DkvError("TOO_LARGE", `a watch event exceeds this client's frame limit of ${max} bytes`));
    },
    onCorrupt: (reason) => {
      ended = true;
      sink.fail(new DkvError("BAD_FRAME", `the watch stream from ${endpoint} is not dkv frames: ${reason}`));
    },
  });
  try {
    const response = await fetch(
      `${options.tls === undefined ? "http" : "https"}://${host}:${port}/v1/${shard}/watch`,
      {
        method: "POST",
        body: out.written().slice(),
        signal,
        headers: {
          "content-type": "application/octet-stream",
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        },
        ...(options.tls === undefined ? {} : { tls: bunClientTlsOptions(options.tls, hostname) }),
      },
    );
    if (response.body === null) throw new Error("no body");
    const reader = response.body.getReader();
    // Bounded by the stream: each turn reads one piece or ends.
    while (!ended) {
      const next = await reader.read();
      if (next.done) break;
      decoder.push(next.value);
    }
    if (!ended) {
      ended = true;
      sink.fail(new DkvError("UNAVAILABLE", `the watch stream from ${endpoint} ended`));
    }
  } catch (error) {
    if (signal.aborted || ended) return;
    ended = true;
    sink.fail(
      new DkvError(
        "UNAVAILABLE",
        `the watch stream from ${endpoint} failed: ${error instanceof Error ? error.message : String(error)}`,
      ),
    );
  }
}

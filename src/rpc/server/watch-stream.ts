/**
 * Watches over RPC: decoding, authorizing and opening a watch request (both transports),
 * the frames of its events and of the error that ends it, and the watches open on one
 * tcp/unix connection (ConnectionWatches; the http routes count theirs per listener).
 */
import type { Identity, TokenAuthority } from "../../auth/index.ts";
import type { StreamedReplyTarget } from "../../backup/stream-server.ts";
import { DkvError } from "../../errors.ts";
import type { IStore, WatchEvent } from "../../store/types.ts";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import {
  beginFrame,
  type FrameHeader,
  finishFrame,
  flagError,
  flagResponse,
  writeErrorBody,
} from "../protocol/frame.ts";
import {
  type Message,
  watchEventSchema,
  watchRequestLeaderSchema,
  watchRequestSchema,
} from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";

/** Where a watch finds its store and its permission check. */
export interface WatchSource {
  watchStore(shard: number): IStore | DkvError;
  mismatch(serializerId: number): DkvError;
}

/** A watch request, decoded and checked. */
export interface WatchRequest {
  key: string;
  prefix: boolean;
  fromRevision: number | undefined;
  progressIntervalMs: number | undefined;
  requireLeader: boolean;
}

/** The request in its long form (with requireLeader) or, from clients that do not send it, the short one. */
function readWatchRequest(serializer: Serializer, body: Uint8Array): Message {
  try {
    return serializer.read(watchRequestLeaderSchema, body);
  } catch (error) {
    if (!DkvError.is(error)) throw error;
    return { ...serializer.read(watchRequestSchema, body), requireLeader: false };
  }
}

/** The shortest progress interval a client may ask for: progress frames cost the server too. */
const PROGRESS_INTERVAL_MS_MIN = 10;

/**
 * Decodes and authorizes a watch request frame and opens the watch on its shard's store;
 * throws a DkvError (nothing started) when the request is bad, not allowed or compacted.
 */
export function openWatch(
  header: FrameHeader,
  body: Uint8Array,
  source: WatchSource,
  serializer: Serializer,
  authority: TokenAuthority | undefined,
  identity: Identity | undefined,
  signal: AbortSignal,
): AsyncIterator<WatchEvent> {
  if (header.serializer !== serializer.id) throw source.mismatch(header.serializer);
  const message = readWatchRequest(serializer, body);
  const refusal = authority?.authorize(identity, "watch", header.shard, message);
  if (refusal !== undefined) throw refusal;
  const request = watchRequestOf(message);
  const store = source.watchStore(header.shard);
  if (store instanceof DkvError) throw store;
  const events = store.watch(request.key, {
    prefix: request.prefix,
    signal,
    ...(request.fromRevision === undefined ? {} : { fromRevision: request.fromRevision }),
    ...(request.progressIntervalMs === undefined ? {} : { progressIntervalMs: request.progressIntervalMs }),
    ...(request.requireLeader ? { requireLeader: true } : {}),
  });
  if (authority === undefined) return events;
  // A watch outlives the request that opened it: its grant is checked again before each
  // event (a Map lookup), so a token revoked or narrowed by SIGHUP stops receiving at once.
  return {
    async next() {
      const result = await events.next();
      if (result.done !== true) {
        const revoked = authority.authorize(identity, "watch", header.shard, message);
        if (revoked !== undefined) throw revoked;
      }
      return result;
    },
    async return(value?: unknown) {
      return (await events.return?.(value)) ?? { done: true, value: undefined };
    },
  };
}

function watchRequestOf(message: Message): WatchRequest {
  const fromRevision = message.fromRevision as number;
  const interval = message.progressIntervalMs as number;
  if (!Number.isSafeInteger(fromRevision) || fromRevision < 0) {
    throw new DkvError(
      "BAD_REQUEST",
      `fromRevision must be a whole number >= 0 (0: from now); got ${fromRevision}`,
    );
  }
  if (!Number.isSafeInteger(interval) || interval < 0) {
    throw new DkvError(
      "BAD_REQUEST",
      `progressIntervalMs must be a whole number of ms >= 0; got ${interval}`,
    );
  }
  return {
    key: message.key as string,
    prefix: message.prefix as boolean,
    fromRevision: fromRevision === 0 ? undefined : fromRevision,
    progressIntervalMs: interval === 0 ? undefined : Math.max(PROGRESS_INTERVAL_MS_MIN, interval),
    requireLeader: message.requireLeader === true,
  };
}

/** Appends one event's response frame. */
export function writeWatchEventFrame(
  out: ByteWriter,
  header: FrameHeader,
  serializer: Serializer,
  event: WatchEvent,
): void {
  const start = beginFrame(out);
  serializer.write(
    watchEventSchema,
    event.type === "progress"
      ? { type: "progress", key: "", value: undefined, revision: event.revision }
      : { type: event.type, key: event.key, value: event.value, revision: event.revision },
    out,
  );
  finishFrame(out, start, { ...header, serializer: serializer.id, flags: flagResponse });
}

/** Appends the error frame that ends a watch (COMPACTED carries compactRevision in its JSON). */
export function writeWatchErrorFrame(
  out: ByteWriter,
  header: FrameHeader,
  serializerId: number,
  error: DkvError,
): void {
  const start = beginFrame(out);
  writeErrorBody(out, error);
  finishFrame(out, start, { ...header, serializer: serializerId, flags: flagResponse | flagError });
}

export function toWatchError(error: unknown): DkvError {
  if (DkvError.is(error)) return error;
  return new DkvError("INTERNAL", `the watch failed: ${String(error)}; see the server log`);
}

/** Where a connection's watches write: its streamed replies, and whether it has closed. */
export interface WatchTarget extends StreamedReplyTarget {
  readonly closed: boolean;
}

/**
 * The watches open on one tcp/unix connection, by request id: at most `max` at once, each
 * a streamed reply of event frames on the connection until it is cancelled, the
 * connection closes, or the watch fails (an error frame then ends it).
 */
export class ConnectionWatches {
  private readonly open = new Map<number, AbortController>();

  constructor(
    private readonly max: number,
    private readonly source: WatchSource,
    private readonly serializer: Serializer,
    private readonly authority: TokenAuthority | undefined,
  ) {}

  /**
   * Opens the watch `header` asks for and streams it to `target`: the refusal to reply
   * with (nothing started), or the stream, which settles once it has ended.
   */
  start(
    header: FrameHeader,
    body: Uint8Array,
    identity: Identity | undefined,
    target: WatchTarget,
  ): DkvError | Promise<void> {
    if (this.open.size >= this.max) {
      return new DkvError(
        "RESOURCE_EXHAUSTED",
        `${this.max} watches are open on this connection (--watchers-per-connection); cancel one, or watch a shared prefix`,
      );
    }
    if (this.open.has(header.requestId)) {
      return new DkvError("BAD_REQUEST", `a watch with request id ${header.requestId} is already open`);
    }
    const controller = new AbortController();
    let events: AsyncIterator<WatchEvent>;
    try {
      const { source, serializer, authority } = this;
      events = openWatch(header, body, source, serializer, authority, identity, controller.signal);
    } catch (error) {
      return toWatchError(error);
    }
    this.open.set(header.requestId, controller);
    return this.pump(header, events, controller, target).finally(() => {
      if (this.open.get(header.requestId) === controller) this.open.delete(header.requestId);
    });
  }

  /** Ends the watch `requestId` (no reply: frames already on their way are ignored by the client). */
  cancel(requestId: number): void {
    this.open.get(requestId)?.abort();
  }

  /** The connection closed: every watch ends. */
  abortAll(): void {
    for (const controller of this.open.values()) controller.abort();
  }

  private async pump(
    header: FrameHeader,
    events: AsyncIterator<WatchEvent>,
    controller: AbortController,
    target: WatchTarget,
  ): Promise<void> {
    const serializer = this.serializer;
    try {
      // Bounded by the watch: each turn sends one event; it ends on cancel, close or error.
      for (;;) {
        const next = await events.next();
        if (next.done === true) return;
        await target.writeStreamed((out) => writeWatchEventFrame(out, header, serializer, next.value));
      }
    } catch (error) {
      if (controller.signal.aborted || target.closed) return;
      await target
        .writeStreamed((out) => writeWatchErrorFrame(out, header, serializer.id, toWatchError(error)))
        .catch(() => undefined); // the peer is gone: nobody to tell
    } finally {
      await events.return?.();
    }
  }
}

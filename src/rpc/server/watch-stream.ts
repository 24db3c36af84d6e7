import type { Identity, TokenAuthority } from "../../auth/index.ts";
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

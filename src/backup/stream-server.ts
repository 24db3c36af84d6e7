import { DkvError } from "../errors.ts";
import type { ByteWriter } from "../rpc/protocol/byte-writer.ts";
import {
  beginFrame,
  type FrameHeader,
  finishFrame,
  flagError,
  flagResponse,
  writeErrorBody,
} from "../rpc/protocol/frame.ts";
import { streamOpCodes } from "../rpc/protocol/types.ts";
import type { SnapshotStreamSource } from "./source.ts";

/**
 * The snapshot stream on tcp and unix: one request frame (op `snapshotStream`, body JSON
 * `{"shard":N}` or `{}`) is answered by response frames whose bodies are the backup file's
 * bytes in order, then one response frame with an empty body that ends the stream; a
 * failure ends it with an error frame instead. Bodies are raw bytes whatever the serializer.
 * On http the same bytes are the body of `POST /v1/snapshot`.
 */
export const SNAPSHOT_STREAM_OP = streamOpCodes.snapshotStream;

/** A connection that can send streamed replies with backpressure. */
export interface StreamedReplyTarget {
  /** Appends a frame via `write`; resolves once the peer has taken most pending output, rejects once closed. */
  writeStreamed(write: (out: ByteWriter) => void): Promise<void>;
}

const utf8Decoder = new TextDecoder();

/** `{"shard":N}` → N, `{}` or an empty body → every replicated shard. */
export function parseSnapshotRequest(body: Uint8Array): number | undefined {
  if (body.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decoder.decode(body));
  } catch {
    throw new DkvError("BAD_REQUEST", 'a snapshot request body is JSON: {"shard":200} or {}');
  }
  if (typeof parsed !== "object" || parsed === null) {
    throw new DkvError("BAD_REQUEST", 'a snapshot request body is a JSON object: {"shard":200} or {}');
  }
  const shard = (parsed as { shard?: unknown }).shard;
  if (shard === undefined || shard === null) return undefined;
  if (typeof shard !== "number" || !Number.isSafeInteger(shard) || shard < 0 || shard > 0xffff_ffff) {
    throw new DkvError("BAD_REQUEST", `"shard" must be a shard id from 0 to ${0xffff_ffff}`);
  }
  return shard;
}

/**
 * A snapshot request as the permission check needs it: the shard it names (undefined:
 * every shard) and, for a malformed body, the error to reply once the caller may know it
 * (after authentication: an unauthenticated client learns nothing from the body check).
 */
export interface SnapshotRequest {
  readonly shard: number | undefined;
  readonly error?: DkvError;
}

export function readSnapshotRequest(body: Uint8Array): SnapshotRequest {
  try {
    return { shard: parseSnapshotRequest(body) };
  } catch (error) {
    return { shard: undefined, error: DkvError.from(error, "not-applied", "BAD_REQUEST") };
  }
}

function frameWriter(header: FrameHeader, serializerId: number, flags: number, body?: Uint8Array) {
  return (out: ByteWriter): void => {
    const start = beginFrame(out);
    if (body !== undefined) out.bytes(body);
    finishFrame(out, start, { ...header, serializer: serializerId, flags });
  };
}

/** Streams a backup over a framed connection; never rejects (a closed peer just stops it). */
export async function serveSnapshotStream(
  header: FrameHeader,
  shard: number | undefined,
  source: SnapshotStreamSource,
  target: StreamedReplyTarget,
  serializerId: number,
): Promise<void> {
  let iterator: AsyncIterator<Uint8Array> | undefined;
  try {
    iterator = source.open(shard)[Symbol.asyncIterator]();
    // Bounded by the backup: each turn sends one piece; writeStreamed waits for the peer.
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) break;
      await target.writeStreamed(frameWriter(header, serializerId, flagResponse, next.value));
    }
    await target.writeStreamed(frameWriter(header, serializerId, flagResponse));
  } catch (error) {
    await iterator?.return?.().catch(() => undefined);
    const failure = DkvError.is(error)
      ? error
      : new DkvError("INTERNAL", `the snapshot stream failed: ${String(error)}; see the server log`);
    await target
      .writeStreamed((out) => {
        const start = beginFrame(out);
        writeErrorBody(out, failure);
        finishFrame(out, start, { ...header, serializer: serializerId, flags: flagResponse | flagError });
      })
      .catch(() => undefined); // the peer is gone: nobody to tell
  }
}

/** `POST /v1/snapshot` (body `{"shard":N}` or empty, read and checked by the caller): the backup file as a streamed body. */
export async function snapshotHttpResponse(
  shard: number | undefined,
  source: SnapshotStreamSource,
): Promise<Response> {
  let iterator: AsyncIterator<Uint8Array>;
  let first: IteratorResult<Uint8Array>;
  try {
    iterator = source.open(shard)[Symbol.asyncIterator]();
    first = await iterator.next();
  } catch (error) {
    const failure = DkvError.is(error) ? error : new DkvError("INTERNAL", String(error));
    const status = failure.code === "UNKNOWN_SHARD" ? 404 : failure.code === "BAD_REQUEST" ? 400 : 503;
    return Response.json(failure.toJSON(), { status });
  }
  let pending: IteratorResult<Uint8Array> | undefined = first;
  const stream = new ReadableStream<Uint8Array>({
    // Pulled: the next piece is produced only when the client has read the last one.
    async pull(controller) {
      try {
        const next = pending ?? (await iterator.next());
        pending = undefined;
        if (next.done === true) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        // The body breaks off; the client sees a truncated backup and refuses it.
        controller.error(error);
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
}

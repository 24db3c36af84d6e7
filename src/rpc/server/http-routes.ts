import type { Identity, TokenAuthority } from "../../auth/index.ts";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import { readSnapshotRequest, snapshotHttpResponse } from "../../backup/stream-server.ts";
import { DkvError, type DkvErrorCode } from "../../errors.ts";
import type { WatchEvent } from "../../store/types.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import { connectionHeader, FrameDecoder, type FrameHeader, flagResponse } from "../protocol/frame.ts";
import {
  type FieldSpec,
  type Message,
  type OpName,
  opCodes,
  opNames,
  requestSchemas,
  responseSchemas,
  streamOpCodes,
} from "../protocol/types.ts";
import { fromBase64, toBase64 } from "../serializer/json.ts";
import type { Serializer } from "../serializer/types.ts";
import type { RequestDispatcher, RpcLogger } from "./dispatcher.ts";
import type { Http1Request } from "./http1-parser.ts";
import { writeReplyFrame } from "./reply.ts";
import { openWatch, toWatchError, writeWatchErrorFrame, writeWatchEventFrame } from "./watch-stream.ts";

/** What the routes need of the http listener. */
export interface HttpRouteOptions {
  dispatcher: RequestDispatcher;
  serializer: Serializer;
  maxFrameBytes: number;
  logger: RpcLogger;
  authority?: TokenAuthority | undefined;
  snapshotStream?: SnapshotStreamSource | undefined;
  /** Watches open at once on the listener (each holds its connection). */
  watchesMax: number;
}

/** A reply with its whole body at hand (sent with Content-Length). */
export interface FixedReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: Uint8Array;
  /** More header fields, each "name: value". */
  readonly headers?: readonly string[];
}

/** A reply whose body streams (watch events, a snapshot): sent with chunked transfer coding. */
export type HttpReply = FixedReply | Response;

/** State shared by the requests of one listener. */
export interface HttpRouteState {
  watchesOpen: number;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** URL op names, case-insensitive, with the CLI's aliases. */
const opByUrlName = new Map<string, OpName>(opNames.map((n) => [n.toLowerCase(), n]));
opByUrlName.set("del", "delete");
opByUrlName.set("expr", "expire");

const okBody = utf8Encoder.encode("ok\n");
const frameType = "application/octet-stream";

/**
 * The identity of `Authorization: Bearer <token>` (one SHA-256, cached per connection by
 * the listener); undefined without auth or without the header. The dispatcher refuses
 * unknown tokens.
 */
export function identityOf(header: string | undefined, authority: TokenAuthority): Identity | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match === null ? undefined : authority.identify(match[1]!);
}

/**
 * POST /v1/<shard>/<op>. A body with content-type application/octet-stream is one request
 * frame and gets one reply frame (what RpcClient sends); anything else is JSON for humans.
 */
export function route(
  request: Http1Request,
  identity: Identity | undefined,
  options: HttpRouteOptions,
  state: HttpRouteState,
): HttpReply | Promise<HttpReply> {
  const query = request.target.indexOf("?");
  const path = query < 0 ? request.target : request.target.slice(0, query);
  const framed = request.headers.get("content-type")?.startsWith(frameType) === true;
  const match = /^\/v1\/(\d+)\/([A-Za-z]+)\/?$/.exec(path);
  if (match !== null && framed && request.method === "POST") {
    if (match[2]!.toLowerCase() === "watch") return handleWatch(request.body, options, identity, state);
    return handleFrame(request.body, options, identity);
  }
  if (path === "/healthz") return { status: 200, contentType: "text/plain;charset=utf-8", body: okBody };
  if (path === "/v1/cluster/status") {
    let refusal: DkvError | undefined;
    const denied = options.dispatcher.denied(
      anonymousHeader(options),
      "clusterStatus",
      {},
      {
        identity,
        deliver: (_h, _r, error) => {
          refusal = error;
        },
      },
    );
    if (denied && refusal !== undefined) return jsonError(refusal);
    return jsonReply(options.dispatcher.clusterStatus());
  }
  if (path === "/v1/snapshot" && options.snapshotStream !== undefined) {
    if (request.method !== "POST") {
      return jsonError(new DkvError("BAD_REQUEST", "use POST /v1/snapshot"), 405);
    }
    const snapshot = readSnapshotRequest(request.body);
    const refusal =
      options.authority?.authorize(identity, "snapshotSave", snapshot.shard ?? 0, {
        shard: snapshot.shard,
      }) ?? snapshot.error;
    if (refusal !== undefined) return jsonError(refusal);
    return snapshotHttpResponse(snapshot.shard, options.snapshotStream);
  }
  if (match === null) {
    return jsonError(
      new DkvError("BAD_REQUEST", 'expected POST /v1/<shard>/<op>, e.g. POST /v1/100/get with {"key":"foo"}'),
    );
  }
  // One spelling per shard: "0100" is not taken for shard 100 (a typo must not reach another shard).
  if (match[1]!.length > 1 && match[1]!.startsWith("0")) {
    return jsonError(
      new DkvError(
        "BAD_REQUEST",
        `the shard id in ${path} has a leading zero; write it without one, e.g. /v1/${Number(match[1])}/${match[2]}`,
      ),
    );
  }
  if (request.method !== "POST") {
    return jsonError(new DkvError("BAD_REQUEST", `use POST for ${path}`), 405);
  }
  if (match[2]!.toLowerCase() === "watch") {
    return jsonError(
      new DkvError(
        "BAD_REQUEST",
        "a watch is a framed request (application/octet-stream); use dkv kv watch or the RPC client",
      ),
    );
  }
  return handleHuman(Number(match[1]), match[2]!, request.body, options, identity);
}

async function handleHuman(
  shard: number,
  opText: string,
  body: Uint8Array,
  options: HttpRouteOptions,
  identity: Identity | undefined,
): Promise<HttpReply> {
  const op = opByUrlName.get(opText.toLowerCase());
  if (op === undefined) {
    return jsonError(
      new DkvError("UNKNOWN_OPERATION", `unknown operation "${opText}"; use one of ${opNames.join(", ")}`),
    );
  }
  const checked = options.dispatcher.checkNamed(shard, op);
  if (checked instanceof DkvError) return jsonError(checked);
  let message: Message;
  try {
    message = fromHumanJson(requestSchemas[op], body);
  } catch (error) {
    return jsonError(error instanceof DkvError ? error : new DkvError("BAD_REQUEST", String(error)));
  }
  const header: FrameHeader = {
    serializer: options.serializer.id,
    flags: 0,
    bodyLength: 0,
    requestId: 0,
    shard,
    op: opCodes[op],
    clientIdHigh: 0,
    clientIdLow: 0,
  };
  const outcome = await new Promise<{ response?: Message; error?: DkvError }>((resolve) =>
    options.dispatcher.dispatchMessage(header, op, checked.handler, message, {
      identity,
      deliver: (_h, response, error) => resolve({ response, error }),
    }),
  );
  if (outcome.error !== undefined) return jsonError(outcome.error);
  return jsonReply(toHumanJson(op, outcome.response ?? {}));
}

/** The one frame of a framed body, or the problem to reply. */
function singleFrame(
  body: Uint8Array,
  options: HttpRouteOptions,
): { header: FrameHeader; body: Uint8Array } | DkvError {
  const frames: { header: FrameHeader; body: Uint8Array }[] = [];
  let problem: DkvError | undefined;
  const decoder = new FrameDecoder(options.maxFrameBytes, {
    onFrame: (header, frameBody) => frames.push({ header, body: frameBody.slice() }),
    onOversized: (header, max) => {
      problem = new DkvError(
        "TOO_LARGE",
        `request of ${header.bodyLength} bytes exceeds the frame limit of ${max}`,
      );
    },
    onCorrupt: (reason) => {
      problem = new DkvError("BAD_FRAME", `not a dkv frame: ${reason}`);
    },
  });
  decoder.push(body);
  const frame = frames[0];
  if (problem !== undefined) return problem;
  if (frame === undefined || frames.length !== 1 || decoder.bufferedBytes !== 0) {
    return new DkvError("BAD_FRAME", "an application/octet-stream body must hold exactly one complete frame");
  }
  if ((frame.header.flags & flagResponse) !== 0) {
    return new DkvError("BAD_FRAME", "a client must not send response frames");
  }
  return frame;
}

/** One framed request in the body, one framed reply out; protocol errors travel as error frames. */
function handleFrame(
  body: Uint8Array,
  options: HttpRouteOptions,
  identity: Identity | undefined,
): HttpReply | Promise<HttpReply> {
  const frame = singleFrame(body, options);
  const out = new ByteWriter(256);
  if (frame instanceof DkvError) {
    writeReplyFrame(out, anonymousHeader(options), options.serializer, undefined, frame, options.logger);
    return frameReply(out);
  }
  return new Promise<HttpReply>((resolve) =>
    options.dispatcher.dispatchFrame(frame.header, frame.body, {
      identity,
      deliver: (h, response, error) => {
        writeReplyFrame(out, h, options.serializer, response, error, options.logger);
        resolve(frameReply(out));
      },
    }),
  );
}

/**
 * POST /v1/<shard>/watch with one watch request frame: the reply is a chunked body of
 * event frames, pulled as the client reads (a client that stops reading is cut by the
 * watcher's buffer bound, WATCH_SLOW), ended by an error frame; closing it cancels the watch.
 */
function handleWatch(
  body: Uint8Array,
  options: HttpRouteOptions,
  identity: Identity | undefined,
  state: HttpRouteState,
): HttpReply {
  const frame = singleFrame(body, options);
  const out = new ByteWriter(256);
  if (frame instanceof DkvError || frame.header.op !== streamOpCodes.watch) {
    const problem = new DkvError("BAD_FRAME", "a watch body must hold exactly one watch request frame");
    const header = frame instanceof DkvError ? anonymousHeader(options) : frame.header;
    writeReplyFrame(out, header, options.serializer, undefined, problem, options.logger);
    return frameReply(out);
  }
  const header = frame.header;
  if (state.watchesOpen >= options.watchesMax) {
    const busy = new DkvError(
      "RESOURCE_EXHAUSTED",
      `${state.watchesOpen} watches are open on this server (--max-client-connections); close one or retry later`,
    );
    writeWatchErrorFrame(out, header, options.serializer.id, busy);
    return frameReply(out);
  }
  const controller = new AbortController();
  let events: AsyncIterator<WatchEvent>;
  try {
    const source = options.dispatcher;
    events = openWatch(
      header,
      frame.body,
      source,
      options.serializer,
      options.authority,
      identity,
      controller.signal,
    );
  } catch (error) {
    writeWatchErrorFrame(out, header, options.serializer.id, toWatchError(error));
    return frameReply(out);
  }
  state.watchesOpen++;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    state.watchesOpen--;
    controller.abort();
    void events.return?.();
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(stream) {
      const frameOut = new ByteWriter(256);
      try {
        const next = await events.next();
        if (next.done === true) {
          finish();
          stream.close();
          return;
        }
        writeWatchEventFrame(frameOut, header, options.serializer, next.value);
        stream.enqueue(frameOut.written().slice());
      } catch (error) {
        writeWatchErrorFrame(frameOut, header, options.serializer.id, toWatchError(error));
        stream.enqueue(frameOut.written().slice());
        finish();
        stream.close();
      }
    },
    cancel() {
      finish();
    },
  });
  return new Response(stream, { headers: { "content-type": frameType } });
}

function frameReply(out: ByteWriter): FixedReply {
  return { status: 200, contentType: frameType, body: out.written() };
}

const statusByCode: Partial<Record<DkvErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_FRAME: 400,
  USAGE: 400,
  TOO_LARGE: 413,
  UNKNOWN_SHARD: 404,
  UNKNOWN_OPERATION: 404,
  SERIALIZER_MISMATCH: 415,
  TIMEOUT: 504,
  UNAVAILABLE: 503,
  NOT_LEADER: 503,
  RESOURCE_EXHAUSTED: 429,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
};

export function jsonReply(value: unknown, status = 200, headers?: readonly string[]): FixedReply {
  return {
    status,
    contentType: "application/json;charset=utf-8",
    body: utf8Encoder.encode(JSON.stringify(value)),
    ...(headers === undefined ? {} : { headers }),
  };
}

export function jsonError(error: DkvError, status?: number, headers: readonly string[] = []): FixedReply {
  const all =
    error.code === "UNAUTHENTICATED" ? [...headers, 'www-authenticate: Bearer realm="dkv"'] : headers;
  return jsonReply(error.toJSON(), status ?? statusByCode[error.code] ?? 500, all);
}

function anonymousHeader(options: HttpRouteOptions): FrameHeader {
  return connectionHeader(options.serializer.id);
}

/**
 * Human JSON: bytes are UTF-8 text (or {"base64": "..."}), durations default to 0,
 * e.g. {"key":"k","value":"v","expireInMs":1000}.
 */
function fromHumanJson(schema: readonly FieldSpec[], body: Uint8Array): Message {
  let parsed: unknown = {};
  if (body.length > 0) {
    try {
      parsed = JSON.parse(utf8Decoder.decode(body));
    } catch {
      throw new DkvError("BAD_REQUEST", 'the body is not JSON; send e.g. {"key":"foo"}');
    }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new DkvError("BAD_REQUEST", 'the body must be a JSON object, e.g. {"key":"foo"}');
  }
  return humanMessage(schema, parsed as Record<string, unknown>);
}

function humanMessage(schema: readonly FieldSpec[], object: Record<string, unknown>): Message {
  // A misspelt field (expireInMS, ttl) would otherwise be dropped and the request applied
  // without it: a key that never expires, a write without its condition.
  for (const name of Object.keys(object)) {
    if (!schema.some((spec) => spec.name === name)) {
      const known = schema.map((spec) => spec.name).join(", ");
      throw new DkvError(
        "BAD_REQUEST",
        `unknown field "${name}" for this operation; its fields are: ${known === "" ? "none" : known} (see docs/protocol.md)`,
      );
    }
  }
  const message: Message = {};
  for (const spec of schema) {
    const value = object[spec.name];
    if (value === undefined && (spec.type === "optStr" || spec.type === "optBytes")) {
      message[spec.name] = undefined;
    } else if (spec.type === "bool") {
      if (value !== undefined && typeof value !== "boolean") {
        throw new DkvError("BAD_REQUEST", `"${spec.name}" must be true or false`);
      }
      message[spec.name] = value === true;
    } else if (spec.type === "records") {
      if (
        !Array.isArray(value) ||
        !value.every((v) => typeof v === "object" && v !== null && !Array.isArray(v))
      ) {
        throw new DkvError("BAD_REQUEST", `"${spec.name}" must be a list of objects`);
      }
      message[spec.name] = value.map((record: Record<string, unknown>) =>
        humanMessage(spec.of ?? [], record),
      );
    } else if (spec.type === "num") {
      if (value === undefined) message[spec.name] = 0;
      else if (typeof value === "number") message[spec.name] = value;
      else throw new DkvError("BAD_REQUEST", `"${spec.name}" must be a number of milliseconds`);
    } else if (spec.type === "bytes" || spec.type === "optBytes") {
      if (typeof value === "string") message[spec.name] = utf8Encoder.encode(value);
      else if (
        typeof value === "object" &&
        value !== null &&
        typeof (value as { base64?: unknown }).base64 === "string"
      ) {
        message[spec.name] = fromBase64((value as { base64: string }).base64, spec.name);
      } else {
        throw new DkvError("BAD_REQUEST", `"${spec.name}" must be a string or {"base64": "..."}`);
      }
    } else if (typeof value === "string") {
      message[spec.name] = value;
    } else {
      throw new DkvError("BAD_REQUEST", `"${spec.name}" must be a string`);
    }
  }
  return message;
}

/** Human JSON replies follow the CLI's --json shapes. */
function toHumanJson(op: OpName, response: Message): Record<string, unknown> {
  const schema = responseSchemas[op];
  if (schema.length === 0) return { ok: true };
  if (op === "get" && response.value === undefined) return { found: false };
  const json: Record<string, unknown> = op === "get" ? { found: true } : {};
  return humanFields(schema, response, json);
}

function humanFields(
  schema: readonly FieldSpec[],
  response: Message,
  json: Record<string, unknown>,
): Record<string, unknown> {
  for (const spec of schema) {
    const value = response[spec.name];
    if (value === undefined) continue;
    if (Array.isArray(value)) json[spec.name] = value.map((record) => humanFields(spec.of ?? [], record, {}));
    else if (value instanceof Uint8Array) {
      try {
        json[spec.name] = utf8Decoder.decode(value);
      } catch {
        json[spec.name] = toBase64(value);
        json.encoding = "base64";
      }
    } else if (typeof value === "bigint") json[spec.name] = value.toString();
    else json[spec.name] = value;
  }
  return json;
}

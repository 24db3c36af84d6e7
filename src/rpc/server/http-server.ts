import type { Identity, TokenAuthority } from "../../auth/index.ts";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import { snapshotHttpResponse } from "../../backup/stream-server.ts";
import { DkvError, type DkvErrorCode } from "../../errors.ts";
import type { WatchEvent } from "../../store/types.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import { type Endpoint, formatInet } from "../protocol/endpoint.ts";
import {
  connectionHeader,
  FrameDecoder,
  type FrameHeader,
  flagResponse,
  headerBytes,
} from "../protocol/frame.ts";
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
import { HttpConnectionCap } from "./http-connection-cap.ts";
import { bunTlsOptions, type ServerTls } from "./listener-security.ts";
import { writeReplyFrame } from "./reply.ts";
import type { ConnectionLimits } from "./socket-server.ts";
import { openWatch, toWatchError, writeWatchErrorFrame, writeWatchEventFrame } from "./watch-stream.ts";

export interface HttpServerOptions {
  endpoint: Endpoint;
  dispatcher: RequestDispatcher;
  serializer: Serializer;
  maxFrameBytes: number;
  logger: RpcLogger;
  tls?: ServerTls | undefined;
  authority?: TokenAuthority | undefined;
  limits: ConnectionLimits;
  snapshotStream?: SnapshotStreamSource | undefined;
}

/** Bun.serve's idle timeout is whole seconds, at most 255. */
const httpIdleTimeoutMaxS = 255;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** URL op names, case-insensitive, with the CLI's aliases. */
const opByUrlName = new Map<string, OpName>(opNames.map((n) => [n.toLowerCase(), n]));
opByUrlName.set("del", "delete");
opByUrlName.set("expr", "expire");

export interface HttpServer {
  readonly endpoint: string;
  /** Connections open now, as counted by the connection cap. */
  readonly connections: number;
  stop(drainMs: number): Promise<void>;
}

/**
 * POST /v1/<shard>/<op>. A body with content-type application/octet-stream is one request
 * frame and gets one reply frame (what RpcClient sends); anything else is JSON for humans.
 */
export function startHttpServer(options: HttpServerOptions): HttpServer {
  if (options.endpoint.kind !== "inet") {
    throw new DkvError("USAGE", "the http transport needs a host:port endpoint, not a socket path");
  }
  const idleTimeoutMs = options.limits.idleTimeoutMs;
  const watches = { open: 0 };
  const idleTimeoutS =
    idleTimeoutMs <= 0 ? 0 : Math.min(httpIdleTimeoutMaxS, Math.max(1, Math.ceil(idleTimeoutMs / 1000)));
  const cap = new HttpConnectionCap(
    options.limits.maxConnections,
    idleTimeoutS * 1000,
    () => performance.now(),
    (message) => options.logger.warn(message),
  );
  const server = Bun.serve({
    hostname: options.endpoint.hostname,
    port: options.endpoint.port,
    maxRequestBodySize: options.maxFrameBytes + headerBytes,
    idleTimeout: idleTimeoutS,
    ...(options.tls === undefined ? {} : { tls: bunTlsOptions(options.tls) }),
    fetch: (request, bunServer) => admitted(request, bunServer, cap, options, watches),
    error(error) {
      options.logger.warn(`http: ${error.message}`);
      return jsonError(new DkvError("INTERNAL", "internal server error; see the server log"));
    },
  });
  const bound = formatInet(options.endpoint.hostname, server.port ?? options.endpoint.port);
  options.logger.info(`listening on ${options.tls === undefined ? "http" : "https"}://${bound}`);
  return {
    endpoint: bound,
    get connections() {
      return cap.size;
    },
    async stop(drainMs: number) {
      const stopped = server.stop(false);
      await options.dispatcher.drain(drainMs);
      await Promise.race([stopped, Bun.sleep(drainMs)]);
      server.stop(true);
    },
  };
}

/** Every request passes the connection cap (--max-client-connections) first. */
async function admitted(
  request: Request,
  server: Bun.Server<undefined>,
  cap: HttpConnectionCap,
  options: HttpServerOptions,
  watches: { open: number },
): Promise<Response> {
  const peer = server.requestIP(request);
  const key = peer === null ? "" : `${peer.address}:${peer.port}`;
  const refusal = cap.admit(key, server);
  if (refusal !== undefined) {
    const response = jsonError(refusal);
    response.headers.set("connection", "close");
    response.headers.set("retry-after", "1");
    return response;
  }
  try {
    // A watch's streamed response outlives this call: watches have their own bound (watches.open).
    return await handle(request, options, watches);
  } finally {
    cap.release(key);
  }
}

/**
 * The identity of `Authorization: Bearer <token>` (one SHA-256 per request); undefined
 * without auth or without the header. The dispatcher refuses unknown tokens.
 */
function identityOf(request: Request, options: HttpServerOptions): Identity | undefined {
  if (options.authority === undefined) return undefined;
  const header = request.headers.get("authorization");
  if (header === null) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match === null ? undefined : options.authority.identify(match[1]!);
}

async function handle(
  request: Request,
  options: HttpServerOptions,
  watches: { open: number },
): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/healthz") return new Response("ok\n");
  const identity = identityOf(request, options);
  if (url.pathname === "/v1/cluster/status") {
    let refusal: DkvError | undefined;
    const statusHeader = anonymousHeader(options);
    const denied = options.dispatcher.denied(
      statusHeader,
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
    return Response.json(options.dispatcher.clusterStatus());
  }
  if (url.pathname === "/v1/snapshot" && options.snapshotStream !== undefined) {
    const refusal = options.authority?.authorize(identity, "snapshotSave", 0, {});
    if (refusal !== undefined) return jsonError(refusal);
    return snapshotHttpResponse(request, options.snapshotStream);
  }
  const match = /^\/v1\/(\d+)\/([A-Za-z]+)\/?$/.exec(url.pathname);
  if (match === null) {
    return jsonError(
      new DkvError("BAD_REQUEST", 'expected POST /v1/<shard>/<op>, e.g. POST /v1/100/get with {"key":"foo"}'),
    );
  }
  if (request.method !== "POST") {
    return jsonError(new DkvError("BAD_REQUEST", `use POST for ${url.pathname}`), 405);
  }
  const body = new Uint8Array(await request.arrayBuffer());
  const framed = request.headers.get("content-type")?.startsWith("application/octet-stream") === true;
  if (match[2]!.toLowerCase() === "watch") {
    if (!framed) {
      return jsonError(
        new DkvError(
          "BAD_REQUEST",
          "a watch is a framed request (application/octet-stream); use dkv kv watch or the RPC client",
        ),
      );
    }
    return handleWatch(body, options, identity, watches);
  }
  if (framed) return handleFrame(body, options, identity);
  const op = opByUrlName.get(match[2]!.toLowerCase());
  if (op === undefined) {
    return jsonError(
      new DkvError("UNKNOWN_OPERATION", `unknown operation "${match[2]}"; use one of ${opNames.join(", ")}`),
    );
  }
  const checked = options.dispatcher.checkNamed(Number(match[1]), op);
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
    shard: Number(match[1]),
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
  return Response.json(toHumanJson(op, outcome.response ?? {}));
}

/** One framed request in the body, one framed reply out; protocol errors travel as error frames. */
async function handleFrame(
  body: Uint8Array,
  options: HttpServerOptions,
  identity: Identity | undefined,
): Promise<Response> {
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
  if (problem === undefined && (frame === undefined || frames.length !== 1 || decoder.bufferedBytes !== 0)) {
    problem = new DkvError(
      "BAD_FRAME",
      "an application/octet-stream body must hold exactly one complete frame",
    );
  }
  const header: FrameHeader = frame?.header ?? connectionHeader(options.serializer.id);
  if (problem === undefined && frame !== undefined && (frame.header.flags & flagResponse) !== 0) {
    problem = new DkvError("BAD_FRAME", "a client must not send response frames");
  }
  const out = new ByteWriter(256);
  if (problem !== undefined || frame === undefined) {
    writeReplyFrame(out, header, options.serializer, undefined, problem, options.logger);
    return frameResponse(out);
  }
  await new Promise<void>((resolve) =>
    options.dispatcher.dispatchFrame(frame.header, frame.body, {
      identity,
      deliver: (h, response, error) => {
        writeReplyFrame(out, h, options.serializer, response, error, options.logger);
        resolve();
      },
    }),
  );
  return frameResponse(out);
}

/**
 * POST /v1/<shard>/watch with one watch request frame: the reply is a chunked body of
 * event frames, pulled as the client reads (a client that stops reading is cut by the
 * watcher's buffer bound, WATCH_SLOW), ended by an error frame; closing it cancels the watch.
 */
function handleWatch(
  body: Uint8Array,
  options: HttpServerOptions,
  identity: Identity | undefined,
  watches: { open: number },
): Response {
  const frames: { header: FrameHeader; body: Uint8Array }[] = [];
  const decoder = new FrameDecoder(options.maxFrameBytes, {
    onFrame: (header, frameBody) => frames.push({ header, body: frameBody.slice() }),
    onOversized: () => {},
    onCorrupt: () => {},
  });
  decoder.push(body);
  const frame = frames[0];
  const out = new ByteWriter(256);
  if (frame === undefined || frames.length !== 1 || frame.header.op !== streamOpCodes.watch) {
    const problem = new DkvError("BAD_FRAME", "a watch body must hold exactly one watch request frame");
    writeReplyFrame(
      out,
      frame?.header ?? anonymousHeader(options),
      options.serializer,
      undefined,
      problem,
      options.logger,
    );
    return frameResponse(out);
  }
  const header = frame.header;
  if (watches.open >= options.limits.maxConnections) {
    const busy = new DkvError(
      "RESOURCE_EXHAUSTED",
      `${watches.open} watches are open on this server (--max-client-connections); close one or retry later`,
    );
    writeWatchErrorFrame(out, header, options.serializer.id, busy);
    return frameResponse(out);
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
    return frameResponse(out);
  }
  watches.open++;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    watches.open--;
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
  return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
}

function frameResponse(out: ByteWriter): Response {
  return new Response(out.written(), { headers: { "content-type": "application/octet-stream" } });
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

function jsonError(error: DkvError, status?: number): Response {
  const headers: Record<string, string> =
    error.code === "UNAUTHENTICATED" ? { "www-authenticate": 'Bearer realm="dkv"' } : {};
  return Response.json(error.toJSON(), { status: status ?? statusByCode[error.code] ?? 500, headers });
}

function anonymousHeader(options: HttpServerOptions): FrameHeader {
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

import type { Socket } from "bun";
import { DkvError } from "../errors.ts";
import type { ClientTls } from "../rpc/client/socket-channel.ts";
import { bunClientTlsOptions, checkClientToken, tlsHandshakeFailure } from "../rpc/client/tls-connect.ts";
import { ByteWriter } from "../rpc/protocol/byte-writer.ts";
import { parseEndpoint } from "../rpc/protocol/endpoint.ts";
import {
  beginFrame,
  FrameDecoder,
  finishFrame,
  flagError,
  flagResponse,
  readErrorBody,
} from "../rpc/protocol/frame.ts";
import {
  authenticateOpCode,
  type SerializerName,
  serializerIds,
  type TransportName,
} from "../rpc/protocol/types.ts";
import { SNAPSHOT_STREAM_OP } from "./stream-server.ts";

export interface SnapshotStreamOptions {
  transport: TransportName;
  /** One server's endpoint: a backup comes from one member. */
  endpoint: string;
  serializer: SerializerName;
  /** undefined: every replicated shard. */
  shard: number | undefined;
  /** Longest wait for the next piece (the stream itself may take longer). */
  idleTimeoutMs: number;
  /** Largest frame accepted from the server. */
  maxFrameBytes: number;
  /** TLS to the server (tcp and http); absent: plain. */
  tls?: ClientTls | undefined;
  /** For servers with --auth-file: a token frame first (tcp/unix) or `Authorization: Bearer` (http). */
  token?: string | undefined;
}

/** Reading pauses while this much received data waits for the consumer, and resumes below a quarter. */
const QUEUED_BYTES_HIGH = 8 * 1024 * 1024;
const REQUEST_ID = 1;

/** The backup file's bytes as the server streams them (tcp/unix frames or an http body). */
export function snapshotStream(options: SnapshotStreamOptions): AsyncIterable<Uint8Array> {
  checkClientToken(options.token);
  if (options.tls !== undefined && options.transport === "unix") {
    throw new DkvError("USAGE", "TLS (--cacert, --cert) applies to tcp and http, not unix sockets");
  }
  return options.transport === "http" ? httpStream(options) : socketStream(options);
}

function requestBody(shard: number | undefined): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(shard === undefined ? {} : { shard }));
}

function idleTimeout(options: SnapshotStreamOptions): DkvError {
  return new DkvError(
    "TIMEOUT",
    `${options.endpoint} sent no snapshot data for ${options.idleTimeoutMs} ms; check the server, or raise --timeout`,
    { outcome: "not-applied" },
  );
}

async function* httpStream(options: SnapshotStreamOptions): AsyncGenerator<Uint8Array> {
  const endpoint = parseEndpoint("http", options.endpoint);
  if (endpoint.kind !== "inet") throw new DkvError("USAGE", "the http transport needs host:port");
  const host = endpoint.hostname.includes(":") ? `[${endpoint.hostname}]` : endpoint.hostname;
  const tls = options.tls;
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), options.idleTimeoutMs);
  try {
    let response: Response;
    try {
      response = await fetch(
        `${tls === undefined ? "http" : "https"}://${host}:${endpoint.port}/v1/snapshot`,
        {
          method: "POST",
          body: requestBody(options.shard),
          signal: controller.signal,
          ...(options.token === undefined ? {} : { headers: { authorization: `Bearer ${options.token}` } }),
          ...(tls === undefined ? {} : { tls: bunClientTlsOptions(tls, endpoint.hostname) }),
        },
      );
    } catch (error) {
      if (controller.signal.aborted) throw idleTimeout(options);
      throw new DkvError(
        "UNAVAILABLE",
        `cannot connect to ${options.endpoint}: ${fetchFailure(error, tls)}`,
        {
          cause: error,
        },
      );
    }
    if (!response.ok) {
      const text = await response.text();
      throw readErrorBody(new TextEncoder().encode(text));
    }
    if (response.body === null) throw new DkvError("UNAVAILABLE", `${options.endpoint} sent no body`);
    const reader = response.body.getReader();
    // Bounded by the body: each turn reads one piece or ends.
    for (;;) {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), options.idleTimeoutMs);
      let next: Awaited<ReturnType<typeof reader.read>>;
      try {
        next = await reader.read();
      } catch (error) {
        if (controller.signal.aborted) throw idleTimeout(options);
        throw new DkvError(
          "UNAVAILABLE",
          `the snapshot stream from ${options.endpoint} broke off: ${String(error)}`,
        );
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Why fetch could not reach the server, with what to check. */
function fetchFailure(error: unknown, tls: ClientTls | undefined): string {
  const code = (error as { code?: unknown } | null)?.code;
  const detail = `${String(error)}${typeof code === "string" ? ` (${code})` : ""}`;
  if (code === "ConnectionRefused" || code === "ECONNREFUSED" || tls === undefined) {
    return `${detail}; is a server running there?`;
  }
  const certHint =
    tls.cert === undefined ? "; if the server requires client certificates, pass --cert and --key" : "";
  return `TLS handshake failed (${detail}); check --cacert (the CA that signed the server's certificate) and the host name${certHint}`;
}

/** What the socket handlers hand to the generator. */
class ReceiveQueue {
  readonly chunks: Uint8Array[] = [];
  queuedBytes = 0;
  ended = false;
  failure: DkvError | undefined;
  private wake: (() => void) | undefined;

  notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  waitMs(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }
}

async function* socketStream(options: SnapshotStreamOptions): AsyncGenerator<Uint8Array> {
  const endpoint = parseEndpoint(options.transport, options.endpoint);
  const queue = new ReceiveQueue();
  const fail = (error: DkvError) => {
    queue.failure ??= error;
    queue.notify();
  };
  const decoder = new FrameDecoder(options.maxFrameBytes, {
    onFrame: (header, body) => {
      if (header.requestId === 0 && header.op === authenticateOpCode && (header.flags & flagError) === 0) {
        // The server accepted the token frame.
      } else if (header.requestId === 0 && (header.flags & flagError) !== 0) {
        // A connection-level refusal: an unknown token, or a frame the server could not read.
        fail(readErrorBody(body));
      } else if (header.requestId !== REQUEST_ID || (header.flags & flagResponse) === 0) {
        fail(new DkvError("BAD_FRAME", "the server answered a request that was not sent"));
      } else if ((header.flags & flagError) !== 0) {
        fail(readErrorBody(body));
      } else if (body.length === 0) {
        queue.ended = true;
        queue.notify();
      } else {
        queue.chunks.push(body.slice());
        queue.queuedBytes += body.length;
        queue.notify();
      }
    },
    onOversized: (header, max) =>
      fail(new DkvError("TOO_LARGE", `the server sent a ${header.bodyLength}-byte frame (limit ${max})`)),
    onCorrupt: (reason) => fail(new DkvError("BAD_FRAME", `the server sent a bad frame: ${reason}`)),
  });
  const tls = options.tls;
  // With TLS the connection is usable once the handshake verified the server.
  const handshake = Promise.withResolvers<void>();
  // Awaited below once connected; this only keeps a refusal during the connect from being unhandled.
  handshake.promise.catch(() => undefined);
  let secured = tls === undefined;
  let lastSocketError: string | undefined;
  let receivedBytes = 0;
  /** A TLS connection lost before any reply hints at a refused (or missing) client certificate. */
  const lostHint = () =>
    tls === undefined || receivedBytes > 0
      ? ""
      : " before any reply: if the server requires client certificates (--client-cert-auth), pass --cert and --key signed by its CA";
  const cannotConnect = (detail: string) =>
    new DkvError("UNAVAILABLE", `cannot connect to ${options.endpoint}: ${detail}`);
  const handlers = {
    binaryType: "uint8array" as const,
    handshake(socket: Socket<undefined>, success: boolean, authorizationError: Error | null) {
      if (tls === undefined || secured) return;
      const failure = tlsHandshakeFailure(tls, success, authorizationError);
      if (failure !== undefined) {
        handshake.reject(cannotConnect(failure));
        socket.terminate();
        return;
      }
      secured = true;
      handshake.resolve();
    },
    data(socket: Socket<undefined>, chunk: Uint8Array) {
      receivedBytes += chunk.length;
      decoder.push(chunk);
      if (queue.queuedBytes > QUEUED_BYTES_HIGH) socket.pause();
    },
    close() {
      if (!secured) {
        const detail = lastSocketError ?? "the server closed the connection";
        handshake.reject(cannotConnect(`TLS handshake failed (${detail}); check --cacert and the host name`));
      } else if (!queue.ended) {
        fail(
          new DkvError("UNAVAILABLE", `${options.endpoint} closed the connection mid-stream${lostHint()}`),
        );
      }
    },
    error(_socket: Socket<undefined>, error: Error) {
      lastSocketError = error.message;
      if (secured)
        fail(
          new DkvError(
            "UNAVAILABLE",
            `connection to ${options.endpoint} failed: ${error.message}${lostHint()}`,
          ),
        );
    },
  };
  let socket: Socket<undefined>;
  try {
    socket =
      endpoint.kind === "unix"
        ? await Bun.connect({ unix: endpoint.path, socket: handlers })
        : await Bun.connect({
            hostname: endpoint.hostname,
            port: endpoint.port,
            socket: handlers,
            ...(tls === undefined ? {} : { tls: bunClientTlsOptions(tls, endpoint.hostname) }),
          });
  } catch (error) {
    throw cannotConnect(`${String(error)}; is a server running there?`);
  }
  try {
    if (!secured) {
      const timer = setTimeout(
        () => handshake.reject(cannotConnect(`no TLS handshake within ${options.idleTimeoutMs} ms`)),
        options.idleTimeoutMs,
      );
      try {
        await handshake.promise;
      } finally {
        clearTimeout(timer);
      }
    }
    const out = new ByteWriter(256);
    if (options.token !== undefined) {
      // First on the connection, request id 0: a refusal is a connection-level error.
      const tokenStart = beginFrame(out);
      out.bytes(new TextEncoder().encode(options.token));
      finishFrame(out, tokenStart, {
        serializer: serializerIds[options.serializer],
        flags: 0,
        requestId: 0,
        shard: 0,
        op: authenticateOpCode,
        clientIdHigh: 0,
        clientIdLow: 0,
      });
    }
    const start = beginFrame(out);
    out.bytes(requestBody(options.shard));
    finishFrame(out, start, {
      serializer: serializerIds[options.serializer],
      flags: 0,
      requestId: REQUEST_ID,
      shard: 0,
      op: SNAPSHOT_STREAM_OP,
      clientIdHigh: 0,
      clientIdLow: 0,
    });
    socket.write(out.written());
    // Bounded by the stream: each turn yields a chunk, ends, fails, or times out.
    for (;;) {
      const chunk = queue.chunks.shift();
      if (chunk !== undefined) {
        queue.queuedBytes -= chunk.length;
        if (queue.queuedBytes < QUEUED_BYTES_HIGH / 4) socket.resume();
        yield chunk;
        continue;
      }
      if (queue.failure !== undefined) throw queue.failure;
      if (queue.ended) return;
      if (!(await queue.waitMs(options.idleTimeoutMs))) throw idleTimeout(options);
    }
  } finally {
    socket.end();
  }
}

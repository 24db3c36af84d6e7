import type { Socket, TCPSocketListener } from "bun";
import type { Identity, TokenAuthority } from "../../auth/index.ts";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import { DkvError } from "../../errors.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import { type Endpoint, formatInet } from "../protocol/endpoint.ts";
import { headerBytes } from "../protocol/frame.ts";
import type { Serializer } from "../serializer/types.ts";
import { type ConnectionLimits, type ConnectionObserver, sweepConnections } from "./connection-limits.ts";
import type { RequestDispatcher, RpcLogger } from "./dispatcher.ts";
import {
  type FixedReply,
  type HttpReply,
  type HttpRouteOptions,
  type HttpRouteState,
  identityOf,
  jsonError,
  route,
} from "./http-routes.ts";
import { type Http1Limits, type Http1Request, Http1RequestParser } from "./http1-parser.ts";
import { bunTlsOptions, type ServerTls } from "./listener-security.ts";
import { ConnectionRefuser, type Refused, socketEvents } from "./refusals.ts";

export interface HttpServerOptions {
  endpoint: Endpoint;
  dispatcher: RequestDispatcher;
  serializer: Serializer;
  maxFrameBytes: number;
  logger: RpcLogger;
  tls?: ServerTls | undefined;
  authority?: TokenAuthority | undefined;
  limits: ConnectionLimits;
  observer?: ConnectionObserver | undefined;
  snapshotStream?: SnapshotStreamSource | undefined;
}

/** What a listener serves: one reply per request, and a drain on stop. */
export interface HttpHandler {
  /** `identity` is the bearer token's when the listener has an authority, else undefined. */
  handle(request: Http1Request, identity: Identity | undefined): HttpReply | Promise<HttpReply>;
  /** Waits up to `drainMs` for requests in progress (called once the listener stops accepting). */
  drain(drainMs: number): Promise<void>;
}

export interface HttpListenerOptions {
  endpoint: Endpoint;
  handler: HttpHandler;
  /** Names the listener in log lines ("http", "metrics"). */
  name: string;
  /** The flag that sets `limits.maxConnections`, named in the 503 at the cap. */
  capFlag: string;
  /** Largest request body taken. */
  bodyBytesMax: number;
  /** What a client that sent no HTTP is told this port is (default: the dkv http transport's hint). */
  notHttpHint?: string;
  logger: RpcLogger;
  tls?: ServerTls | undefined;
  authority?: TokenAuthority | undefined;
  limits: ConnectionLimits;
  observer?: ConnectionObserver | undefined;
}

export interface HttpServer {
  readonly endpoint: string;
  /** Connections open now: every accepted one counts, from accept to close. */
  readonly connections: number;
  stop(drainMs: number): Promise<void>;
}

/** Request line and header fields of one request. */
const headBytesMax = 16 * 1024;
const headerFieldsMax = 100;
/** A streamed reply waits while more than this is queued for the peer. */
const streamHighWaterBytes = 1024 * 1024;
/** Unsent reply bytes a connection may pile up (a peer that does not read) before it is cut. */
const pendingOutputBytesMin = 64 * 1024 * 1024;
const closeGraceMs = 2000;

const reasons: Record<number, string> = {
  100: "Continue",
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};
const continueBytes = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const asciiEncoder = new TextEncoder();

/** What every connection of one listener shares. */
interface ListenerState {
  readonly options: HttpListenerOptions;
  readonly parserLimits: Http1Limits;
  /** Every accepted connection until it closes: what the cap counts. */
  readonly connections: Set<HttpConnection>;
  /** Keep-alive connections between requests, oldest first: closed to make room at the cap. */
  readonly idle: Set<HttpConnection>;
}

/**
 * One accepted connection speaking HTTP/1.1: requests are parsed as bytes arrive and
 * answered one at a time, in order (pipelined ones wait in the parser's buffer, bounded);
 * replies are batched into one socket write per microtask turn, like the tcp transport.
 */
class HttpConnection {
  private readonly out = new ByteWriter(512);
  private readonly parser: Http1RequestParser;
  private flushQueued = false;
  private pumping = false;
  /** A request is being answered. */
  busy = false;
  /** No more requests: close once the reply in progress is sent. */
  private closing = false;
  closed = false;
  /** TLS handshake finished (always true without TLS). */
  secured: boolean;
  readonly openedAtMs: number;
  lastActivityMs: number;
  /** When the head awaited now began: accept for the first request, its first byte for later ones. */
  headSinceMs: number | undefined;
  private served = 0;
  private readonly bufferedBytesMax: number;
  private readonly pendingOutputBytesMax: number;
  /** The last Authorization header and its identity: one SHA-256 per connection and token. */
  private authHeader: string | undefined;
  private authIdentity: Identity | undefined;
  private drainWaiter: (() => void) | undefined;
  private stream: { cancel(): Promise<void> } | undefined;
  private closedResolvers: (() => void)[] = [];

  constructor(
    private readonly socket: Socket<SocketData>,
    private readonly state: ListenerState,
    nowMs: number,
  ) {
    this.secured = state.options.tls === undefined;
    this.openedAtMs = nowMs;
    this.lastActivityMs = nowMs;
    this.headSinceMs = nowMs;
    this.parser = new Http1RequestParser(state.parserLimits);
    const bodyMax = state.parserLimits.bodyBytesMax;
    this.bufferedBytesMax = bodyMax + headBytesMax + 64 * 1024;
    this.pendingOutputBytesMax = Math.max(pendingOutputBytesMin, 2 * bodyMax);
  }

  /** Waiting for a request head (not for a body whose head is in). */
  get awaitingHead(): boolean {
    return !this.busy && !this.closing && this.headSinceMs !== undefined;
  }

  /** Closing: no more requests are taken. */
  get isClosing(): boolean {
    return this.closing;
  }

  /** Has it answered a request (so an idle timeout, not the head timeout, applies between requests)? */
  get keptAlive(): boolean {
    return this.served > 0;
  }

  onData(chunk: Uint8Array, nowMs: number): void {
    this.lastActivityMs = nowMs;
    if (this.closing) return;
    if (!this.parser.partial) {
      this.state.idle.delete(this);
      this.headSinceMs ??= nowMs;
    }
    this.parser.push(chunk);
    if (this.parser.bufferedBytes > this.bufferedBytesMax) {
      this.state.options.logger.warn(
        `${this.state.options.name}: closing a connection that sent more than it waits to be answered`,
      );
      this.socket.terminate();
      return;
    }
    if (!this.busy) this.pump();
  }

  /** Answers the requests that have arrived, in order, until one is in progress or bytes run out. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      // Each turn takes one request (or a 100-continue) off the parser's bounded buffer.
      while (!this.busy && !this.closing && !this.closed) {
        const result = this.parser.poll();
        if (result === undefined) {
          if (this.parser.awaitingBody) {
            // The body must keep arriving: the idle timeout applies.
            this.headSinceMs = undefined;
          } else if (this.parser.partial || !this.keptAlive) {
            this.headSinceMs ??= performance.now();
          } else {
            this.headSinceMs = undefined;
            this.state.idle.add(this);
          }
          return;
        }
        if (result.kind === "continue") {
          this.headSinceMs = undefined;
          this.out.bytes(continueBytes);
          this.queueFlush();
          continue;
        }
        if (result.kind === "error") {
          const { status, message } = result.error;
          this.state.options.logger.debug(`${this.state.options.name}: refused a request: ${message}`);
          const code = status === 413 ? "TOO_LARGE" : "BAD_REQUEST";
          this.writeFixed(jsonError(new DkvError(code, message), status), false, true);
          void this.closeGracefully();
          return;
        }
        this.serve(result.request);
      }
    } finally {
      this.pumping = false;
    }
  }

  private serve(request: Http1Request): void {
    this.busy = true;
    this.headSinceMs = undefined;
    let reply: HttpReply | Promise<HttpReply>;
    try {
      reply = this.state.options.handler.handle(request, this.identity(request));
    } catch (error) {
      reply = this.internalError(error);
    }
    if (reply instanceof Promise) {
      reply.then(
        (settled) => this.respond(request, settled),
        (error: unknown) => this.respond(request, this.internalError(error)),
      );
    } else {
      this.respond(request, reply);
    }
  }

  private identity(request: Http1Request): Identity | undefined {
    const authority = this.state.options.authority;
    if (authority === undefined) return undefined;
    const header = request.headers.get("authorization");
    if (header !== this.authHeader || this.authIdentity === undefined) {
      this.authHeader = header;
      this.authIdentity = identityOf(header, authority);
    }
    return this.authIdentity;
  }

  private internalError(error: unknown): FixedReply {
    this.state.options.logger.warn(
      `${this.state.options.name}: ${error instanceof Error ? error.message : String(error)}`,
    );
    return jsonError(new DkvError("INTERNAL", "internal server error; see the server log"));
  }

  private respond(request: Http1Request, reply: HttpReply): void {
    if (this.closed) return;
    const keepAlive = request.keepAlive && !this.closing;
    const withBody = request.method !== "HEAD";
    if (reply instanceof Response) {
      void this.sendStream(request, reply, keepAlive, withBody);
      return;
    }
    this.writeFixed(reply, keepAlive, withBody);
    this.finished(keepAlive);
  }

  private finished(keepAlive: boolean): void {
    this.busy = false;
    this.served++;
    if (!keepAlive) {
      void this.closeGracefully();
      return;
    }
    this.pump();
  }

  private writeHead(status: number, fields: string, keepAlive: boolean): void {
    const connection = keepAlive ? "" : "connection: close\r\n";
    const head = `HTTP/1.1 ${status} ${reasons[status] ?? "Status"}\r\n${fields}${connection}\r\n`;
    this.out.ensure(head.length);
    this.out.length += asciiEncoder.encodeInto(head, this.out.buf.subarray(this.out.length)).written;
  }

  private writeFixed(reply: FixedReply, keepAlive: boolean, withBody: boolean): void {
    let fields = `content-type: ${reply.contentType}\r\ncontent-length: ${reply.body.length}\r\n`;
    if (reply.headers !== undefined) for (const field of reply.headers) fields += `${field}\r\n`;
    this.writeHead(reply.status, fields, keepAlive);
    if (withBody) this.out.bytes(reply.body);
    this.queueFlush();
  }

  /** A streamed body, chunked (HTTP/1.0: raw, then close); waits while the peer reads slowly. */
  private async sendStream(
    request: Http1Request,
    response: Response,
    keepAliveAsked: boolean,
    withBody: boolean,
  ): Promise<void> {
    const chunked = request.minorVersion === 1;
    const keepAlive = keepAliveAsked && chunked;
    let fields = "";
    for (const [name, value] of response.headers) {
      if (name !== "content-length" && name !== "transfer-encoding" && name !== "connection") {
        fields += `${name}: ${value}\r\n`;
      }
    }
    if (chunked && withBody) fields += "transfer-encoding: chunked\r\n";
    this.writeHead(response.status, fields, keepAlive);
    this.queueFlush();
    const reader = withBody ? response.body?.getReader() : undefined;
    if (reader === undefined) {
      if (withBody && chunked) this.writeAscii("0\r\n\r\n");
      this.finished(keepAlive);
      return;
    }
    this.stream = reader;
    try {
      // Bounded by the stream: it ends, fails, or is cancelled when the connection closes.
      for (;;) {
        const next = await reader.read();
        if (this.closed) return;
        if (next.done) break;
        if (next.value.length === 0) continue;
        if (chunked) this.writeAscii(`${next.value.length.toString(16)}\r\n`);
        this.out.bytes(next.value);
        if (chunked) this.writeAscii("\r\n");
        this.queueFlush();
        if (this.out.length > streamHighWaterBytes)
          await new Promise<void>((resolve) => (this.drainWaiter = resolve));
        if (this.closed) return;
      }
    } catch (error) {
      // The body breaks off: the peer sees a truncated reply (no final chunk) and refuses it.
      this.state.options.logger.warn(
        `${this.state.options.name}: a streamed reply failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      this.flush();
      this.socket.end();
      return;
    } finally {
      this.stream = undefined;
    }
    if (chunked) this.writeAscii("0\r\n\r\n");
    this.queueFlush();
    this.finished(keepAlive);
  }

  private writeAscii(text: string): void {
    this.out.ensure(text.length);
    this.out.length += asciiEncoder.encodeInto(text, this.out.buf.subarray(this.out.length)).written;
  }

  private queueFlush(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  readonly flush = (): void => {
    this.flushQueued = false;
    if (this.closed) return;
    if (this.out.length > 0) {
      const written = this.socket.write(this.out.written());
      this.out.consume(Math.max(0, written));
    }
    if (this.out.length <= streamHighWaterBytes && this.drainWaiter !== undefined) {
      const waiter = this.drainWaiter;
      this.drainWaiter = undefined;
      waiter();
    }
    if (this.out.length > this.pendingOutputBytesMax) {
      this.state.options.logger.warn(
        `${this.state.options.name}: closing connection: the peer does not read its replies`,
      );
      this.socket.terminate();
      return;
    }
    if (this.closing && !this.busy && this.out.length === 0) this.socket.end();
  };

  /** Stops taking requests, sends the reply in progress and what is pending, then closes; forced after a grace period. */
  closeGracefully(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closing = true;
    this.state.idle.delete(this);
    const closedPromise = new Promise<void>((resolve) => this.closedResolvers.push(resolve));
    const timer = setTimeout(() => this.socket.terminate(), closeGraceMs);
    closedPromise.then(() => clearTimeout(timer));
    this.flush();
    return closedPromise;
  }

  /** The head timeout passed: a 408 (when the peer can read it), then close. */
  timeOutHead(timeoutMs: number): void {
    if (!this.secured) {
      this.socket.terminate();
      return;
    }
    const message = `no complete request head within ${timeoutMs} ms; send the request right after connecting`;
    this.writeFixed(jsonError(new DkvError("TIMEOUT", message), 408), false, true);
    void this.closeGracefully();
  }

  terminate(): void {
    this.socket.terminate();
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.state.idle.delete(this);
    void this.stream?.cancel().catch(() => undefined);
    this.drainWaiter?.();
    this.drainWaiter = undefined;
    for (const resolve of this.closedResolvers) resolve();
    this.closedResolvers = [];
  }
}

type SocketData = HttpConnection | Refused | undefined;

/** The http transport: the RPC routes (`http-routes.ts`) on an HTTP/1.1 listener. */
export function startHttpServer(options: HttpServerOptions): HttpServer {
  const routes: HttpRouteOptions = {
    dispatcher: options.dispatcher,
    serializer: options.serializer,
    maxFrameBytes: options.maxFrameBytes,
    logger: options.logger,
    authority: options.authority,
    snapshotStream: options.snapshotStream,
    watchesMax: options.limits.maxConnections,
  };
  const routeState: HttpRouteState = { watchesOpen: 0 };
  const server = startHttpListener({
    endpoint: options.endpoint,
    handler: {
      handle: (request, identity) => route(request, identity, routes, routeState),
      drain: (drainMs) => options.dispatcher.drain(drainMs),
    },
    name: "http",
    capFlag: "--max-client-connections",
    bodyBytesMax: options.maxFrameBytes + headerBytes,
    logger: options.logger,
    tls: options.tls,
    authority: options.authority,
    limits: options.limits,
    observer: options.observer,
  });
  options.logger.info(`listening on ${options.tls === undefined ? "http" : "https"}://${server.endpoint}`);
  return server;
}

/**
 * An HTTP/1.1 listener (keep-alive) on Bun.listen, so it sees every connection from
 * accept: each counts against `limits.maxConnections` at once, must send its first request
 * head within the handshake timeout (with TLS: handshake and head), and is closed after
 * the idle timeout between requests. At the cap, the longest-idle keep-alive connection is
 * closed to make room; if none is idle, the new one gets a 503 and is closed.
 */
export function startHttpListener(options: HttpListenerOptions): HttpServer {
  const endpoint = options.endpoint;
  if (endpoint.kind !== "inet") {
    throw new DkvError("USAGE", `the ${options.name} listener needs a host:port endpoint, not a socket path`);
  }
  const { limits, logger, name } = options;
  const state: ListenerState = {
    options,
    parserLimits: {
      headBytesMax,
      headerFieldsMax,
      bodyBytesMax: options.bodyBytesMax,
      notHttpHint: options.notHttpHint ?? "a dkv client needs --transport http here",
    },
    connections: new Set(),
    idle: new Set(),
  };
  const refusalBytes = (() => {
    const reply = jsonError(
      new DkvError(
        "UNAVAILABLE",
        `the server has ${limits.maxConnections} ${name} connections open (${options.capFlag}); retry later, reuse a keep-alive connection, or raise the limit`,
      ),
      503,
      ["retry-after: 1"],
    );
    const head = `HTTP/1.1 503 Service Unavailable\r\ncontent-type: ${reply.contentType}\r\ncontent-length: ${reply.body.length}\r\n${reply.headers?.join("\r\n")}\r\nconnection: close\r\n\r\n`;
    const bytes = new Uint8Array(head.length + reply.body.length);
    bytes.set(asciiEncoder.encode(head));
    bytes.set(reply.body, head.length);
    return bytes;
  })();
  const refuser = new ConnectionRefuser<HttpConnection>({
    name,
    capFlag: options.capFlag,
    maxConnections: limits.maxConnections,
    logger,
    tls: options.tls !== undefined,
    reason: refusalBytes,
  });

  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: Socket<SocketData>) {
      const nowMs = performance.now();
      if (state.connections.size >= limits.maxConnections) {
        // The longest-idle keep-alive connection makes room; it has nothing in progress.
        const oldest = state.idle.values().next();
        if (oldest.done === true) {
          refuser.refuse(socket, nowMs);
          return;
        }
        state.idle.delete(oldest.value);
        oldest.value.terminate();
        if (state.connections.delete(oldest.value)) options.observer?.connectionClosed();
      }
      const connection = new HttpConnection(socket, state, nowMs);
      socket.data = connection;
      state.connections.add(connection);
      options.observer?.connectionOpened();
    },
    ...socketEvents<HttpConnection>({
      isConnection: (data): data is HttpConnection => data instanceof HttpConnection,
      connections: state.connections,
      refuser,
      observer: options.observer,
      logger,
      logPrefix: `${name}: `,
    }),
  };
  const tls = options.tls === undefined ? undefined : bunTlsOptions(options.tls);
  let listener: TCPSocketListener<SocketData>;
  try {
    listener = Bun.listen<SocketData>({
      hostname: endpoint.hostname,
      port: endpoint.port,
      socket: handlers,
      ...(tls === undefined ? {} : { tls }),
    });
  } catch (error) {
    throw new DkvError(
      "UNAVAILABLE",
      `cannot listen on ${formatInet(endpoint.hostname, endpoint.port)}: ${error instanceof Error ? error.message : String(error)}; is another server using it?`,
      { cause: error },
    );
  }
  const sweeper = startSweeper(state, limits, logger, name);
  const bound = formatInet(endpoint.hostname, listener.port);
  return {
    endpoint: bound,
    get connections() {
      return state.connections.size;
    },
    async stop(drainMs: number) {
      clearInterval(sweeper);
      listener.stop(false);
      await options.handler.drain(drainMs);
      await Promise.race([
        Promise.all([...state.connections].map((c) => c.closeGracefully())),
        Bun.sleep(drainMs),
      ]);
      refuser.stop();
      listener.stop(true);
    },
  };
}

/**
 * One timer per listener: closes connections that do not finish their TLS handshake or
 * send a complete request head in time (handshake timeout), and keep-alive connections
 * idle for longer than the idle timeout (a body that stops arriving counts as idle).
 */
function startSweeper(
  state: ListenerState,
  limits: ConnectionLimits,
  logger: RpcLogger,
  name: string,
): ReturnType<typeof setInterval> {
  return sweepConnections(state.connections, limits, (connection, nowMs) => {
    if (connection.closed || connection.busy || connection.isClosing) return;
    if (!connection.secured) {
      if (nowMs - connection.openedAtMs > limits.handshakeTimeoutMs) {
        logger.debug(
          `${name}: closing a connection that did not finish its TLS handshake in ${limits.handshakeTimeoutMs} ms`,
        );
        connection.terminate();
      }
    } else if (connection.awaitingHead) {
      if (nowMs - (connection.headSinceMs ?? nowMs) > limits.handshakeTimeoutMs) {
        logger.debug(
          `${name}: closing a connection that sent no request head in ${limits.handshakeTimeoutMs} ms`,
        );
        connection.timeOutHead(limits.handshakeTimeoutMs);
      }
    } else if (limits.idleTimeoutMs > 0 && nowMs - connection.lastActivityMs > limits.idleTimeoutMs) {
      logger.debug(`${name}: closing a connection idle for ${limits.idleTimeoutMs} ms`);
      void connection.closeGracefully();
    }
  });
}

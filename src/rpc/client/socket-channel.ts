import type { Socket } from "bun";
import { DkvError } from "../../errors.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import type { Endpoint } from "../protocol/endpoint.ts";
import {
  beginFrame,
  copyHeader,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagError,
  flagLeader,
  frameMagic,
  headerBytes,
  readErrorBody,
} from "../protocol/frame.ts";
import {
  authenticateOpCode,
  type FieldSpec,
  type Message,
  streamOpCodes,
  wireOpCodes,
  wireRequestSchemas,
  wireResponseSchemas,
} from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import { type CallOwner, CallTable, type Channel, type ClientCall } from "./call.ts";
import { HttpResponseReader } from "./http-response-reader.ts";
import { bunClientTlsOptions, tlsHandshakeFailure } from "./tls-connect.ts";

export interface ChannelOptions {
  endpointText: string;
  endpoint: Endpoint;
  serializer: Serializer;
  maxFrameBytes: number;
  clientIdHigh: number;
  clientIdLow: number;
  owner: CallOwner;
  /** Speak HTTP/1.1: each frame is the body of a keep-alive POST (the http transport). */
  http?: boolean;
  /** TLS to the server (tcp and http); absent: plain. */
  tls?: ClientTls | undefined;
  /** Sent once per connection (tcp/unix) or as `Authorization: Bearer` (http). */
  token?: string | undefined;
}

/** How the client checks the server (PEM text), and its own certificate if it has one. */
export interface ClientTls {
  /** CA(s) the server's certificate must chain to; absent: the system's CAs. */
  ca?: string | undefined;
  /** Client certificate and key, for servers with --client-cert-auth. */
  cert?: string | undefined;
  key?: string | undefined;
  /** Do not verify the server's certificate (testing only). */
  skipVerify?: boolean | undefined;
  /** The name to verify the certificate against; default the endpoint's host. */
  serverName?: string | undefined;
}

const utf8 = new TextEncoder();

/** A streamed request (a watch): its reply frames go to `sink` until it is closed or lost. */
export interface StreamCall {
  requestId: number;
  shard: number;
  opCode: number;
  schema: readonly FieldSpec[];
  message: Message;
  /** Every reply frame of the stream; `body` is valid only during the call. */
  onFrame(header: FrameHeader, body: Uint8Array): void;
  /** The connection failed or closed: no more frames will come. */
  onLost(error: DkvError): void;
}

const backoffMinMs = 25;
const backoffMaxMs = 2000;

/**
 * One pooled tcp/unix connection, connected lazily and again after a loss (with
 * exponential backoff after failed connects). Pipelined: every request is written at
 * once and matched to its reply by request id, in whatever order replies come.
 */
export class SocketChannel implements Channel {
  retryAtMs = 0;
  /**
   * Socket writes made so far: requests written in one turn go out in one write (see
   * queueFlush), which tests check through this count.
   */
  socketWrites = 0;
  private state: "idle" | "connecting" | "open" | "closed" = "idle";
  private socket: Socket<SocketChannel> | undefined;
  private readonly out = new ByteWriter();
  private flushQueued = false;
  private decoder: FrameDecoder;
  private readonly pending = new CallTable();
  private waiting: ClientCall[] = [];
  /** Streams open on this connection, and those waiting for it to open. */
  private readonly streams = new Map<number, StreamCall>();
  private waitingStreams: StreamCall[] = [];
  private backoffMs = 0;
  /** http: a frame is encoded here first, as the request head needs its length. */
  private readonly scratch: ByteWriter | undefined;
  private httpReader: HttpResponseReader | undefined;
  /** Bytes received on the current connection: a TLS connection closed before any reply hints at a refused certificate. */
  private receivedBytes = 0;
  private lastSocketError: string | undefined;

  constructor(private readonly options: ChannelOptions) {
    this.decoder = this.newDecoder();
    if (options.http) this.scratch = new ByteWriter(1024);
  }

  get endpoint(): string {
    return this.options.endpointText;
  }

  send(call: ClientCall): void {
    if (this.state === "open") {
      this.write(call);
      return;
    }
    if (this.state === "closed") {
      this.options.owner.failed(call, new DkvError("CLOSED", "the client is closed"), false);
      return;
    }
    this.waiting.push(call);
    if (this.state === "idle") this.connect();
  }

  /** Opens a streamed request on this (multiplexed) connection; tcp/unix only. */
  openStream(stream: StreamCall): void {
    if (this.state === "closed") {
      stream.onLost(new DkvError("CLOSED", "the client is closed"));
      return;
    }
    if (this.state === "open") {
      this.writeStream(stream);
      return;
    }
    this.waitingStreams.push(stream);
    if (this.state === "idle") this.connect();
  }

  /** Ends a stream: the server is told to stop (watchCancel); late frames are ignored. */
  closeStream(requestId: number): void {
    this.waitingStreams = this.waitingStreams.filter((s) => s.requestId !== requestId);
    const stream = this.streams.get(requestId);
    if (stream === undefined) return;
    this.streams.delete(requestId);
    if (this.state !== "open") return;
    const start = beginFrame(this.out);
    finishFrame(this.out, start, {
      serializer: this.options.serializer.id,
      flags: 0,
      requestId,
      shard: stream.shard,
      op: streamOpCodes.watchCancel,
      clientIdHigh: this.options.clientIdHigh,
      clientIdLow: this.options.clientIdLow,
    });
    this.queueFlush();
  }

  private writeStream(stream: StreamCall): void {
    const start = beginFrame(this.out);
    try {
      this.options.serializer.write(stream.schema, stream.message, this.out);
    } catch (error) {
      this.out.length = start;
      stream.onLost(DkvError.from(error, "not-applied", "BAD_REQUEST"));
      return;
    }
    finishFrame(this.out, start, {
      serializer: this.options.serializer.id,
      flags: 0,
      requestId: stream.requestId,
      shard: stream.shard,
      op: stream.opCode,
      clientIdHigh: this.options.clientIdHigh,
      clientIdLow: this.options.clientIdLow,
    });
    this.streams.set(stream.requestId, stream);
    this.queueFlush();
  }

  /**
   * Requests go out in one write per connection and turn. With other calls in flight here
   * (a busy connection) the write waits for the end of this event-loop iteration
   * (setImmediate): the replies read from every connection in one poll resume callers whose
   * next requests, spread over shards led by several members, would otherwise leave in a
   * write per connection per reply read (round28, c=50 over 50 shards picked at random:
   * 0.33-0.38 vs 0.40-0.45 socket writes per set, client CPU per set ~0.95x). An idle
   * connection's request leaves at the end of this task (a microtask): a lone call waits
   * for nothing.
   */
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    if (this.pending.size > 1) setImmediate(this.flush);
    else queueMicrotask(this.flush);
  }

  forget(call: ClientCall): void {
    if (this.pending.get(call.requestId) === call) this.pending.take(call.requestId);
  }

  private write(call: ClientCall): void {
    if (call.done) return;
    const out = this.scratch ?? this.out;
    out.length = this.scratch === undefined ? out.length : 0;
    const start = beginFrame(out);
    try {
      this.options.serializer.write(wireRequestSchemas[call.op], call.message, out);
    } catch (error) {
      out.length = start;
      const message = error instanceof Error ? error.message : String(error);
      this.options.owner.complete(call, undefined, new DkvError("BAD_REQUEST", message));
      return;
    }
    const bodyLength = out.length - start - headerBytes;
    if (bodyLength > this.options.maxFrameBytes) {
      out.length = start;
      this.options.owner.complete(
        call,
        undefined,
        new DkvError(
          "TOO_LARGE",
          `request of ${bodyLength} bytes exceeds the frame limit of ${this.options.maxFrameBytes} bytes; send a smaller value`,
        ),
      );
      return;
    }
    finishFrame(out, start, {
      serializer: this.options.serializer.id,
      flags: 0,
      requestId: call.requestId,
      shard: call.shard,
      op: wireOpCodes[call.op],
      clientIdHigh: this.options.clientIdHigh,
      clientIdLow: this.options.clientIdLow,
    });
    if (this.scratch !== undefined) this.appendHttpRequest(call, this.scratch);
    this.pending.set(call);
    call.channel = this;
    call.maybeSent = true;
    this.queueFlush();
  }

  private appendHttpRequest(call: ClientCall, frame: ByteWriter): void {
    const authorization =
      this.options.token === undefined ? "" : `Authorization: Bearer ${this.options.token}\r\n`;
    const head =
      `POST /v1/${call.shard}/${call.op} HTTP/1.1\r\nHost: ${this.endpoint}\r\n${authorization}` +
      `Content-Type: application/octet-stream\r\nContent-Length: ${frame.length}\r\n\r\n`;
    const prefixAt = this.out.length;
    this.out.lengthPrefixedUtf8(head);
    // Drop the length prefix, whatever the head's UTF-8 length (a host name may not be ASCII).
    this.out.buf.copyWithin(prefixAt, prefixAt + 4, this.out.length);
    this.out.length -= 4;
    this.out.bytes(frame.written());
  }

  /** Writes what the socket takes; the rest waits for the drain event. */
  private readonly flush = (): void => {
    this.flushQueued = false;
    const socket = this.socket;
    if (socket === undefined || this.out.length === 0) return;
    this.socketWrites++;
    const written = socket.write(this.out.written());
    this.out.consume(Math.max(0, written));
  };

  private connect(): void {
    this.state = "connecting";
    this.receivedBytes = 0;
    this.lastSocketError = undefined;
    this.protocolMismatch = undefined;
    this.connectionError = undefined;
    const tls = this.options.tls;
    const handlers = {
      // An ArrayBuffer per chunk, wrapped here: the frame decoder reads it through a DataView,
      // and the `.buffer` of a Uint8Array that Bun hands over costs JSC an extra
      // allocation per chunk (it was a tenth of the client's CPU at 50 shards).
      binaryType: "arraybuffer" as const,
      // With TLS the connection is usable once the handshake verified the server.
      handshake: (socket: Socket<SocketChannel>, success: boolean, authorizationError: Error | null) => {
        if (tls === undefined) return;
        if (this.state === "closed") {
          socket.end();
          return;
        }
        if (this.state !== "connecting") return;
        const failure = tlsHandshakeFailure(tls, success, authorizationError);
        if (failure !== undefined) {
          // Fail first: terminating calls the close handler at once.
          this.onConnectFailed(new Error(failure));
          socket.terminate();
          return;
        }
        this.onOpen(socket);
      },
      // (Bun's connect types know only "buffer"; the chunk is an ArrayBuffer at run time.)
      data: (_socket: Socket<SocketChannel>, received: ArrayBuffer | Uint8Array) => {
        const chunk = received instanceof ArrayBuffer ? new Uint8Array(received) : received;
        if (this.receivedBytes === 0) {
          this.protocolMismatch = protocolMismatchOf(chunk, this.options.http === true, this.endpoint);
          if (this.protocolMismatch !== undefined) {
            this.socket?.terminate();
            return;
          }
        }
        this.receivedBytes += chunk.length;
        const ok = this.httpReader !== undefined ? this.httpReader.push(chunk) : this.decoder.push(chunk);
        if (!ok) this.socket?.terminate();
      },
      drain: () => this.flush(),
      close: (socket: Socket<SocketChannel>) => this.onClosed(socket),
      error: (socket: Socket<SocketChannel>, error: Error) => {
        this.lastSocketError = error.message;
        this.onClosed(socket);
      },
      connectError: () => {},
    };
    const endpoint = this.options.endpoint;
    let connecting: Promise<Socket<SocketChannel>>;
    try {
      connecting =
        endpoint.kind === "unix"
          ? Bun.connect<SocketChannel>({ unix: endpoint.path, socket: handlers, data: this })
          : Bun.connect<SocketChannel>({
              hostname: endpoint.hostname,
              port: endpoint.port,
              socket: handlers,
              data: this,
              ...(tls === undefined ? {} : { tls: bunClientTlsOptions(tls, endpoint.hostname) }),
            });
    } catch (error) {
      // Refused before any connection existed (e.g. TLS material Bun cannot load): nothing
      // was sent, and another attempt would fail the same way.
      this.onSetupFailed(error);
      return;
    }
    connecting.then(
      (socket) => {
        if (tls === undefined) this.onOpen(socket);
        else if (this.state === "connecting") this.tlsSocket = socket;
      },
      (error: unknown) => this.onConnectFailed(error),
    );
  }

  /** The server answered in another protocol on this connection (TLS, HTTP, dkv frames): why it failed. */
  private protocolMismatch: DkvError | undefined;

  /** The socket of a TLS connection still in its handshake, so a close before it counts as a failed connect. */
  private tlsSocket: Socket<SocketChannel> | undefined;

  private onOpen(socket: Socket<SocketChannel>): void {
    if (this.state === "closed") {
      socket.end();
      return;
    }
    this.state = "open";
    this.socket = socket;
    this.tlsSocket = undefined;
    this.backoffMs = 0;
    this.retryAtMs = 0;
    if (this.options.token !== undefined && !this.options.http) this.writeToken(this.options.token);
    const waiting = this.waiting;
    this.waiting = [];
    for (const call of waiting) this.write(call);
    const streams = this.waitingStreams;
    this.waitingStreams = [];
    for (const stream of streams) this.writeStream(stream);
  }

  /** The token frame, first on the connection (request id 0: a refusal is a connection error). */
  private writeToken(token: string): void {
    const start = beginFrame(this.out);
    this.out.bytes(utf8.encode(token));
    finishFrame(this.out, start, {
      serializer: this.options.serializer.id,
      flags: 0,
      requestId: 0,
      shard: 0,
      op: authenticateOpCode,
      clientIdHigh: this.options.clientIdHigh,
      clientIdLow: this.options.clientIdLow,
    });
    this.queueFlush();
  }

  private onSetupFailed(error: unknown): void {
    this.state = "idle";
    const detail = error instanceof Error ? error.message : String(error);
    const failure = new DkvError(
      "USAGE",
      `cannot set up a connection to ${this.endpoint}: ${detail}; check --cacert, --cert and --key`,
      { cause: error },
    );
    const waiting = this.waiting;
    this.waiting = [];
    for (const call of waiting) this.options.owner.complete(call, undefined, failure);
    const streams = this.waitingStreams;
    this.waitingStreams = [];
    for (const stream of streams) stream.onLost(failure);
  }

  private onConnectFailed(error: unknown): void {
    if (this.state === "closed" || this.state === "idle") return;
    this.tlsSocket = undefined;
    this.state = "idle";
    this.backoffMs = Math.min(Math.max(this.backoffMs * 2, backoffMinMs), backoffMaxMs);
    this.retryAtMs = performance.now() + this.backoffMs;
    const detail = error instanceof Error ? error.message : String(error);
    const failure = new DkvError(
      "UNAVAILABLE",
      `cannot connect to ${this.endpoint}: ${detail}${detail.startsWith("TLS") ? "" : "; is the server running there?"}`,
    );
    const waiting = this.waiting;
    this.waiting = [];
    for (const call of waiting) this.options.owner.failed(call, failure, false);
    const streams = this.waitingStreams;
    this.waitingStreams = [];
    for (const stream of streams) stream.onLost(failure);
  }

  private onClosed(socket: Socket<SocketChannel>): void {
    if (this.state === "connecting" && this.tlsSocket === socket) {
      const detail = this.lastSocketError ?? "the server closed the connection";
      this.onConnectFailed(new Error(`TLS handshake failed (${detail}); check --cacert and the host name`));
      return;
    }
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.out.reset();
    this.decoder.close();
    this.decoder = this.newDecoder();
    if (this.state !== "closed") this.state = "idle";
    const lost = this.pending.drain();
    const mismatch = this.protocolMismatch;
    if (mismatch !== undefined) {
      // The server could not have read a request in another protocol: nothing was applied,
      // and a retry would meet the same server.
      for (const call of lost) this.options.owner.complete(call, undefined, mismatch);
      const streams = [...this.streams.values()];
      this.streams.clear();
      for (const stream of streams) stream.onLost(mismatch);
      return;
    }
    let hint = "";
    if (this.receivedBytes === 0 && lost.length > 0) {
      const detail = this.lastSocketError === undefined ? "" : ` (${this.lastSocketError})`;
      hint =
        this.options.tls !== undefined
          ? ` before any reply${detail}: if the server requires client certificates (--client-cert-auth), pass --cert and --key signed by its CA`
          : ` before any reply${detail}: the server may be at its --max-client-connections limit; retry later`;
    }
    // The server said why before closing (requestId 0): that is the reason, not the loss.
    const said = this.connectionError;
    const failure = new DkvError(
      "UNAVAILABLE",
      said === undefined
        ? `lost the connection to ${this.endpoint}${hint}`
        : `${this.endpoint} closed the connection: ${said.message} [${said.code}]`,
    );
    for (const call of lost) this.options.owner.failed(call, failure, true);
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const stream of streams) stream.onLost(failure);
    // Calls queued while the socket was closing were never written: send them on a new one.
    if ((this.waiting.length > 0 || this.waitingStreams.length > 0) && this.state === "idle") this.connect();
  }

  private newDecoder(): FrameDecoder {
    if (this.options.http) {
      this.httpReader = new HttpResponseReader(
        (chunk) => this.decoder.push(chunk),
        (reason) => {
          this.connectionError = new DkvError(
            "BAD_FRAME",
            `unexpected HTTP reply from ${this.endpoint}: ${reason}`,
          );
        },
      );
    }
    return new FrameDecoder(this.options.maxFrameBytes, {
      onFrame: (header, body) => this.onReply(header, body),
      onFrameAt: (header, src, bodyStart, bodyEnd) => this.onReplyAt(header, src, bodyStart, bodyEnd),
      onOversized: (header, max) => {
        const call = this.take(header);
        if (call === undefined) return;
        this.options.owner.complete(
          call,
          undefined,
          new DkvError(
            "TOO_LARGE",
            `the reply of ${header.bodyLength} bytes exceeds this client's frame limit of ${max}`,
            {
              outcome: "unknown",
            },
          ),
        );
      },
      onCorrupt: () => {},
    });
  }

  private take(header: FrameHeader): ClientCall | undefined {
    return this.pending.take(header.requestId);
  }

  /**
   * A reply as the decoder's borrowed header and its body's place in `src` (valid during
   * the call only): a plain reply to a call is read straight from `src` when the serializer
   * can (binary), with no header or body view made for it; anything else (an error, a
   * stream's frame) goes on as a header and a body of its own.
   */
  private onReplyAt(header: FrameHeader, src: Uint8Array, bodyStart: number, bodyEnd: number): void {
    const serializer = this.options.serializer;
    if (
      (header.flags & flagError) !== 0 ||
      serializer.readAt === undefined ||
      this.streams.has(header.requestId)
    ) {
      this.onReply(copyHeader(header), src.subarray(bodyStart, bodyEnd));
      return;
    }
    const call = this.take(header);
    if (call === undefined) return;
    const leader = (header.flags & flagLeader) !== 0;
    try {
      const response = serializer.readAt(wireResponseSchemas[call.op], src, bodyStart, bodyEnd);
      this.options.owner.complete(call, response, undefined, leader);
    } catch (error) {
      this.failedToRead(call, error);
    }
  }

  private onReply(header: FrameHeader, body: Uint8Array): void {
    const stream = this.streams.get(header.requestId);
    if (stream !== undefined) {
      // An error frame ends the stream on the server's side.
      if ((header.flags & flagError) !== 0) this.streams.delete(header.requestId);
      stream.onFrame(header, body);
      return;
    }
    const call = this.take(header);
    if (call === undefined) {
      // requestId 0 carries a connection-level error (the server is about to close).
      if (header.requestId === 0 && (header.flags & flagError) !== 0)
        this.connectionError = readErrorBody(body);
      return;
    }
    if ((header.flags & flagError) !== 0) {
      this.options.owner.complete(call, undefined, readErrorBody(body));
      return;
    }
    try {
      const response = this.options.serializer.read(wireResponseSchemas[call.op], body);
      this.options.owner.complete(call, response, undefined, (header.flags & flagLeader) !== 0);
    } catch (error) {
      this.failedToRead(call, error);
    }
  }

  /** A reply that could not be read: the call's outcome is unknown. */
  private failedToRead(call: ClientCall, error: unknown): void {
    const failure = DkvError.from(error, "unknown", "BAD_FRAME");
    this.options.owner.complete(
      call,
      undefined,
      new DkvError(failure.code, failure.message, { outcome: "unknown" }),
    );
  }

  /** The last connection-level error the server sent, for diagnostics. */
  connectionError: DkvError | undefined;

  /** Drops the connection (what is pending fails as lost); the next send reconnects. */
  reset(): void {
    this.socket?.terminate();
  }

  async close(): Promise<void> {
    this.state = "closed";
    const failure = new DkvError("CLOSED", "the client was closed");
    const waiting = this.waiting;
    this.waiting = [];
    for (const call of waiting) this.options.owner.failed(call, failure, false);
    const streams = [...this.waitingStreams, ...this.streams.values()];
    this.waitingStreams = [];
    this.streams.clear();
    for (const stream of streams) stream.onLost(failure);
    const socket = this.socket;
    if (socket !== undefined) {
      this.flush();
      socket.end();
    }
  }
}

const tlsContentTypes = new Set([0x15, 0x16]); // alert, handshake

/**
 * What the first bytes a server sent say about a wrong --transport or a missing --cacert:
 * a TLS record to a plain client, an HTTP response to a tcp client, a dkv frame to an
 * http client. undefined: nothing recognised (the bytes go to the decoder).
 */
export function protocolMismatchOf(first: Uint8Array, http: boolean, endpoint: string): DkvError | undefined {
  const mismatch = (message: string) => new DkvError("BAD_FRAME", message, { outcome: "not-applied" });
  if (first.length >= 2 && tlsContentTypes.has(first[0]!) && first[1] === 0x03) {
    return mismatch(
      `${endpoint} speaks TLS: pass --cacert FILE (the CA that signed its certificate; --insecure-skip-tls-verify only to test)`,
    );
  }
  if (http) {
    if (first[0] === frameMagic) {
      return mismatch(
        `${endpoint} speaks dkv's tcp protocol, not HTTP: check --transport (pass --transport tcp)`,
      );
    }
    return undefined;
  }
  if (first.length >= 7 && String.fromCharCode(...first.subarray(0, 7)) === "HTTP/1.") {
    return mismatch(
      `${endpoint} answered in HTTP: it serves the http transport; check --transport (pass --transport http)`,
    );
  }
  return undefined;
}

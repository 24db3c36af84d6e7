/**
 * One accepted tcp/unix connection of the client listener (socket-server.ts): its frames
 * in (routed to the dispatcher, the token check, the streamed ops), its replies out
 * (batched into one socket write per microtask turn, bounded while the peer does not
 * read) and its graceful close; and the answer to an HTTP client on the tcp port.
 */
import type { Socket } from "bun";
import type { Identity } from "../../auth/index.ts";
import {
  readSnapshotRequest,
  SNAPSHOT_STREAM_OP,
  type StreamedReplyTarget,
  serveSnapshotStream,
} from "../../backup/stream-server.ts";
import { DkvError } from "../../errors.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import {
  beginFrame,
  connectionHeader,
  copyHeader,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagLeader,
  flagResponse,
  headerBytes,
} from "../protocol/frame.ts";
import { authenticateOpCode, type Message, opNameByCode, streamOpCodes } from "../protocol/types.ts";
import type { ReplyTarget } from "./dispatcher.ts";
import type { Refused } from "./refusals.ts";
import { writeReplyFrame } from "./reply.ts";
import type { SocketServerOptions } from "./socket-server.ts";
import { ConnectionWatches } from "./watch-stream.ts";

/** A streamed reply waits while more than this is queued for the peer. */
const streamHighWaterBytes = 4 * 1024 * 1024;

/** Per-connection bounds: a peer that reads nothing or floods requests is cut off or refused. */
const pendingOutputBytesMin = 64 * 1024 * 1024;
const inflightPerConnectionMax = 8192;
const closeGraceMs = 2000;
/** Largest frame of a connection that has not authenticated yet (the token frame). */
export const preAuthFrameBytesMax = 4096;
/** Unread replies (all refusals) a connection may pile up before it authenticates. */
const preAuthPendingOutputBytesMax = 256 * 1024;
/**
 * A connection's reply buffer starts small and doubles as its bursts need: with the 16 KiB
 * default, every short-lived connection left 16 KiB of ArrayBuffer for the GC, which
 * counts such memory late (the client-port fuzz saw 120 MiB of it before a collection).
 */
const connectionOutputInitialBytes = 512;
const httpMethods = ["GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH "];

/**
 * Does the first chunk of a connection start like an HTTP/1 request line from a person's
 * tool (curl, a browser)? dkv's own http client (binary frames as application/octet-stream)
 * is left to the frame decoder: it recognises the binary refusal and names --transport.
 */
function startsLikeHttpRequest(chunk: Uint8Array): boolean {
  const head = String.fromCharCode(...chunk.subarray(0, 8));
  if (!httpMethods.some((method) => head.startsWith(method))) return false;
  const text = new TextDecoder("latin1").decode(chunk.subarray(0, 2048)).toLowerCase();
  return !text.includes("content-type: application/octet-stream");
}

/** What an HTTP client on the tcp port reads: the transport to use instead. */
const httpOnTcpReply = (() => {
  const body = `${JSON.stringify({
    error: "BAD_FRAME",
    message:
      "this is a dkv tcp port (binary frames), not HTTP: use the dkv CLI or client with --transport tcp, or start the server with --transport http to use curl",
    outcome: "not-applied",
  })}\n`;
  return new TextEncoder().encode(
    `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
})();

/**
 * One accepted connection: decodes frames, hands them to the dispatcher, and batches
 * replies into one socket write per microtask turn. Bun's socket.write may take only part
 * of the bytes; the rest stays in `out` until the drain event.
 */
export class ServerConnection implements ReplyTarget, StreamedReplyTarget {
  private readonly out = new ByteWriter(connectionOutputInitialBytes);
  private readonly decoder: FrameDecoder;
  private flushQueued = false;
  private closing = false;
  private inflight = 0;
  closed = false;
  private closedResolvers: (() => void)[] = [];
  /** The token this connection authenticated with (auth on), checked per request. */
  identity: Identity | undefined;
  /** It presented a token the authority knows (at that time). */
  private authenticated = false;
  /** TLS handshake finished (always true without TLS). */
  secured: boolean;
  readonly openedAtMs: number;
  lastActivityMs: number;
  private readonly pendingOutputBytesMax: number;
  private streamWaiters: { resolve(): void; reject(error: DkvError): void }[] = [];
  /** The first bytes arrived (they are checked for an HTTP request). */
  private sawData = false;
  /** Open watches by request id; aborting one ends its stream (cancel, or the connection closed). */
  private readonly watches: ConnectionWatches;

  constructor(
    private readonly socket: Socket<SocketData>,
    private readonly options: SocketServerOptions,
    private readonly name: string,
    nowMs: number,
  ) {
    this.secured = options.tls === undefined;
    this.watches = new ConnectionWatches(
      options.watchersPerConnectionMax,
      options.dispatcher,
      options.serializer,
      options.authority,
    );
    this.openedAtMs = nowMs;
    this.lastActivityMs = nowMs;
    this.pendingOutputBytesMax = Math.max(pendingOutputBytesMin, 2 * (options.maxFrameBytes + headerBytes));
    const frameMax = options.authority === undefined ? options.maxFrameBytes : preAuthFrameBytesMax;
    this.decoder = new FrameDecoder(frameMax, {
      onFrame: (header, body) => this.onFrame(header, body),
      onFrameAt: (header, src, bodyStart, bodyEnd) => this.onFrameAt(header, src, bodyStart, bodyEnd),
      onOversized: (header, max) => {
        this.options.logger.warn(`${this.name}: refused a ${header.bodyLength}-byte frame (limit ${max})`);
        // Before its token a connection may send only small frames: the missing token is
        // the problem, not the size.
        const beforeToken = this.options.authority !== undefined && !this.authenticated;
        this.writeReply(
          header,
          undefined,
          beforeToken
            ? new DkvError(
                "UNAUTHENTICATED",
                `this connection has no accepted token and the server requires one (--auth-file): pass --token or --token-file (before a token, requests over ${max} bytes are refused)`,
              )
            : new DkvError(
                "TOO_LARGE",
                `request of ${header.bodyLength} bytes exceeds the server's frame limit of ${max} bytes; send a smaller value or raise the limit`,
              ),
        );
      },
      onCorrupt: (reason) => {
        this.options.logger.warn(`${this.name}: closing connection: ${reason}`);
        this.writeReply(
          connectionHeader(options.serializer.id),
          undefined,
          new DkvError("BAD_FRAME", `not a dkv frame: ${reason}`),
        );
        this.closeGracefully();
      },
    });
  }

  onData(chunk: Uint8Array, nowMs: number): void {
    this.lastActivityMs = nowMs;
    if (this.closing) return;
    if (!this.sawData) {
      this.sawData = true;
      // curl (or a browser) on the tcp port: answer in HTTP, so the user reads why.
      if (startsLikeHttpRequest(chunk)) {
        this.options.logger.debug(`${this.name}: an HTTP request on the dkv tcp port; answered 400`);
        this.out.bytes(httpOnTcpReply);
        this.closeGracefully();
        return;
      }
    }
    this.decoder.push(chunk);
  }

  /** Has it finished its handshake (and, with auth on, presented a known token)? */
  get established(): boolean {
    return this.secured && (this.options.authority === undefined || this.authenticated);
  }

  get idle(): boolean {
    return this.inflight === 0;
  }

  /**
   * A frame as the decoder's borrowed header and the body's place in `src` (valid during
   * the call only): a plain request goes to the dispatcher as it is, with no object per
   * frame; anything else (a control op, a refusal here) as a header and body of its own.
   */
  private onFrameAt(header: FrameHeader, src: Uint8Array, bodyStart: number, bodyEnd: number): void {
    const op = header.op;
    if (
      (header.flags & flagResponse) === 0 &&
      op !== authenticateOpCode &&
      this.inflight < inflightPerConnectionMax &&
      op !== SNAPSHOT_STREAM_OP &&
      op !== streamOpCodes.watch &&
      op !== streamOpCodes.watchCancel
    ) {
      this.inflight++;
      this.options.dispatcher.dispatchFrameAt(header, src, bodyStart, bodyEnd, this);
      return;
    }
    this.onFrame(copyHeader(header), src.subarray(bodyStart, bodyEnd));
  }

  private onFrame(header: FrameHeader, body: Uint8Array): void {
    if ((header.flags & flagResponse) !== 0) {
      this.writeReply(header, undefined, new DkvError("BAD_FRAME", "a client must not send response frames"));
      return;
    }
    if (header.op === authenticateOpCode) {
      this.authenticate(header, body);
      return;
    }
    if (this.inflight >= inflightPerConnectionMax) {
      this.writeReply(
        header,
        undefined,
        new DkvError(
          "UNAVAILABLE",
          `more than ${inflightPerConnectionMax} requests in flight on one connection; wait for replies`,
        ),
      );
      return;
    }
    const snapshotStream = this.options.snapshotStream;
    if (header.op === SNAPSHOT_STREAM_OP && snapshotStream !== undefined) {
      // Streamed outside the dispatcher, so it gets the one permission check here.
      const request = readSnapshotRequest(body);
      const refusal =
        this.options.authority?.authorize(this.identity, "snapshotSave", request.shard ?? 0, {
          shard: request.shard,
        }) ?? request.error;
      if (refusal !== undefined) {
        this.writeReply(header, undefined, refusal);
        return;
      }
      this.inflight++;
      const id = this.options.serializer.id;
      void serveSnapshotStream(header, request.shard, snapshotStream, this, id).finally(
        () => this.inflight--,
      );
      return;
    }
    if (header.op === streamOpCodes.watch) {
      this.startWatch(header, body);
      return;
    }
    if (header.op === streamOpCodes.watchCancel) {
      // No reply: the stream simply ends; frames already on their way are ignored by the client.
      this.watches.cancel(header.requestId);
      return;
    }
    this.inflight++;
    this.options.dispatcher.dispatchFrame(header, body, this);
  }

  /** A watch: a streamed reply of event frames on this connection until cancelled. */
  private startWatch(header: FrameHeader, body: Uint8Array): void {
    const stream = this.watches.start(header, body, this.identity, this);
    if (stream instanceof DkvError) {
      this.writeReply(header, undefined, stream);
      return;
    }
    this.inflight++;
    void stream.finally(() => this.inflight--);
  }

  /**
   * The token frame: authenticated at the edge, so the connection carries the identity
   * and each request costs a Map lookup. The token is never logged.
   */
  private authenticate(header: FrameHeader, body: Uint8Array): void {
    const authority = this.options.authority;
    if (authority === undefined) {
      this.writeAuthenticated(header);
      return;
    }
    // Kept even when unknown, so each later request is refused as "token not known".
    this.identity = authority.identify(body);
    if (!authority.knows(this.identity)) {
      this.authenticated = false;
      this.decoder.maxBodyBytes = preAuthFrameBytesMax;
      this.options.logger.debug(`${this.name}: refused an unknown token`);
      this.writeReply(
        header,
        undefined,
        new DkvError(
          "UNAUTHENTICATED",
          "the token is not known to this server; check --token-file or DKV_TOKEN",
        ),
      );
      return;
    }
    this.authenticated = true;
    this.decoder.maxBodyBytes = this.options.maxFrameBytes;
    this.writeAuthenticated(header);
  }

  private writeAuthenticated(header: FrameHeader): void {
    if (this.closed) return;
    const start = beginFrame(this.out);
    finishFrame(this.out, start, { ...header, serializer: this.options.serializer.id, flags: flagResponse });
    this.queueFlush();
  }

  /** A streamed reply's frame; resolves once the peer has read most of what is queued. */
  writeStreamed(write: (out: ByteWriter) => void): Promise<void> {
    if (this.closed) return Promise.reject(new DkvError("CLOSED", "the client closed the connection"));
    write(this.out);
    // Batched like replies: the frames of many watches written in one turn leave in one write.
    this.queueFlush();
    if (this.out.length <= streamHighWaterBytes) return Promise.resolve();
    return new Promise((resolve, reject) => this.streamWaiters.push({ resolve, reject }));
  }

  /** The outcome of a dispatched request. */
  deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void {
    this.inflight--;
    this.writeReply(header, response, error);
  }

  private writeReply(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void {
    if (this.closed) return;
    // Only a shard's data ops say who leads it (an admin op's shard id means nothing).
    const leaderFlag =
      error === undefined &&
      this.options.leads?.(header.shard) === true &&
      opNameByCode(header.op) !== undefined
        ? flagLeader
        : 0;
    writeReplyFrame(
      this.out,
      header,
      this.options.serializer,
      response,
      error,
      this.options.logger,
      leaderFlag,
    );
    this.queueFlush();
  }

  private queueFlush(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  readonly flush = (): void => {
    this.flushQueued = false;
    if (this.closed || this.out.length === 0) {
      if (this.closing && this.out.length === 0) this.socket.end();
      return;
    }
    const written = this.socket.write(this.out.written());
    this.out.consume(Math.max(0, written));
    if (this.streamWaiters.length > 0 && this.out.length <= streamHighWaterBytes) {
      const waiters = this.streamWaiters;
      this.streamWaiters = [];
      for (const waiter of waiters) waiter.resolve();
    }
    const pendingMax = this.established ? this.pendingOutputBytesMax : preAuthPendingOutputBytesMax;
    if (this.out.length > pendingMax) {
      this.options.logger.warn(`${this.name}: closing connection: the peer does not read its replies`);
      this.socket.terminate();
      return;
    }
    if (this.closing && this.out.length === 0) this.socket.end();
  };

  /** Stops reading, sends what is pending, then closes; forced after a grace period. */
  closeGracefully(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closing = true;
    this.decoder.close();
    const closedPromise = new Promise<void>((resolve) => this.closedResolvers.push(resolve));
    const timer = setTimeout(() => this.socket.terminate(), closeGraceMs);
    closedPromise.then(() => clearTimeout(timer));
    this.flush();
    return closedPromise;
  }

  terminate(): void {
    this.socket.terminate();
  }

  onClose(): void {
    this.closed = true;
    this.decoder.close();
    this.watches.abortAll();
    const waiters = this.streamWaiters;
    this.streamWaiters = [];
    for (const waiter of waiters) waiter.reject(new DkvError("CLOSED", "the client closed the connection"));
    for (const resolve of this.closedResolvers) resolve();
    this.closedResolvers = [];
  }
}

export type SocketData = ServerConnection | Refused | undefined;

import { existsSync, unlinkSync } from "node:fs";
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import {
  SNAPSHOT_STREAM_OP,
  type StreamedReplyTarget,
  serveSnapshotStream,
} from "../../backup/stream-server.ts";
import { DkvError } from "../../errors.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import { type Endpoint, formatInet } from "../protocol/endpoint.ts";
import { FrameDecoder, type FrameHeader, flagResponse } from "../protocol/frame.ts";
import type { Message } from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import type { ReplyTarget, RequestDispatcher, RpcLogger } from "./dispatcher.ts";
import { writeReplyFrame } from "./reply.ts";

export interface SocketServerOptions {
  endpoint: Endpoint;
  dispatcher: RequestDispatcher;
  serializer: Serializer;
  maxFrameBytes: number;
  logger: RpcLogger;
  observer?: ConnectionObserver | undefined;
  snapshotStream?: SnapshotStreamSource | undefined;
}

/** Metrics hooks: accepted connections opened and closed. */
export interface ConnectionObserver {
  connectionOpened(): void;
  connectionClosed(): void;
}

/** A streamed reply waits while more than this is queued for the peer. */
const streamHighWaterBytes = 4 * 1024 * 1024;

/** Per-connection bounds: a peer that reads nothing or floods requests is cut off or refused. */
const pendingOutputBytesMax = 256 * 1024 * 1024;
const inflightPerConnectionMax = 8192;
const closeGraceMs = 2000;

/**
 * One accepted connection: decodes frames, hands them to the dispatcher, and batches
 * replies into one socket write per microtask turn. Bun's socket.write may take only part
 * of the bytes; the rest stays in `out` until the drain event.
 */
class ServerConnection implements ReplyTarget, StreamedReplyTarget {
  private readonly out = new ByteWriter();
  private readonly decoder: FrameDecoder;
  private flushQueued = false;
  private closing = false;
  private inflight = 0;
  closed = false;
  private closedResolvers: (() => void)[] = [];
  private streamWaiters: { resolve(): void; reject(error: DkvError): void }[] = [];

  constructor(
    private readonly socket: Socket<ServerConnection>,
    private readonly options: SocketServerOptions,
    private readonly name: string,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameBytes, {
      onFrame: (header, body) => this.onFrame(header, body),
      onOversized: (header, max) => {
        this.options.logger.warn(`${this.name}: refused a ${header.bodyLength}-byte frame (limit ${max})`);
        this.writeReply(
          header,
          undefined,
          new DkvError(
            "TOO_LARGE",
            `request of ${header.bodyLength} bytes exceeds the server's frame limit of ${max} bytes; send a smaller value or raise the limit`,
          ),
        );
      },
      onCorrupt: (reason) => {
        this.options.logger.warn(`${this.name}: closing connection: ${reason}`);
        const header: FrameHeader = {
          serializer: options.serializer.id,
          flags: 0,
          bodyLength: 0,
          requestId: 0,
          shard: 0,
          op: 0,
          clientIdHigh: 0,
          clientIdLow: 0,
        };
        this.writeReply(header, undefined, new DkvError("BAD_FRAME", `not a dkv frame: ${reason}`));
        this.closeGracefully();
      },
    });
  }

  onData(chunk: Uint8Array): void {
    if (!this.closing) this.decoder.push(chunk);
  }

  private onFrame(header: FrameHeader, body: Uint8Array): void {
    if ((header.flags & flagResponse) !== 0) {
      this.writeReply(header, undefined, new DkvError("BAD_FRAME", "a client must not send response frames"));
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
    this.inflight++;
    const snapshotStream = this.options.snapshotStream;
    if (header.op === SNAPSHOT_STREAM_OP && snapshotStream !== undefined) {
      const id = this.options.serializer.id;
      void serveSnapshotStream(header, body.slice(), snapshotStream, this, id).finally(() => this.inflight--);
      return;
    }
    this.options.dispatcher.dispatchFrame(header, body, this);
  }

  /** A streamed reply's frame; resolves once the peer has read most of what is queued. */
  writeStreamed(write: (out: ByteWriter) => void): Promise<void> {
    if (this.closed) return Promise.reject(new DkvError("CLOSED", "the client closed the connection"));
    write(this.out);
    this.flush();
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
    writeReplyFrame(this.out, header, this.options.serializer, response, error, this.options.logger);
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
    if (this.out.length > pendingOutputBytesMax) {
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

  onClose(): void {
    this.closed = true;
    this.decoder.close();
    const waiters = this.streamWaiters;
    this.streamWaiters = [];
    for (const waiter of waiters) waiter.reject(new DkvError("CLOSED", "the client closed the connection"));
    for (const resolve of this.closedResolvers) resolve();
    this.closedResolvers = [];
  }
}

export interface SocketServer {
  readonly endpoint: string;
  stop(drainMs: number): Promise<void>;
}

export async function startSocketServer(options: SocketServerOptions): Promise<SocketServer> {
  const connections = new Set<ServerConnection>();
  let accepted = 0;
  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: Socket<ServerConnection>) {
      const connection = new ServerConnection(socket, options, `connection ${++accepted}`);
      socket.data = connection;
      connections.add(connection);
      options.observer?.connectionOpened();
    },
    data(socket: Socket<ServerConnection>, chunk: Uint8Array) {
      socket.data.onData(chunk);
    },
    drain(socket: Socket<ServerConnection>) {
      socket.data.flush();
    },
    close(socket: Socket<ServerConnection>) {
      socket.data?.onClose();
      if (connections.delete(socket.data)) options.observer?.connectionClosed();
    },
    error(socket: Socket<ServerConnection>, error: Error) {
      options.logger.debug(`socket error: ${error.message}`);
      socket.data?.onClose();
      if (connections.delete(socket.data)) options.observer?.connectionClosed();
    },
  };
  const endpoint = options.endpoint;
  let listener: TCPSocketListener<ServerConnection> | UnixSocketListener<ServerConnection>;
  let bound: string;
  try {
    if (endpoint.kind === "unix") {
      await removeStaleSocket(endpoint.path);
      listener = Bun.listen<ServerConnection>({ unix: endpoint.path, socket: handlers });
      bound = endpoint.path;
    } else {
      const tcp = Bun.listen<ServerConnection>({
        hostname: endpoint.hostname,
        port: endpoint.port,
        socket: handlers,
      });
      listener = tcp;
      bound = formatInet(endpoint.hostname, tcp.port);
    }
  } catch (error) {
    const where = endpoint.kind === "unix" ? endpoint.path : formatInet(endpoint.hostname, endpoint.port);
    throw new DkvError(
      "UNAVAILABLE",
      `cannot listen on ${where}: ${error instanceof Error ? error.message : String(error)}; is another server using it?`,
      { cause: error },
    );
  }
  options.logger.info(`listening on ${bound}`);
  return {
    endpoint: bound,
    async stop(drainMs: number) {
      listener.stop(false);
      await options.dispatcher.drain(drainMs);
      await Promise.all([...connections].map((c) => c.closeGracefully()));
      listener.stop(true);
      if (endpoint.kind === "unix" && existsSync(endpoint.path)) unlinkSync(endpoint.path);
    },
  };
}

/** A socket file left by a crashed server blocks listen; remove it only if nobody answers on it. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  try {
    const probe = await Bun.connect({ unix: path, socket: { data() {} } });
    probe.end();
  } catch {
    unlinkSync(path);
  }
}

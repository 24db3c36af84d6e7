/**
 * The tcp/unix client listener: binds (a unix socket 0600, replacing a stale file), accepts
 * connections up to the cap (a refused client reads why), sweeps the handshake and idle
 * timeouts, and stops by draining. Each connection is a ServerConnection
 * (socket-connection.ts).
 */
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import type { TokenAuthority } from "../../auth/index.ts";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import { DkvError } from "../../errors.ts";
import { ByteWriter } from "../protocol/byte-writer.ts";
import { type Endpoint, formatInet } from "../protocol/endpoint.ts";
import { connectionHeader } from "../protocol/frame.ts";
import type { Serializer } from "../serializer/types.ts";
import { type ConnectionLimits, type ConnectionObserver, sweepConnections } from "./connection-limits.ts";
import type { RequestDispatcher, RpcLogger } from "./dispatcher.ts";
import { bunTlsOptions, type ServerTls } from "./listener-security.ts";
import { ConnectionRefuser, socketEvents } from "./refusals.ts";
import { writeReplyFrame } from "./reply.ts";
import { ServerConnection, type SocketData } from "./socket-connection.ts";

export interface SocketServerOptions {
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
  /** Watches open at once on one connection; more are refused with RESOURCE_EXHAUSTED. */
  watchersPerConnectionMax: number;
  /** Does this member lead `shard` now (a replicated shard)? Its data replies carry flagLeader. */
  leads?: ((shard: number) => boolean) | undefined;
}

export interface SocketServer {
  readonly endpoint: string;
  /** Connections open now. */
  readonly connections: number;
  stop(drainMs: number): Promise<void>;
}

/** The error frame a client refused at the connection cap reads before the close. */
function refusalFrame(options: SocketServerOptions): Uint8Array {
  const out = new ByteWriter(256);
  writeReplyFrame(
    out,
    connectionHeader(options.serializer.id),
    options.serializer,
    undefined,
    new DkvError(
      "UNAVAILABLE",
      `the server has ${options.limits.maxConnections} client connections open (--max-client-connections); retry later, share one connection, or raise the limit`,
    ),
    options.logger,
  );
  return out.written().slice();
}

export async function startSocketServer(options: SocketServerOptions): Promise<SocketServer> {
  const connections = new Set<ServerConnection>();
  const { limits, logger } = options;
  let accepted = 0;
  const refuser = new ConnectionRefuser<ServerConnection>({
    name: options.endpoint.kind,
    capFlag: "--max-client-connections",
    maxConnections: limits.maxConnections,
    logger,
    tls: options.tls !== undefined,
    reason: refusalFrame(options),
  });

  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: Socket<SocketData>) {
      const nowMs = performance.now();
      if (connections.size >= limits.maxConnections) {
        refuser.refuse(socket, nowMs);
        return;
      }
      const connection = new ServerConnection(socket, options, `connection ${++accepted}`, nowMs);
      socket.data = connection;
      connections.add(connection);
      options.observer?.connectionOpened();
    },
    ...socketEvents<ServerConnection>({
      isConnection: (data): data is ServerConnection => data instanceof ServerConnection,
      connections: connections,
      refuser,
      observer: options.observer,
      logger,
      logPrefix: "",
    }),
  };
  const endpoint = options.endpoint;
  const tls = options.tls === undefined ? undefined : bunTlsOptions(options.tls);
  let listener: TCPSocketListener<SocketData> | UnixSocketListener<SocketData>;
  let bound: string;
  try {
    if (endpoint.kind === "unix") {
      await removeStaleSocket(endpoint.path);
      // Created 0600 (owner only): the umask applies to the bind, and nothing else runs between.
      const umask = process.umask(0o177);
      try {
        listener = Bun.listen<SocketData>({ unix: endpoint.path, socket: handlers });
      } finally {
        process.umask(umask);
      }
      bound = endpoint.path;
    } else {
      const tcp = Bun.listen<SocketData>({
        hostname: endpoint.hostname,
        port: endpoint.port,
        socket: handlers,
        ...(tls === undefined ? {} : { tls }),
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
  const sweeper = startSweeper(connections, limits, logger);
  logger.info(`listening on ${bound}${tls === undefined ? "" : " (TLS)"}`);
  return {
    endpoint: bound,
    get connections() {
      return connections.size;
    },
    async stop(drainMs: number) {
      clearInterval(sweeper);
      listener.stop(false);
      await options.dispatcher.drain(drainMs);
      await Promise.all([...connections].map((c) => c.closeGracefully()));
      refuser.stop();
      listener.stop(true);
      if (endpoint.kind === "unix") removeSocketFile(endpoint.path);
    },
  };
}

/**
 * Closes connections that never finish their handshake (TLS, and the token with auth on)
 * in time, and established ones idle for longer than the idle timeout. One timer per
 * listener, so the cost does not grow with timers per connection.
 */
function startSweeper(
  connections: Set<ServerConnection>,
  limits: ConnectionLimits,
  logger: RpcLogger,
): ReturnType<typeof setInterval> {
  return sweepConnections(connections, limits, (connection, nowMs) => {
    if (!connection.established) {
      if (nowMs - connection.openedAtMs > limits.handshakeTimeoutMs) {
        logger.debug(
          `closing a connection that did not finish its handshake in ${limits.handshakeTimeoutMs} ms`,
        );
        connection.terminate();
      }
    } else if (
      limits.idleTimeoutMs > 0 &&
      connection.idle &&
      nowMs - connection.lastActivityMs > limits.idleTimeoutMs
    ) {
      logger.debug(`closing a connection idle for ${limits.idleTimeoutMs} ms`);
      void connection.closeGracefully();
    }
  });
}

/** A socket file left by a crashed server blocks listen; remove it only if nobody answers on it. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    const probe = await Bun.connect({ unix: path, socket: { data() {} } });
    probe.end();
  } catch {
    removeSocketFile(path);
  }
}

/** node:fs only for unix sockets: any node module costs a tcp server ~4-8 MiB of RSS. */
function removeSocketFile(path: string): void {
  const { existsSync, unlinkSync } = require("node:fs") as typeof import("node:fs");
  if (existsSync(path)) unlinkSync(path);
}

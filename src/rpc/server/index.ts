import type { TokenAuthority } from "../../auth/index.ts";
import type { SnapshotStreamSource } from "../../backup/source.ts";
import {
  DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CLIENT_CONNECTIONS,
} from "../../config/client-security-options.ts";
import { REQUEST_TIMEOUT_MS_DEFAULT, WATCHERS_PER_CONNECTION_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import { parseEndpoint } from "../protocol/endpoint.ts";
import { defaultMaxFrameBytes } from "../protocol/frame.ts";
import {
  type SerializerName,
  serializerNames,
  type TransportName,
  transportNames,
} from "../protocol/types.ts";
import { createSerializer } from "../serializer/index.ts";
import type { ConnectionLimits, ConnectionObserver } from "./connection-limits.ts";
import { type DedupLimits, defaultDedupLimits } from "./dedup-cache.ts";
import {
  RequestDispatcher,
  type RequestObserver,
  type RpcLogger,
  type ShardHandler,
  silentLogger,
} from "./dispatcher.ts";
import { checkProtectedMode, type ServerTls } from "./listener-security.ts";
import { startSocketServer } from "./socket-server.ts";

export type {
  ClusterStatusReport,
  MemberStatusReport,
  ShardStatusReport,
} from "../protocol/cluster-status.ts";
export type { SerializerName, TransportName } from "../protocol/types.ts";
export type { ConnectionLimits, ConnectionObserver } from "./connection-limits.ts";
export type { DedupLimits } from "./dedup-cache.ts";
export type { RequestObserver, RpcLogger, ShardHandler } from "./dispatcher.ts";
export {
  isLoopbackHost,
  loadServerTls,
  type ServerTls,
  type ServerTlsFiles,
} from "./listener-security.ts";

export interface RpcServerOptions {
  transport: TransportName;
  /** "host:port" (port 0 picks a free port) or, for unix, a socket path. */
  endpoint: string;
  serializer: SerializerName;
  shards: Map<number, ShardHandler>;
  /** Largest request body accepted; default 32 MiB. */
  maxFrameBytes?: number;
  /** Server-side deadline per request (plus the wait of a lock acquire); 0 or absent: none. */
  requestTimeoutMs?: number;
  logger?: RpcLogger;
  /** Bounds of the per-shard cache that makes retried writes apply at most once. */
  dedup?: DedupLimits;
  /** How long stop() waits for in-flight requests; default 5000 ms. */
  drainTimeoutMs?: number;
  /** Answers the clusterStatus op (`dkv cluster status`); absent: every shard shows as local. */
  clusterStatus?: () => ClusterStatusReport;
  /** Shard id → type name, shown by clusterStatus when `clusterStatus` is absent. */
  shardTypes?: ReadonlyMap<number, string>;
  /** TLS for tcp and http (see loadServerTls); absent: plain. */
  tls?: ServerTls;
  /** Token authentication and authorization (--auth-file); absent: every request is allowed. */
  authority?: TokenAuthority;
  /** Listen on a non-loopback address without TLS (protected mode is off; a warning is logged). */
  allowInsecure?: boolean;
  /** Connection bounds of the listener; defaults as the serve flags. */
  limits?: Partial<ConnectionLimits>;
  /** Metrics hooks: per request (dispatcher) and per connection (tcp/unix). */
  observer?: RequestObserver & ConnectionObserver;
  /** Serves the snapshot stream op (`dkv snapshot save`); absent: the op is refused as unknown. */
  snapshotStream?: SnapshotStreamSource;
  /** Answers the membership op (`dkv cluster add|promote|remove|transfer-leader`, `--join`). */
  membership?: (requestJson: string) => Promise<string>;
  /** Watches open at once on one tcp/unix connection (http: one per request, bounded by connections). */
  watchersPerConnection?: number;
  /**
   * Does this member lead `shard` (its Raft group) now? tcp/unix replies to that shard's
   * data ops then carry flagLeader, and clients send the shard's requests here.
   */
  leads?: (shard: number) => boolean;
}

export interface RpcServer extends AsyncDisposable {
  /** The bound "host:port" or socket path. */
  readonly endpoint: string;
  /** Open client connections (tcp/unix); requests in progress (http). */
  readonly connections: number;
  /** Graceful: stop accepting, finish in-flight requests (up to drainTimeoutMs), close. */
  stop(): Promise<void>;
}

export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  if (!transportNames.includes(options.transport)) {
    throw new DkvError("USAGE", `unknown transport "${options.transport}": use ${transportNames.join(", ")}`);
  }
  if (!serializerNames.includes(options.serializer)) {
    throw new DkvError(
      "USAGE",
      `unknown serializer "${options.serializer}": use ${serializerNames.join(", ")}`,
    );
  }
  for (const shard of options.shards.keys()) {
    if (!Number.isInteger(shard) || shard < 0 || shard > 0xffffffff) {
      throw new DkvError("USAGE", `shard id ${shard} must be an integer between 0 and 4294967295`);
    }
  }
  const maxFrameBytes = options.maxFrameBytes ?? defaultMaxFrameBytes;
  const logger = options.logger ?? silentLogger;
  const serializer = createSerializer(options.serializer);
  const dispatcher = new RequestDispatcher({
    shards: options.shards,
    serializer,
    requestTimeoutMs: options.requestTimeoutMs ?? 0,
    dedup: options.dedup ?? defaultDedupLimits,
    logger,
    ...(options.clusterStatus === undefined ? {} : { clusterStatus: options.clusterStatus }),
    ...(options.shardTypes === undefined ? {} : { shardTypes: options.shardTypes }),
    ...(options.authority === undefined ? {} : { authority: options.authority }),
    ...(options.observer === undefined ? {} : { observer: options.observer }),
    ...(options.membership === undefined ? {} : { membership: options.membership }),
  });
  const endpoint = parseEndpoint(options.transport, options.endpoint, "listen");
  if (options.tls !== undefined && options.transport === "unix") {
    throw new DkvError("USAGE", "TLS (--cert-file) applies to the tcp and http transports, not unix sockets");
  }
  checkProtectedMode(endpoint, options.tls !== undefined, options.allowInsecure === true, (m) =>
    logger.warn(m),
  );
  const limits: ConnectionLimits = {
    maxConnections: options.limits?.maxConnections ?? DEFAULT_MAX_CLIENT_CONNECTIONS,
    idleTimeoutMs: options.limits?.idleTimeoutMs ?? DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
    handshakeTimeoutMs: options.limits?.handshakeTimeoutMs ?? DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_MS,
  };
  const common = {
    endpoint,
    dispatcher,
    serializer,
    maxFrameBytes,
    logger,
    tls: options.tls,
    authority: options.authority,
    limits,
    observer: options.observer,
    snapshotStream: options.snapshotStream,
    watchersPerConnectionMax: options.watchersPerConnection ?? WATCHERS_PER_CONNECTION_DEFAULT,
    leads: options.leads,
  };
  // The http server (its parser, routes and backup streaming) is loaded only when used: a
  // tcp or unix server maps less code.
  const server =
    options.transport === "http"
      ? (await import("./http-server.ts")).startHttpServer(common)
      : await startSocketServer(common);
  const drainTimeoutMs = options.drainTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= server.stop(drainTimeoutMs).then(() => logger.info(`stopped ${server.endpoint}`));
    return stopping;
  };
  return {
    endpoint: server.endpoint,
    get connections() {
      return server.connections;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

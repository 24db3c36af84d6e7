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
import { type DedupLimits, defaultDedupLimits } from "./dedup-cache.ts";
import { RequestDispatcher, type RpcLogger, type ShardHandler, silentLogger } from "./dispatcher.ts";
import { startHttpServer } from "./http-server.ts";
import { startSocketServer } from "./socket-server.ts";

export type {
  ClusterStatusReport,
  MemberStatusReport,
  ShardStatusReport,
} from "../protocol/cluster-status.ts";
export type { SerializerName, TransportName } from "../protocol/types.ts";
export type { DedupLimits } from "./dedup-cache.ts";
export type { RpcLogger, ShardHandler } from "./dispatcher.ts";

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
  /** Answers the membership op (`dkv cluster add|promote|remove|transfer-leader`, `--join`). */
  membership?: (requestJson: string) => Promise<string>;
}

export interface RpcServer {
  /** The bound "host:port" or socket path. */
  readonly endpoint: string;
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
    ...(options.membership === undefined ? {} : { membership: options.membership }),
  });
  const endpoint = parseEndpoint(options.transport, options.endpoint, "listen");
  const common = { endpoint, dispatcher, serializer, maxFrameBytes, logger };
  const server = options.transport === "http" ? startHttpServer(common) : await startSocketServer(common);
  const drainTimeoutMs = options.drainTimeoutMs ?? 5000;
  let stopping: Promise<void> | undefined;
  return {
    endpoint: server.endpoint,
    stop() {
      stopping ??= server.stop(drainTimeoutMs).then(() => logger.info(`stopped ${server.endpoint}`));
      return stopping;
    },
  };
}

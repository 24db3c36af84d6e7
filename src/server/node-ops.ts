import { replicatedSnapshotSource, type SnapshotStreamSource } from "../backup/source.ts";
import { NodeMetrics } from "../metrics/node-metrics.ts";
import { checkReadiness } from "../metrics/readiness.ts";
import { SlowRequestLog } from "../metrics/slow-requests.ts";
import type { RaftHostObserver } from "../raft/host/types.ts";
import type { ConnectionObserver, RequestObserver } from "../rpc/server/index.ts";
import type { ReplicatedShards } from "../store/replicated/shards.ts";
import type { MetricsEndpoint } from "./metrics-endpoint.ts";

export interface NodeOpsOptions {
  /** --metrics-endpoint; "" turns metrics off (no observer is installed at all). */
  metricsEndpoint: string;
  /** --insecure */
  insecure: boolean;
  /** --slow-request-threshold in ms; 0 turns request tracing off. */
  slowRequestThresholdMs: number;
  /** --timeout: bounds the readiness probe's read and each piece of a snapshot stream. */
  requestTimeoutMs: number;
  logger: { info(message: string): void; warn(message: string): void; debug(message: string): void };
}

/**
 * The operations side of a node: metrics, health endpoints and the snapshot stream. Made
 * before the shards (their Raft host takes `raftObserver`), attached once they run, and
 * handed to the RPC server (`rpcOptions`).
 */
export class NodeOps {
  readonly metrics: NodeMetrics | undefined;
  readonly slowRequests: SlowRequestLog | undefined;
  readonly raftObserver: RaftHostObserver | undefined;
  private readonly requestObserver: (RequestObserver & ConnectionObserver) | undefined;
  private replicated: ReplicatedShards | undefined;
  private endpoint: MetricsEndpoint | undefined;

  constructor(private readonly options: NodeOpsOptions) {
    const metrics = options.metricsEndpoint === "" ? undefined : new NodeMetrics();
    const slow =
      options.slowRequestThresholdMs > 0
        ? new SlowRequestLog(options.slowRequestThresholdMs, options.logger)
        : undefined;
    this.metrics = metrics;
    this.slowRequests = slow;
    this.raftObserver = slow === undefined ? metrics : raftObserverWithTracing(metrics, slow);
    this.requestObserver = slow === undefined ? metrics : requestObserverWithTracing(metrics, slow);
  }

  /**
   * Starts the metrics endpoint over the running shards; returns its bound address (or
   * undefined when off). The endpoint's module (and the http server under it) is loaded
   * only when the endpoint is on: a member without it maps less code.
   */
  async attach(replicated: ReplicatedShards | undefined): Promise<string | undefined> {
    this.replicated = replicated;
    const metrics = this.metrics;
    if (metrics === undefined) return undefined;
    if (replicated !== undefined) metrics.watchGroups(() => replicated.status());
    const readinessTimeoutMs = Math.min(this.options.requestTimeoutMs, 2_000);
    const { startMetricsEndpoint } = await import("./metrics-endpoint.ts");
    this.endpoint = startMetricsEndpoint({
      endpoint: this.options.metricsEndpoint,
      registry: metrics.registry,
      insecure: this.options.insecure,
      logger: this.options.logger,
      readiness: () =>
        checkReadiness(replicated?.host, [...(replicated?.shards.keys() ?? [])], readinessTimeoutMs),
    });
    return this.endpoint.endpoint;
  }

  /** What startRpcServer takes from here. */
  rpcOptions(): { observer?: RequestObserver & ConnectionObserver; snapshotStream: SnapshotStreamSource } {
    const replicated = this.replicated;
    const snapshotStream = replicatedSnapshotSource(
      replicated === undefined
        ? undefined
        : {
            host: replicated.host,
            types: new Map([...replicated.shards.values()].map((shard) => [shard.id, shard.type])),
          },
      { timeoutMs: this.options.requestTimeoutMs },
    );
    const observer = this.requestObserver;
    return observer === undefined ? { snapshotStream } : { observer, snapshotStream };
  }

  async stop(): Promise<void> {
    await this.endpoint?.stop();
  }
}

/** The host's hooks: the metrics' (if on) plus the slow-request log's current trace. */
function raftObserverWithTracing(metrics: NodeMetrics | undefined, slow: SlowRequestLog): RaftHostObserver {
  return {
    proposed: (groupId) => metrics?.proposed(groupId),
    walSynced: (groupId, ms) => metrics?.walSynced(groupId, ms),
    snapshotDone: (groupId, kind, ms, ok) => metrics?.snapshotDone(groupId, kind, ms, ok),
    currentTrace: slow.currentTrace,
  };
}

function requestObserverWithTracing(
  metrics: NodeMetrics | undefined,
  slow: SlowRequestLog,
): RequestObserver & ConnectionObserver {
  return {
    started: (header) => slow.started(header),
    handedOff: () => slow.handedOff(),
    replied: (header, error, startMs, trace) => {
      metrics?.replied(header, error, startMs);
      slow.replied(header, error, startMs, trace);
    },
    connectionOpened: () => metrics?.connectionOpened(),
    connectionClosed: () => metrics?.connectionClosed(),
  };
}

import { DkvError } from "../errors.ts";
import type { Readiness } from "../metrics/readiness.ts";
import { type MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from "../metrics/registry.ts";
import { type Endpoint, parseEndpoint } from "../rpc/protocol/endpoint.ts";
import type { ConnectionLimits } from "../rpc/server/connection-limits.ts";
import type { FixedReply } from "../rpc/server/http-routes.ts";
import { type HttpServer, startHttpListener } from "../rpc/server/http-server.ts";
import type { Http1Request } from "../rpc/server/http1-parser.ts";

export interface MetricsEndpointOptions {
  /** --metrics-endpoint: HOST:PORT (port 0 picks a free port). */
  endpoint: string;
  registry: MetricsRegistry;
  readiness(): Promise<Readiness>;
  /** --insecure: allow a non-loopback address (it is plain HTTP). */
  insecure: boolean;
  logger: { info(message: string): void; warn(message: string): void; debug(message: string): void };
  /** Connection cap and timeouts; tests shorten them (default: 32 connections, 10 s head, 120 s idle). */
  limits?: ConnectionLimits | undefined;
}

export interface MetricsEndpoint {
  /** The bound HOST:PORT. */
  readonly endpoint: string;
  /** Connections open now, counted from accept. */
  readonly connections: number;
  stop(): Promise<void>;
}

/** Loopback names and addresses: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Connections the metrics listener keeps open at once (scrapers use one keep-alive each). */
export const METRICS_CONNECTIONS_MAX = 32;
/** A scraper must send its request this soon after connecting. */
const METRICS_HEAD_TIMEOUT_MS = 10_000;
/** A keep-alive connection with no request for this long is closed. */
const METRICS_IDLE_TIMEOUT_MS = 120_000;

const utf8 = new TextEncoder();
const text = (body: string, status = 200): FixedReply => ({
  status,
  contentType: "text/plain; charset=utf-8",
  body: utf8.encode(body),
});

/**
 * --metrics-endpoint as HOST:PORT, refused (USAGE) when it is not one or, without
 * `insecure`, not a loopback address (protected mode). `dkv serve` checks it before it
 * touches the data dir, so a mistyped flag changes nothing.
 */
export function checkMetricsEndpoint(text: string, insecure: boolean): Extract<Endpoint, { kind: "inet" }> {
  const endpoint = parseEndpoint("http", text, "listen");
  if (endpoint.kind !== "inet") throw new DkvError("USAGE", "--metrics-endpoint needs HOST:PORT");
  if (!isLoopback(endpoint.hostname) && !insecure) {
    throw new DkvError(
      "USAGE",
      `--metrics-endpoint ${text} is not a loopback address and metrics are served without TLS; ` +
        "listen on 127.0.0.1, or pass --insecure to expose them anyway",
    );
  }
  return endpoint;
}

/**
 * Serves `/metrics` (Prometheus text format), `/livez` (200 while the process runs) and
 * `/readyz` (200 when every shard can serve, else 503 with the reasons) on the same
 * HTTP/1.1 listener as the http transport: at most METRICS_CONNECTIONS_MAX connections,
 * counted from accept, each closed if it sends no request head within 10 s.
 * Protected mode: a non-loopback address is refused unless `insecure` is set.
 */
export function startMetricsEndpoint(options: MetricsEndpointOptions): MetricsEndpoint {
  const endpoint = checkMetricsEndpoint(options.endpoint, options.insecure);
  if (!isLoopback(endpoint.hostname)) {
    options.logger.warn(
      `metrics on ${options.endpoint} are served over plain HTTP to the network (--insecure)`,
    );
  }
  const serve = async (request: Http1Request): Promise<FixedReply> => {
    const query = request.target.indexOf("?");
    const path = query < 0 ? request.target : request.target.slice(0, query);
    if (request.method !== "GET" && request.method !== "HEAD") return text("use GET\n", 405);
    if (path === "/metrics") {
      return {
        status: 200,
        contentType: PROMETHEUS_CONTENT_TYPE,
        body: utf8.encode(options.registry.render()),
      };
    }
    if (path === "/livez") return text("ok\n");
    if (path === "/readyz") {
      const readiness = await options.readiness();
      return readiness.ready ? text("ok\n") : text(`not ready:\n${readiness.reasons.join("\n")}\n`, 503);
    }
    return text("not found: try /metrics, /livez or /readyz\n", 404);
  };
  let server: HttpServer;
  try {
    server = startHttpListener({
      endpoint,
      handler: { handle: serve, drain: async () => {} },
      name: "metrics",
      capFlag: `a fixed limit of ${METRICS_CONNECTIONS_MAX} for the metrics endpoint`,
      bodyBytesMax: 0,
      notHttpHint:
        "this is the metrics endpoint (HTTP GET /metrics, /livez, /readyz); dkv clients use the client port",
      logger: options.logger,
      limits: options.limits ?? {
        maxConnections: METRICS_CONNECTIONS_MAX,
        handshakeTimeoutMs: METRICS_HEAD_TIMEOUT_MS,
        idleTimeoutMs: METRICS_IDLE_TIMEOUT_MS,
      },
    });
  } catch (error) {
    throw new DkvError(
      "UNAVAILABLE",
      `cannot listen on --metrics-endpoint ${options.endpoint}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  options.logger.info(`metrics on http://${server.endpoint}/metrics (health: /livez, /readyz)`);
  return {
    endpoint: server.endpoint,
    get connections() {
      return server.connections;
    },
    async stop() {
      await server.stop(0);
    },
  };
}

import { DkvError } from "../errors.ts";
import type { Readiness } from "../metrics/readiness.ts";
import { type MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from "../metrics/registry.ts";
import { formatInet, parseEndpoint } from "../rpc/protocol/endpoint.ts";

export interface MetricsEndpointOptions {
  /** --metrics-endpoint: HOST:PORT (port 0 picks a free port). */
  endpoint: string;
  registry: MetricsRegistry;
  readiness(): Promise<Readiness>;
  /** --insecure: allow a non-loopback address (it is plain HTTP). */
  insecure: boolean;
  logger: { info(message: string): void; warn(message: string): void };
}

export interface MetricsEndpoint {
  /** The bound HOST:PORT. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** Loopback names and addresses: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

const text = (body: string, status = 200) =>
  new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });

/**
 * Serves `/metrics` (Prometheus text format), `/livez` (200 while the process runs) and
 * `/readyz` (200 when every shard can serve, else 503 with the reasons) on Bun.serve.
 * Protected mode: a non-loopback address is refused unless `insecure` is set.
 */
export function startMetricsEndpoint(options: MetricsEndpointOptions): MetricsEndpoint {
  const endpoint = parseEndpoint("http", options.endpoint, "listen");
  if (endpoint.kind !== "inet") throw new DkvError("USAGE", "--metrics-endpoint needs HOST:PORT");
  if (!isLoopback(endpoint.hostname)) {
    if (!options.insecure) {
      throw new DkvError(
        "USAGE",
        `--metrics-endpoint ${options.endpoint} is not a loopback address and metrics are served without TLS; ` +
          "listen on 127.0.0.1, or pass --insecure to expose them anyway",
      );
    }
    options.logger.warn(
      `metrics on ${options.endpoint} are served over plain HTTP to the network (--insecure)`,
    );
  }
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: endpoint.hostname,
      port: endpoint.port,
      fetch: async (request) => {
        const path = new URL(request.url).pathname;
        if (request.method !== "GET" && request.method !== "HEAD") return text("use GET\n", 405);
        if (path === "/metrics") {
          return new Response(options.registry.render(), {
            headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
          });
        }
        if (path === "/livez") return text("ok\n");
        if (path === "/readyz") {
          const readiness = await options.readiness();
          return readiness.ready ? text("ok\n") : text(`not ready:\n${readiness.reasons.join("\n")}\n`, 503);
        }
        return text("not found: try /metrics, /livez or /readyz\n", 404);
      },
    });
  } catch (error) {
    throw new DkvError(
      "UNAVAILABLE",
      `cannot listen on --metrics-endpoint ${options.endpoint}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const bound = formatInet(endpoint.hostname, server.port ?? endpoint.port);
  options.logger.info(`metrics on http://${bound}/metrics (health: /livez, /readyz)`);
  return {
    endpoint: bound,
    async stop() {
      await server.stop(true);
    },
  };
}

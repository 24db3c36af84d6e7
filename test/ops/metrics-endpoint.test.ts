import { describe, expect, test } from "bun:test";
import { MetricsRegistry } from "../../src/metrics/registry.ts";
import { startMetricsEndpoint } from "../../src/server/metrics-endpoint.ts";
import { type RawHttp, rawHttp, waitFor, within } from "../support/raw-http.ts";

/**
 * The metrics listener is bounded like the http transport: every connection counts from
 * accept, one over the cap is refused at once with a 503, and a connection that sends no
 * request head is closed after the head timeout.
 */

const quiet = { debug() {}, info() {}, warn() {} };

function start(limits?: { maxConnections: number; handshakeTimeoutMs: number; idleTimeoutMs: number }) {
  const registry = new MetricsRegistry();
  registry.gauge("t_up", "up").labels().set(1);
  let ready = true;
  const endpoint = startMetricsEndpoint({
    endpoint: "127.0.0.1:0",
    registry,
    insecure: false,
    logger: quiet,
    readiness: async () =>
      ready ? { ready: true, reasons: [] } : { ready: false, reasons: ["shard 100: no leader"] },
    ...(limits === undefined ? {} : { limits }),
  });
  return { endpoint, setReady: (value: boolean) => (ready = value) };
}

describe("metrics endpoint", () => {
  test("serves /metrics, /livez and /readyz over keep-alive; other paths and methods get a clear error", async () => {
    const { endpoint, setReady } = start();
    const raw = await rawHttp(endpoint.endpoint);
    try {
      const metrics = await raw.request("GET", "/metrics");
      expect(metrics.status).toBe(200);
      expect(metrics.head.toLowerCase()).toContain("content-type: text/plain; version=0.0.4");
      expect(metrics.body).toContain("t_up 1");
      expect((await raw.request("GET", "/livez")).body).toBe("ok\n");
      expect((await raw.request("GET", "/readyz")).status).toBe(200);
      setReady(false);
      const notReady = await raw.request("GET", "/readyz?verbose");
      expect(notReady.status).toBe(503);
      expect(notReady.body).toContain("shard 100: no leader");
      expect((await raw.request("GET", "/nope")).body).toContain("try /metrics");
      expect((await raw.request("POST", "/metrics")).status).toBe(405);
      expect(raw.isClosed()).toBe(false);
    } finally {
      raw.close();
      await endpoint.stop();
    }
  });

  test("bytes that are not HTTP are told this is the metrics endpoint, not to use --transport http", async () => {
    const { endpoint } = start();
    const raw = await rawHttp(endpoint.endpoint);
    try {
      raw.send("\u00db\u0001\u0001\u0000garbage");
      await within(5_000, raw.closed, "the refusal's close");
      expect(raw.received()).toContain("400");
      expect(raw.received()).toContain("this is the metrics endpoint");
      expect(raw.received()).not.toContain("--transport http");
    } finally {
      raw.close();
      await endpoint.stop();
    }
  });

  test("silent connections count from accept, the next scraper is refused at once, and they are closed after the head timeout", async () => {
    const cap = 3;
    const headTimeoutMs = 300;
    const { endpoint } = start({ maxConnections: cap, handshakeTimeoutMs: headTimeoutMs, idleTimeoutMs: 0 });
    const opened: RawHttp[] = [];
    try {
      for (let i = 0; i < cap; i++) opened.push(await rawHttp(endpoint.endpoint));
      await waitFor("the silent connections to be counted", () => endpoint.connections === cap);
      const scraper = await rawHttp(endpoint.endpoint);
      opened.push(scraper);
      const refused = await within(headTimeoutMs, scraper.request("GET", "/metrics"), "the refusal");
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body).message).toContain("connections open");
      await within(3_000, scraper.closed, "closing the refused connection");
      await within(
        5_000,
        Promise.all(opened.slice(0, cap).map((raw) => raw.closed)),
        "closing the silent connections",
      );
      const later = await rawHttp(endpoint.endpoint);
      opened.push(later);
      expect((await later.request("GET", "/metrics")).status).toBe(200);
    } finally {
      for (const raw of opened) raw.close();
      await endpoint.stop();
    }
  });
});

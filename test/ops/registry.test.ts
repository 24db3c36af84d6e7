import { describe, expect, test } from "bun:test";
import { MetricsRegistry } from "../../src/metrics/registry.ts";
import { histogramBuckets, parseMetrics, sampleValue } from "./prometheus.ts";

describe("metrics registry", () => {
  test("counters, gauges, histograms and collected gauges render as text a Prometheus parser reads back", () => {
    const registry = new MetricsRegistry();
    const requests = registry.counter("t_requests_total", "requests", ["op", "code"]);
    const setOk = requests.labels("set", "OK");
    setOk.inc();
    setOk.inc(2);
    requests.labels("get", "TIMEOUT").inc();
    registry.gauge("t_open", "open things").labels().set(7);
    const latency = registry.histogram("t_latency_seconds", "latency", ["op"], [0.01, 0.1, 1]).labels("set");
    for (const value of [0.005, 0.01, 0.05, 0.5, 5]) latency.observe(value);
    registry.collected("t_index", "an index read at scrape time", ["shard"], () => [
      { labels: ["200"], value: 42 },
      { labels: ['we"ird\\\n'], value: 1 },
    ]);

    const metrics = parseMetrics(registry.render());

    expect(sampleValue(metrics, "t_requests_total", { op: "set", code: "OK" })).toBe(3);
    expect(sampleValue(metrics, "t_requests_total", { op: "get", code: "TIMEOUT" })).toBe(1);
    expect(sampleValue(metrics, "t_open")).toBe(7);
    expect(sampleValue(metrics, "t_index", { shard: "200" })).toBe(42);
    expect(sampleValue(metrics, "t_index", { shard: 'we"ird\\\n' })).toBe(1);
    // A value equal to a bound falls in that bucket (le = "less or equal").
    expect(histogramBuckets(metrics, "t_latency_seconds", { op: "set" })).toEqual({
      "0.01": 2,
      "0.1": 3,
      "1": 4,
      "+Inf": 5,
    });
    expect(sampleValue(metrics, "t_latency_seconds_count", { op: "set" })).toBe(5);
    expect(sampleValue(metrics, "t_latency_seconds_sum", { op: "set" })).toBeCloseTo(5.565, 9);
    expect(metrics.types.get("t_latency_seconds")).toBe("HISTOGRAM");
  });

  test("a label set is resolved once: the same child comes back, and a wrong label count is refused", () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter("t_x_total", "x", ["a"]);
    expect(counter.labels("1")).toBe(counter.labels("1"));
    expect(() => counter.labels()).toThrow(/takes labels a/);
    expect(() => registry.counter("t_x_total", "again")).toThrow(/registered twice/);
    expect(() => registry.counter("bad-name", "x")).toThrow(/invalid Prometheus metric name/);
  });

  test("observing allocates nothing per call (the hot path stays in preallocated slots)", () => {
    const registry = new MetricsRegistry();
    const latency = registry.histogram("t_hot_seconds", "hot").labels();
    const count = registry.counter("t_hot_total", "hot").labels();
    for (let i = 0; i < 10_000; i++) latency.observe(i / 1e6); // warm up
    Bun.gc(true);
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1_000_000; i++) {
      latency.observe((i % 1000) / 1e4);
      count.inc();
    }
    const grownBytes = process.memoryUsage().heapUsed - before;
    // A single allocation per call would be ≥ 16 MB here.
    expect(grownBytes).toBeLessThan(4 * 1024 * 1024);
    expect(latency.count).toBe(1_010_000);
  });
});

import { closeSync, openSync, writeFileSync } from "node:fs";
import { formatDuration } from "../src/config/parse.ts";
import { clientOptions, DEFAULT_KV_SHARD, PERF_TESTS, perfOptions } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import type { IStore } from "../src/store/types.ts";
import { withClient } from "./client.ts";
import { defineLeaf, type LeafContext } from "./command.ts";
import { EXIT_FAILED, EXIT_OK, type Io, jsonLine, localFileError } from "./io.ts";

const options = [...clientOptions(DEFAULT_KV_SHARD, "timeout"), ...perfOptions] as const;
type PerfContext = LeafContext<typeof options>;
type PerfTest = (typeof PERF_TESTS)[number];

/** Bounds: a test stops at its duration, at this many operations, or after this many errors. */
const MAX_OPS_PER_TEST = 50_000_000;
const MAX_ERRORS_PER_TEST = 1_000;
/** Latency samples kept per test; beyond it, reservoir sampling keeps the percentiles fair. */
const LATENCY_SAMPLES_MAX = 1 << 20;
const PROGRESS_INTERVAL_MS = 200;

export interface PerfResult {
  test: PerfTest;
  skipped: boolean;
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** CPU time of this benchmark process per completed operation (µs): what the load tool itself costs. */
  clientCpuUsPerOp: number;
}

/** Latencies in ms: every one until the buffer is full, then a uniform reservoir sample. */
class LatencyRecorder {
  private readonly samples = new Float64Array(LATENCY_SAMPLES_MAX);
  private seen = 0;

  record(ms: number): void {
    if (this.seen < LATENCY_SAMPLES_MAX) {
      this.samples[this.seen] = ms;
    } else {
      const slot = Math.floor(Math.random() * (this.seen + 1));
      if (slot < LATENCY_SAMPLES_MAX) this.samples[slot] = ms;
    }
    this.seen++;
  }

  percentiles(): { p50: number; p90: number; p99: number } {
    const sorted = this.samples.subarray(0, Math.min(this.seen, LATENCY_SAMPLES_MAX)).sort();
    const at = (q: number) =>
      sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
  }
}

interface TestPlan {
  /** Keys written before the timed part (get, delete, has, mixed). */
  preload: boolean;
  /** Keys deleted afterwards so a benchmark leaves the server as it found it. */
  cleanup: boolean;
  op(store: IStore, key: string, i: number): Promise<unknown>;
}

function plans(value: Uint8Array, largeValue: Uint8Array): Record<PerfTest, TestPlan> {
  return {
    set: { preload: false, cleanup: true, op: (s, k) => s.set(k, value) },
    "set-large": { preload: false, cleanup: true, op: (s, k) => s.set(k, largeValue) },
    get: { preload: true, cleanup: true, op: (s, k) => s.get(k) },
    delete: { preload: true, cleanup: true, op: (s, k) => s.delete(k) },
    has: { preload: true, cleanup: true, op: (s, k) => s.has(k) },
    "has-not": { preload: false, cleanup: false, op: (s, k) => s.has(k) },
    mixed: {
      preload: true,
      cleanup: true,
      op: (s, k, i) => {
        switch (i % 4) {
          case 0:
            return s.set(k, value);
          case 1:
            return s.get(k);
          case 2:
            return s.delete(k);
          default:
            return s.has(k);
        }
      },
    },
  };
}

/** Runs `work` over every key with at most `concurrency` requests in flight. */
async function forEachKey(
  keys: readonly string[],
  concurrency: number,
  work: (key: string) => Promise<unknown>,
) {
  let next = 0;
  const worker = async () => {
    while (next < keys.length) await work(keys[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
}

async function runOne(
  store: IStore,
  test: PerfTest,
  plan: TestPlan,
  context: PerfContext,
  runId: string,
  preloadValue: Uint8Array,
  progress: ((test: string, ops: number, elapsedMs: number) => void) | undefined,
): Promise<{ result: PerfResult; firstError: unknown }> {
  const { threads, duration } = context.options;
  const keys = Array.from({ length: context.options.keys }, (_, i) => `__dkv_perf/${runId}/${test}/${i}`);
  if (plan.preload) await forEachKey(keys, threads, (key) => store.set(key, preloadValue));

  const latencies = new LatencyRecorder();
  let started = 0;
  let completed = 0;
  let errors = 0;
  let firstError: unknown;
  const startMs = performance.now();
  const cpuStart = process.cpuUsage();
  const deadlineMs = startMs + duration;
  const worker = async () => {
    while (started < MAX_OPS_PER_TEST && errors < MAX_ERRORS_PER_TEST && performance.now() < deadlineMs) {
      const i = started++;
      const opStartMs = performance.now();
      try {
        await plan.op(store, keys[i % keys.length]!, i);
        latencies.record(performance.now() - opStartMs);
        completed++;
      } catch (error) {
        errors++;
        firstError ??= error;
      }
    }
  };
  const timer =
    progress === undefined
      ? undefined
      : setInterval(() => progress(test, completed, performance.now() - startMs), PROGRESS_INTERVAL_MS);
  try {
    await Promise.all(Array.from({ length: threads }, worker));
  } finally {
    if (timer !== undefined) clearInterval(timer);
  }
  const seconds = (performance.now() - startMs) / 1_000;
  const cpu = process.cpuUsage(cpuStart);

  if (plan.cleanup) await forEachKey(keys, threads, (key) => store.delete(key)).catch(() => undefined);
  const { p50, p90, p99 } = latencies.percentiles();
  return {
    result: {
      test,
      skipped: false,
      ops: completed,
      errors,
      seconds,
      opsPerSec: seconds > 0 ? completed / seconds : 0,
      p50Ms: p50,
      p90Ms: p90,
      p99Ms: p99,
      clientCpuUsPerOp: completed > 0 ? (cpu.user + cpu.system) / completed : 0,
    },
    firstError,
  };
}

function skippedResult(test: PerfTest): PerfResult {
  return {
    test,
    skipped: true,
    ops: 0,
    errors: 0,
    seconds: 0,
    opsPerSec: 0,
    p50Ms: 0,
    p90Ms: 0,
    p99Ms: 0,
    clientCpuUsPerOp: 0,
  };
}

const ms = (value: number) => `${value.toFixed(value < 10 ? 3 : 1)}ms`;

function tableRow(result: PerfResult): string {
  if (result.skipped) return `${result.test.padEnd(10)} skipped\n`;
  return `${[
    result.test.padEnd(10),
    String(result.ops).padStart(10),
    Math.round(result.opsPerSec).toString().padStart(10),
    ms(result.p50Ms).padStart(10),
    ms(result.p90Ms).padStart(10),
    ms(result.p99Ms).padStart(10),
    String(result.errors).padStart(7),
  ].join(" ")}\n`;
}

const TABLE_HEADER = `${[
  "test".padEnd(10),
  "ops".padStart(10),
  "ops/s".padStart(10),
  "p50".padStart(10),
  "p90".padStart(10),
  "p99".padStart(10),
  "errors".padStart(7),
].join(" ")}\n`;

function settingsOf(context: PerfContext, endpoints: readonly string[]) {
  const o = context.options;
  return {
    endpoints,
    transport: o.transport,
    serializer: o.serializer,
    shard: o.shard,
    threads: o.threads,
    keys: o.keys,
    valueSize: o["value-size"],
    largeValueSizeKb: o["large-value-size"],
    durationMs: o.duration,
    connectionsPerEndpoint: o["connections-per-endpoint"],
  };
}

function csvOf(results: readonly PerfResult[], settings: ReturnType<typeof settingsOf>): string {
  const header =
    "test,skipped,ops,ops_per_sec,p50_ms,p90_ms,p99_ms,errors,threads,keys,value_size,large_value_size_kb,transport,serializer,shard,endpoints,client_cpu_us_per_op";
  const rows = results.map((r) =>
    [
      r.test,
      r.skipped,
      r.ops,
      r.opsPerSec.toFixed(1),
      r.p50Ms.toFixed(4),
      r.p90Ms.toFixed(4),
      r.p99Ms.toFixed(4),
      r.errors,
      settings.threads,
      settings.keys,
      settings.valueSize,
      settings.largeValueSizeKb,
      settings.transport,
      settings.serializer,
      settings.shard,
      settings.endpoints.join(";"),
      r.clientCpuUsPerOp.toFixed(2),
    ].join(","),
  );
  return `${[header, ...rows].join("\n")}\n`;
}

function progressPrinter(io: Io, total: string): (test: string, ops: number, elapsedMs: number) => void {
  return (test, ops, elapsedMs) => {
    const rate = elapsedMs > 0 ? Math.round((ops * 1_000) / elapsedMs) : 0;
    io.out(
      `\r\u001b[2K  ${test}: ${ops} ops, ${rate} ops/s (${(elapsedMs / 1_000).toFixed(1)}s of ${total})`,
    );
  };
}

export const perfCommand = defineLeaf({
  path: "dkv kv perf",
  description: "Benchmark a server: set, set-large, get, delete, has, has-not, mixed (ops/s and p50/p90/p99)",
  options,
  examples: [
    "dkv kv perf --threads 10 --skip mixed --large-value-size 128 --keys 500 --csv ./benchmark.csv",
    "dkv kv perf --threads 50 --skip set-large,delete,has,has-not,mixed --json",
  ],
  notes: [
    "Each test runs for --duration with --threads requests in flight; keys live under __dkv_perf/ and are deleted afterwards.",
    "Exit status 1 when any request failed (the error count is in the results).",
  ],
  run: async (context) => {
    const o = context.options;
    const unknown = o.skip.filter((name) => !(PERF_TESTS as readonly string[]).includes(name));
    if (unknown.length > 0) {
      throw new DkvError(
        "USAGE",
        `--skip: unknown test ${unknown.join(", ")}; tests are ${PERF_TESTS.join(", ")}.`,
      );
    }
    const value = new Uint8Array(o["value-size"]).fill(0x61);
    const largeValue = new Uint8Array(o["large-value-size"] * 1024).fill(0x62);
    const runId = crypto.randomUUID().slice(0, 8);
    const endpoints = o.endpoints && o.endpoints.length > 0 ? o.endpoints : [];

    // Opened before the run, as a shell's '>' would: a bad path fails at once (naming the
    // file, nothing sent), and a missing directory is an error, not created.
    const csv = o.csv === undefined ? undefined : openCsv(o.csv);
    try {
      return await runPerf(context, value, largeValue, runId, endpoints, csv);
    } finally {
      if (csv !== undefined) closeSync(csv);
    }
  },
});

function openCsv(path: string): number {
  try {
    return openSync(path, "w");
  } catch (error) {
    const failure = localFileError(error);
    if (failure === undefined) throw error;
    throw new DkvError("USAGE", `--csv: ${failure.message}`, { cause: error });
  }
}

async function runPerf(
  context: PerfContext,
  value: Uint8Array,
  largeValue: Uint8Array,
  runId: string,
  endpoints: readonly string[],
  csv: number | undefined,
): Promise<number> {
  const { io } = context;
  const o = context.options;
  return withClient(o, o.timeout, async (client) => {
    const store = client.store(o.shard);
    // Fail fast (exit 1, one line) when the server is not there rather than erroring for every test.
    await store.has(`__dkv_perf/${runId}/probe`);
    const settings = settingsOf(context, endpoints.length > 0 ? endpoints : ["(default)"]);
    const showProgress = io.stdoutIsTty && !o.json;
    if (!o.json) {
      io.out(
        `dkv kv perf: ${o.transport}/${o.serializer} shard ${o.shard}, ${o.threads} in flight, ${o.keys} keys, ` +
          `${o["value-size"]} B values (set-large ${o["large-value-size"]} KB), ${formatDuration(o.duration)} per test\n`,
      );
      io.out(TABLE_HEADER);
    }
    const results: PerfResult[] = [];
    let firstError: unknown;
    const testPlans = plans(value, largeValue);
    for (const test of PERF_TESTS) {
      if (o.skip.includes(test)) {
        results.push(skippedResult(test));
        if (!o.json) io.out(tableRow(skippedResult(test)));
        continue;
      }
      const progress = showProgress ? progressPrinter(io, formatDuration(o.duration)) : undefined;
      const run = await runOne(store, test, testPlans[test], context, runId, value, progress);
      if (showProgress) io.out("\r\u001b[2K");
      results.push(run.result);
      firstError ??= run.firstError;
      if (!o.json) io.out(tableRow(run.result));
    }
    if (csv !== undefined) writeFileSync(csv, csvOf(results, settings));
    if (o.json) io.out(jsonLine({ settings, results }));
    else if (o.csv !== undefined) io.out(`results written to ${o.csv}\n`);
    if (firstError !== undefined) {
      const failure = DkvError.from(firstError, "unknown");
      const failed = results.reduce((sum, r) => sum + r.errors, 0);
      io.err(
        `dkv: ${failed} requests failed during the benchmark; first: ${failure.message} [${failure.code}]\n`,
      );
      return EXIT_FAILED;
    }
    return EXIT_OK;
  });
}

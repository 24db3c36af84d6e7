/**
 * A 3-member dkv cluster vs a 3-member etcd on this machine, in one run (a plain script,
 * not a test):
 *
 *   bun run test/bench/etcd-compare.ts [--rounds 2] [--duration 5s] [--keys 1000] [--dkv PATH] [--warmup 3s]
 *       [--etcd-benchmark PATH | --etcd-source DIR | --etcd-gateway] [--etcd-total 20000]
 *
 * - installs etcd-server and etcd-client from Debian's packages when etcd is missing;
 * - starts 3 etcd members and 3 `dist/dkv serve` members (shard 200 = dstore) on free
 *   loopback ports, each with its data dir on the same disk, default Raft timing on both
 *   (100 ms tick/heartbeat, ~1 s election);
 * - warms both clusters up first (`--warmup`, each test for that long at c=10, not
 *   measured): a freshly started dkv cluster runs its first seconds of writes several times
 *   slower (on a disk 7-10x at c=10, on tmpfs ~1.6x: mostly the fresh data directory, the
 *   rest JIT warm-up), and etcd gets the same treatment;
 * - alternates, per round and concurrency (10, 50):
 *     dkv:  `dkv kv perf --shard 200 --endpoints <3 members> --threads N` (set, get, mixed)
 *     etcd: its own Go tool (below), N clients on N connections (the mixed test has no
 *           counterpart there); with `--etcd-gateway` the same workload as dkv's from a
 *           Bun client against etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`,
 *           `/v3/kv/deleterange`), N requests in flight spread over the 3 members;
 *   reads are linearizable on both (dkv: ReadIndex, etcd: default range); dkv's client
 *   sends the shard's requests to the member whose reply said it leads the shard (the
 *   others would forward them there), etcd's spreads its connections over the members;
 * - prints ops/s, p50, p99 of each, their ratios, the CPU the 3 members used per operation
 *   (with etcd's Go tool; dkv runs one `kv perf` per test for it), and the summed RSS of
 *   each cluster;
 * - kills every process it started.
 *
 * etcd is driven by its own Go load tool, etcd's `tools/benchmark` of v3.4.23: `put` and
 * `range --consistency=l` over gRPC with N clients on N connections. Debian does not
 * package it, so the script builds it on first use from the tag's source with Debian's
 * `golang-go` and `golang-etcd-server-dev` (installed when missing) and caches it
 * (`./etcd-benchmark-tool.ts`: where the source comes from, `--etcd-source DIR` /
 * ETCD_SOURCE for a clone of etcd when GitHub is out of reach). `--etcd-benchmark PATH` (or
 * ETCD_BENCHMARK=PATH) uses a tool built elsewhere; `--etcd-gateway` drives etcd through its
 * v3 JSON gateway from a Bun client instead (the comparison before the Go tool).
 * etcd's tool counts requests rather than time, so each run is sized from `--etcd-total`
 * (default 20000); the mixed test has no counterpart there and is skipped for etcd.
 *
 * `--dkv PATH` measures that dkv binary instead of `dist/dkv` (which is rebuilt when a
 * source is newer): to compare two builds, run the script once with each in the same
 * minutes; etcd, measured in both runs, is the control.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/config/parse.ts";
import {
  benchClusterArgs,
  clusterLeader,
  cpuSeconds,
  ensureDebianPackages,
  flagValue,
  freePort,
  kvPerfResults,
  ROOT,
  rssMib,
  runCommand,
  waitUntil,
} from "./commands.ts";
import { ensureEtcdBenchmark } from "./etcd-benchmark-tool.ts";

const DKV = join(ROOT, "dist", "dkv");
const VALUE_BYTES = 128;
const START_TIMEOUT_MS = 20_000;
const DKV_SHARD = 200;
const TESTS = ["set", "get", "mixed"] as const;
type TestName = (typeof TESTS)[number];
/** Latency samples kept per etcd test; plenty for a p99 of a few-second run. */
const LATENCY_SAMPLES_MAX = 1 << 20;

interface Settings {
  rounds: number;
  durationText: string;
  durationMs: number;
  /** Unmeasured load on both clusters before the first round (`--warmup`, "0s": none). */
  warmupText: string;
  keys: number;
  /** etcd's Go `tools/benchmark` binary, resolved (or built) in main; undefined with `--etcd-gateway`. */
  etcdBenchmark: string | undefined;
  /** `--etcd-gateway`: etcd driven through its JSON gateway, not its Go tool. */
  etcdGateway: boolean;
  /** `--etcd-source DIR`: etcd's source for building the Go tool. */
  etcdSource: string | undefined;
  etcdTotal: number;
  /** The dkv binary measured (`--dkv`); dist/dkv, built when stale, by default. */
  dkv: string;
}

function parseSettings(argv: readonly string[]): Settings {
  const value = (flag: string, fallback: string) => flagValue(argv, flag, fallback);
  const durationText = value("--duration", "5s");
  // The same duration syntax as the CLI (dkv kv perf --duration), so both sides agree.
  const durationMs = parseDuration(durationText, "--duration");
  return {
    rounds: Number(value("--rounds", "2")),
    durationText,
    durationMs,
    warmupText: value("--warmup", "3s"),
    keys: Number(value("--keys", "1000")),
    etcdBenchmark: value("--etcd-benchmark", process.env.ETCD_BENCHMARK ?? "") || undefined,
    etcdGateway: argv.includes("--etcd-gateway"),
    etcdSource: value("--etcd-source", process.env.ETCD_SOURCE ?? "") || undefined,
    etcdTotal: Number(value("--etcd-total", "20000")),
    dkv: value("--dkv", DKV),
  };
}

const started: Bun.Subprocess[] = [];

/** The last stderr chunks of each process started here (at most 32 each), by PID: shown when a start fails. */
const stderrTails = new Map<number, string[]>();

function spawn(argv: string[]): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(argv, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  started.push(proc);
  // Drained so a chatty server never blocks on a full pipe; the tail kept for a failed start.
  const tail: string[] = [];
  stderrTails.set(proc.pid, tail);
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) {
      tail.push(decoder.decode(chunk));
      if (tail.length > 32) tail.shift();
    }
  })().catch(() => {});
  return proc;
}

/** What each process said on stderr last, and whether it still runs: for a start that failed. */
function startReport(procs: readonly Bun.Subprocess[]): string {
  return procs
    .map((proc) => {
      const state = proc.exitCode === null ? "running" : `exited ${proc.exitCode}`;
      const said = (stderrTails.get(proc.pid) ?? []).join("").slice(-1500).trim() || "(nothing on stderr)";
      return `pid ${proc.pid} (${state}): ${said}`;
    })
    .join("\n");
}

function ensureEtcd(): Promise<void> {
  return ensureDebianPackages(["etcd", "etcdctl"], ["etcd-server", "etcd-client"]);
}

async function ensureDkv(): Promise<void> {
  // The e2e helper rebuilds dist/dkv when any source is newer.
  const { ensureBinary } = await import("../e2e/helpers.ts");
  await ensureBinary();
}

interface Measurement {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /**
   * CPU (user + system) the 3 members used per operation, µs: less sensitive to the
   * neighbours' load than ops/s on a shared machine (NaN for the JSON-gateway etcd runs,
   * whose tests are not measured one by one).
   */
  cpuUsPerOp: number;
}

/** Runs `work` and returns its result with the CPU the given processes used meanwhile, µs. */
async function withCpu<T>(pids: readonly number[], work: () => Promise<T>): Promise<[T, number]> {
  const before = await Promise.all(pids.map(cpuSeconds));
  const result = await work();
  const after = await Promise.all(pids.map(cpuSeconds));
  return [result, after.reduce((sum, seconds, i) => sum + seconds - before[i]!, 0) * 1e6];
}

// ---- etcd -----------------------------------------------------------------------------

async function startEtcd(root: string): Promise<{ pids: number[]; clientUrls: string[] }> {
  const members = await Promise.all(
    [1, 2, 3].map(async (i) => ({ name: `etcd-${i}`, client: await freePort(), peer: await freePort() })),
  );
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
  const procs = members.map((m) =>
    spawn([
      "etcd",
      "--name",
      m.name,
      "--data-dir",
      join(root, m.name),
      "--listen-client-urls",
      `http://127.0.0.1:${m.client}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${m.client}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${m.peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${m.peer}`,
      "--initial-cluster",
      initialCluster,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      "dkv-bench",
      "--logger",
      "zap",
      "--log-level",
      "error",
    ]),
  );
  const clientUrls = members.map((m) => `http://127.0.0.1:${m.client}`);
  for (const url of clientUrls) {
    await waitUntil(`etcd at ${url}`, START_TIMEOUT_MS, async () => {
      const health = (await (await fetch(`${url}/health`)).json()) as { health?: string };
      return health.health === "true";
    });
  }
  return { pids: procs.map((p) => p.pid), clientUrls };
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** One etcd operation over the v3 JSON gateway; throws on an HTTP error. */
async function etcdCall(url: string, path: string, body: unknown): Promise<unknown> {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

function etcdOp(test: TestName, value: string, keys: readonly string[]) {
  return (url: string, i: number): Promise<unknown> => {
    const key = keys[i % keys.length]!;
    const step = test === "set" ? 0 : test === "get" ? 1 : i % 4;
    switch (step) {
      case 0:
        return etcdCall(url, "/v3/kv/put", { key, value });
      case 1:
        return etcdCall(url, "/v3/kv/range", { key });
      case 2:
        return etcdCall(url, "/v3/kv/deleterange", { key });
      default:
        return etcdCall(url, "/v3/kv/range", { key, count_only: true });
    }
  };
}

/** dkv kv perf's loop for etcd: `threads` workers, each op timed, for the duration. */
async function etcdPerf(
  urls: readonly string[],
  threads: number,
  s: Settings,
): Promise<Record<string, Measurement>> {
  const value = b64("a".repeat(VALUE_BYTES));
  const result: Record<string, Measurement> = {};
  for (const test of TESTS) {
    const keys = Array.from({ length: s.keys }, (_, i) => b64(`__bench/${test}/${i}`));
    if (test !== "set") {
      // Preload, as dkv kv perf does for get and mixed.
      let next = 0;
      await Promise.all(
        Array.from({ length: threads }, async () => {
          while (next < keys.length) {
            const i = next++;
            await etcdCall(urls[i % urls.length]!, "/v3/kv/put", { key: keys[i], value });
          }
        }),
      );
    }
    const op = etcdOp(test, value, keys);
    const latencies = new Float64Array(LATENCY_SAMPLES_MAX);
    let completed = 0;
    let startedOps = 0;
    let errors = 0;
    const startMs = performance.now();
    const deadlineMs = startMs + s.durationMs;
    await Promise.all(
      Array.from({ length: threads }, async (_, worker) => {
        const url = urls[worker % urls.length]!;
        while (performance.now() < deadlineMs && errors < 1000) {
          const i = startedOps++;
          const t0 = performance.now();
          try {
            await op(url, i);
            if (completed < LATENCY_SAMPLES_MAX) latencies[completed] = performance.now() - t0;
            completed++;
          } catch {
            errors++;
          }
        }
      }),
    );
    const seconds = (performance.now() - startMs) / 1000;
    const sorted = latencies.subarray(0, Math.min(completed, LATENCY_SAMPLES_MAX)).sort();
    const at = (q: number) =>
      sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    result[test] = {
      opsPerSec: completed / seconds,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      errors,
      cpuUsPerOp: Number.NaN,
    };
  }
  return result;
}

/** Reads etcd benchmark's report: "Requests/sec:" and the latency distribution lines. */
function parseEtcdBenchmarkReport(report: string): Omit<Measurement, "cpuUsPerOp"> {
  const number = (pattern: RegExp) => Number(pattern.exec(report)?.[1] ?? Number.NaN);
  const measurement = {
    opsPerSec: number(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: number(/\b50% in ([\d.]+) secs/) * 1000,
    p99Ms: number(/\b99% in ([\d.]+) secs/) * 1000,
    // "Error distribution:" then one "  [count]\tmessage" line per distinct error.
    errors: [...(report.split("Error distribution:")[1] ?? "").matchAll(/^\s*\[(\d+)\]/gm)].reduce(
      (sum, match) => sum + Number(match[1]),
      0,
    ),
  };
  if (Number.isNaN(measurement.opsPerSec) || Number.isNaN(measurement.p99Ms)) {
    throw new Error(`etcd benchmark printed no summary:\n${report.slice(0, 2000)}`);
  }
  return measurement;
}

/** etcd measured by its own Go tool: put then linearizable range, N clients on N connections. */
async function etcdGoPerf(
  urls: readonly string[],
  pids: readonly number[],
  threads: number,
  s: Settings,
): Promise<Record<string, Measurement>> {
  const tool = s.etcdBenchmark!;
  // The key the range test reads exists, as dkv kv perf's get reads keys it preloaded.
  await etcdCall(urls[0]!, "/v3/kv/put", { key: b64("__bench_key"), value: b64("a".repeat(VALUE_BYTES)) });
  const common = [
    tool,
    `--endpoints=${urls.map((url) => url.replace("http://", "")).join(",")}`,
    `--conns=${threads}`,
    `--clients=${threads}`,
  ];
  // The tool runs --total requests; the members' CPU over the run is divided by those that succeeded.
  const measure = async (argv: string[]): Promise<Measurement> => {
    const [report, cpuUs] = await withCpu(pids, () => runCommand(argv));
    const m = parseEtcdBenchmarkReport(report);
    return { ...m, cpuUsPerOp: cpuUs / Math.max(1, s.etcdTotal - m.errors) };
  };
  const set = await measure([
    ...common,
    "put",
    `--total=${s.etcdTotal}`,
    `--val-size=${VALUE_BYTES}`,
    `--key-size=16`,
    `--key-space-size=${s.keys}`,
  ]);
  const get = await measure([...common, "range", "__bench_key", "--consistency=l", `--total=${s.etcdTotal}`]);
  return { set, get };
}

// ---- dkv ------------------------------------------------------------------------------

async function startDkv(dkvBinary: string, root: string): Promise<{ pids: number[]; endpoints: string[] }> {
  const { args, endpoints } = await benchClusterArgs(3, `${DKV_SHARD}=dstore`, root);
  const procs = args.map((serve) => spawn([dkvBinary, ...serve]));
  try {
    await waitUntil(
      "a dkv leader",
      START_TIMEOUT_MS,
      async () => (await clusterLeader(dkvBinary, endpoints)) !== undefined,
    );
  } catch (error) {
    const status = await runCommand([
      dkvBinary,
      "cluster",
      "status",
      "--timeout",
      "1s",
      "--endpoints",
      endpoints.join(","),
    ]).catch((failure: unknown) => String(failure));
    throw new Error(`${String(error)}\ncluster status:\n${status}\nmembers:\n${startReport(procs)}`);
  }
  return { pids: procs.map((p) => p.pid), endpoints };
}

/** kv perf's tests; each run below runs one of TESTS and skips the rest. */
const KV_PERF_TESTS = ["set", "set-large", "get", "delete", "has", "has-not", "mixed"];

async function dkvPerf(
  endpoints: readonly string[],
  pids: readonly number[],
  threads: number,
  s: Settings,
): Promise<Record<string, Measurement>> {
  const result: Record<string, Measurement> = {};
  // One kv perf run per test, so the members' CPU of each test is measured on its own.
  for (const test of TESTS) {
    const [out, cpuUs] = await withCpu(pids, () =>
      runCommand([
        s.dkv,
        "kv",
        "perf",
        "--shard",
        String(DKV_SHARD),
        "--endpoints",
        endpoints.join(","),
        "--threads",
        String(threads),
        "--keys",
        String(s.keys),
        "--value-size",
        String(VALUE_BYTES),
        "--duration",
        s.durationText,
        "--skip",
        KV_PERF_TESTS.filter((name) => name !== test).join(","),
        "--json",
      ]),
    );
    const r = kvPerfResults(out).find((candidate) => candidate.test === test);
    if (r === undefined) throw new Error(`dkv kv perf reported no ${test} result:\n${out.slice(0, 2000)}`);
    result[test] = {
      opsPerSec: r.opsPerSec,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      errors: r.errors,
      cpuUsPerOp: cpuUs / Math.max(1, r.ops),
    };
  }
  return result;
}

// ---- main -----------------------------------------------------------------------------

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function main(): Promise<void> {
  const s = parseSettings(Bun.argv.slice(2));
  await ensureEtcd();
  if (s.etcdGateway) s.etcdBenchmark = undefined;
  else s.etcdBenchmark = await ensureEtcdBenchmark({ explicit: s.etcdBenchmark, source: s.etcdSource });
  if (s.dkv === DKV) await ensureDkv();
  const root = await mkdtemp(join(tmpdir(), "dkv-etcd-bench-"));
  try {
    const etcdVersion = (await runCommand(["etcd", "--version"])).split("\n")[0];
    const etcd = await startEtcd(root);
    const dkv = await startDkv(s.dkv, root);
    console.log(`${etcdVersion}\ndkv ${(await runCommand([s.dkv, "version"])).trim()} (${s.dkv})`);
    console.log(
      `${s.rounds} rounds, ${s.durationText} per test, ${s.keys} keys, ${VALUE_BYTES} B values, 3 members each on 127.0.0.1, data in ${root}`,
    );
    const best: Record<string, { dkv?: Measurement; etcd?: Measurement }> = {};
    const keep = (key: string, side: "dkv" | "etcd", m: Measurement | undefined) => {
      if (m === undefined) return;
      best[key] ??= {};
      const entry = best[key];
      if ((entry[side]?.opsPerSec ?? -1) < m.opsPerSec) entry[side] = m;
    };
    if (parseDuration(s.warmupText, "--warmup") > 0) {
      const warm = { ...s, durationText: s.warmupText, durationMs: parseDuration(s.warmupText, "--warmup") };
      await dkvPerf(dkv.endpoints, dkv.pids, 10, warm);
      if (s.etcdBenchmark !== undefined)
        await etcdGoPerf(etcd.clientUrls, etcd.pids, 10, { ...warm, etcdTotal: 2000 });
      else await etcdPerf(etcd.clientUrls, 10, warm);
      console.log(`warmed up: ${s.warmupText} of each test on dkv, the same on etcd (not measured)`);
    }
    for (let round = 1; round <= s.rounds; round++) {
      for (const threads of [10, 50]) {
        // Alternate who goes first so neither always runs on a warmer machine.
        const order =
          (round + threads / 10) % 2 === 0 ? (["dkv", "etcd"] as const) : (["etcd", "dkv"] as const);
        for (const side of order) {
          const results =
            side === "dkv"
              ? await dkvPerf(dkv.endpoints, dkv.pids, threads, s)
              : s.etcdBenchmark !== undefined
                ? await etcdGoPerf(etcd.clientUrls, etcd.pids, threads, s)
                : await etcdPerf(etcd.clientUrls, threads, s);
          for (const test of TESTS) keep(`${test} c=${threads}`, side, results[test]);
          console.log(
            `round ${round} ${side.padEnd(4)} c=${threads}: ${TESTS.filter((t) => results[t] !== undefined)
              .map((t) => {
                const cpu = results[t]!.cpuUsPerOp;
                return `${t} ${fmt(results[t]!.opsPerSec)} ops/s${Number.isNaN(cpu) ? "" : ` (${fmt(cpu)} µs CPU/op)`}`;
              })
              .join(", ")}` + `${TESTS.some((t) => (results[t]?.errors ?? 0) > 0) ? " (with errors)" : ""}`,
          );
        }
      }
    }
    const dkvMb = (await Promise.all(dkv.pids.map(rssMib))).reduce((a, b) => a + b, 0);
    const etcdMb = (await Promise.all(etcd.pids.map(rssMib))).reduce((a, b) => a + b, 0);

    console.log(
      `\nbest of rounds; reads linearizable on both; dkv binary protocol over TCP (dkv kv perf), ${
        s.etcdBenchmark !== undefined
          ? "etcd gRPC driven by its own Go tools/benchmark"
          : "etcd v3 JSON gateway over HTTP/1.1"
      }`,
    );
    console.log(
      `| test | dkv ops/s | etcd ops/s | dkv/etcd | dkv p50 / p99 ms | etcd p50 / p99 ms | members' CPU µs/op dkv / etcd (etcd/dkv) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |`,
    );
    for (const [name, { dkv: d, etcd: e }] of Object.entries(best)) {
      if (d === undefined || e === undefined) continue;
      const cpu = Number.isNaN(e.cpuUsPerOp)
        ? `${fmt(d.cpuUsPerOp)} / -`
        : `${fmt(d.cpuUsPerOp)} / ${fmt(e.cpuUsPerOp)} (${(e.cpuUsPerOp / d.cpuUsPerOp).toFixed(2)})`;
      console.log(
        `| ${name} | ${fmt(d.opsPerSec)} | ${fmt(e.opsPerSec)} | ${(d.opsPerSec / e.opsPerSec).toFixed(2)} | ` +
          `${d.p50Ms.toFixed(2)} / ${d.p99Ms.toFixed(2)} | ${e.p50Ms.toFixed(2)} / ${e.p99Ms.toFixed(2)} | ${cpu} |`,
      );
    }
    console.log(
      `\nsummed RSS after the runs: dkv ${dkvMb.toFixed(1)} MB, etcd ${etcdMb.toFixed(1)} MB (dkv/etcd ${(dkvMb / etcdMb).toFixed(2)})`,
    );
  } finally {
    for (const proc of started) {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
    }
    await Promise.all(started.map((proc) => proc.exited));
    await rm(root, { recursive: true, force: true });
  }
}

await main();

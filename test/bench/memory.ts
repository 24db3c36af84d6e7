/**
 * Memory of dkv members (a plain script, not a test), each figure from real processes:
 *
 *   bun run test/bench/memory.ts [--dkv dist/dkv] [--only idle,large,many]
 *       [--large-writes 300] [--large-keys 8] [--many-writes 1000000] [--breakdown]
 *       [--cold-binary] [--series] [--serve-args "--flag value ..."] [--serve-env "NAME=value ..."]
 *       [--smaps]
 *
 * - idle: RSS of `dkv serve` (no data, default shards) 4 s after it answers, and again
 *   20 s after (periodic work that runs while idle, such as a timer, gets compiled by
 *   the JIT after some seconds and grows RSS), split into the executable's pages and
 *   anonymous memory. How the binary's pages came into the page cache moves the first
 *   figure by 2-5 MiB: a file just written (`cp`, a download, a build) is cached in large
 *   folios (likely; ext4, Linux 6.18) and more of it is mapped per fault than for one read
 *   back from disk (the same binary here: 34.8-37.5 MiB just copied, 32.2-32.7 MiB after
 *   its pages were dropped). `--cold-binary` drops them first (fsync, then `dd iflag=nocache count=0`),
 *   as after a reboot; compare builds either both cold or both copied at the same time;
 * - large: 3 members (shard 200 = dstore), `--large-writes` sets of 1 MiB values over
 *   `--large-keys` keys with 8 in flight, then RSS of each member once every member has
 *   applied the last write (the state machine itself holds keys × 1 MiB);
 * - many: a one-member dstore after `--many-writes` sets of 128 B values to 100 keys
 *   (50 in flight; with `--many-shards N` the member serves N dstore shards and the sets go
 *   round-robin over them, 100 keys each: what grows with the shard count): RSS right after the writes (the figure the target is about), the
 *   median of RSS sampled every 250 ms during them and the peak (VmHWM: RSS swings with
 *   the collector, so one sample alone is noisy), RSS 3 s after, the write rate (the
 *   request-id table holds 60 s of ids, so it scales with the rate) and the server's CPU
 *   time per set. With `--breakdown` the member also serves --metrics-endpoint (its hooks
 *   cost well under 1% per request) and the report adds the JS heap in use and the
 *   ArrayBuffer (external) bytes, median and peak of the same samples and 3 s after: what
 *   of the RSS is live data, what is garbage the collector has not yet taken, and what is
 *   the runtime and allocator, and right after the writes the RSS split (executable pages,
 *   anonymous) with the heap's capacity and the snapshots saved. `--series` prints every
 *   sample as it is taken (with `--breakdown` also the snapshots so far, and the member's
 *   own collections from its debug log). `--serve-args` adds flags to that member's
 *   `dkv serve` (a setting against the default, same binary), `--serve-env` adds variables to
 *   its environment (a runtime setting such as BUN_JSC_useFTLJIT=0 or MIMALLOC_PURGE_DELAY=0),
 *   and `--smaps` prints its RSS right after the writes by mapping (/proc/PID/smaps: the
 *   executable's code, data and read-only pages, the allocator's arena, the JIT's pool).
 *
 * Run it once with the binary of the commit before and once with this one (`--dkv`), side
 * by side. Every server gets a temporary data dir and free 127.0.0.1 ports and is killed
 * by PID at the end.
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import {
  benchClusterArgs,
  cpuSeconds,
  flagValue,
  freePort,
  ROOT,
  rssMib,
  runCommand,
  waitUntil,
} from "./commands.ts";

const SHARD = 200;
const MIB = 1024 * 1024;
const START_TIMEOUT_MS = 20_000;
const SETTLE_TIMEOUT_MS = 60_000;
const IDLE_WAIT_MS = 4_000;
const RSS_SAMPLE_MS = 250;
const SETTLED_RSS_WAIT_MS = 3_000;
const IDLE_LATE_MS = 20_000;

const argv = process.argv.slice(2);
const DKV = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv"));
const ONLY = new Set(flagValue(argv, "--only", "idle,large,many").split(","));
const LARGE_WRITES = Number(flagValue(argv, "--large-writes", "300"));
const LARGE_KEYS = Number(flagValue(argv, "--large-keys", "8"));
const MANY_WRITES = Number(flagValue(argv, "--many-writes", "1000000"));
const MANY_KEYS = 100;
/** Dstore shards of the many-writes member (`--many-shards`): writes go round-robin over them. */
const MANY_SHARDS = Number(flagValue(argv, "--many-shards", "1"));
const BREAKDOWN = argv.includes("--breakdown");
const COLD_BINARY = argv.includes("--cold-binary");
const SERIES = argv.includes("--series");
/** Extra `dkv serve` flags for the many-writes member, space-separated (to try a setting against the default). */
const SERVE_ARGS = flagValue(argv, "--serve-args", "")
  .split(" ")
  .filter((word) => word !== "");
/** Extra environment of the many-writes member, space-separated NAME=value (to price a runtime setting). */
const SERVE_ENV = Object.fromEntries(
  flagValue(argv, "--serve-env", "")
    .split(" ")
    .filter((word) => word.includes("="))
    .map((word) => [word.slice(0, word.indexOf("=")), word.slice(word.indexOf("=") + 1)]),
);
/** With --smaps: right after the writes, the member's RSS by mapping kind (/proc/PID/smaps). */
const SMAPS = argv.includes("--smaps");

const started: Bun.Subprocess[] = [];

function spawnDkv(
  args: string[],
  onStderrLine?: (line: string) => void,
  env?: Record<string, string>,
): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn([DKV, ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
  });
  started.push(proc);
  // Drained so a chatty server never blocks on a full pipe.
  void new Response(proc.stdout).text();
  if (onStderrLine === undefined) void new Response(proc.stderr).text();
  else void readLines(proc.stderr, onStderrLine);
  return proc;
}

/** Calls `onLine` for each line of `stream` until it ends. */
async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  // Bounded by the stream, which ends when the process does.
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
}

interface ShardStatus {
  leader?: string | null;
  appliedIndex?: number;
}

async function clusterStatus(endpoints: readonly string[]): Promise<ShardStatus[][]> {
  const out = await runCommand([
    DKV,
    "cluster",
    "status",
    "--json",
    "--timeout",
    "2s",
    "--endpoints",
    endpoints.join(","),
  ]);
  const report = JSON.parse(out) as { nodes: { shards: ShardStatus[] }[] };
  return report.nodes.map((node) => node.shards);
}

async function startMembers(
  root: string,
  count: number,
  extraArgs: readonly string[] = [],
  onStderrLine?: (line: string) => void,
  shardCount = 1,
  env?: Record<string, string>,
): Promise<{ pids: number[]; endpoints: string[] }> {
  const spec = Array.from({ length: shardCount }, (_, i) => `${SHARD + i}=dstore`).join(",");
  const { args, endpoints } = await benchClusterArgs(count, spec, root);
  const procs = args.map((serve) => spawnDkv([...serve, ...extraArgs], onStderrLine, env));
  await waitUntil("a leader of every shard", START_TIMEOUT_MS, async () => {
    const shards = await clusterStatus(endpoints);
    // Every member names the same leader for each shard, and every shard has one.
    const leaders = new Set(shards.map((s) => s.map((shard) => shard.leader ?? null).join(",")));
    const any = shards[0] ?? [];
    return (
      shards.length === count &&
      leaders.size === 1 &&
      any.length === shardCount &&
      any.every((shard) => shard.leader !== undefined && shard.leader !== null)
    );
  });
  return { pids: procs.map((p) => p.pid), endpoints };
}

/** `writes` sets spread over `keys` keys by `workers` loops each awaiting one at a time. */
async function write(
  endpoints: string[],
  writes: number,
  keys: number,
  workers: number,
  value: Uint8Array,
  shardCount = 1,
): Promise<number> {
  await using client = new RpcClient({
    endpoints,
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 30_000,
  });
  const stores = Array.from({ length: shardCount }, (_, i) => client.store(SHARD + i));
  let next = 0;
  const startMs = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < writes) {
        const n = next++;
        await stores[n % shardCount]!.set(`mem/${n % keys}`, value);
      }
    }),
  );
  return writes / ((performance.now() - startMs) / 1000);
}

async function settled(endpoints: readonly string[]): Promise<void> {
  await waitUntil("every member applying the last write", SETTLE_TIMEOUT_MS, async () => {
    const shards = await clusterStatus(endpoints);
    const applied = new Set(shards.map((s) => s[0]?.appliedIndex ?? -1));
    return applied.size === 1;
  });
}

/**
 * RssFile and RssAnon: an idle member's RSS is mostly pages of the executable the runtime
 * has run (file-backed), not its heap (anonymous), so a cut shows in one or the other.
 */
async function rssSplitMib(pid: number): Promise<{ file: number; anon: number }> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const kb = (name: string): number =>
    Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  return { file: kb("RssFile") / 1024, anon: kb("RssAnon") / 1024 };
}

/** Drops the binary's pages from the page cache (written back first), so the run reads it from disk. */
async function dropBinaryPages(): Promise<void> {
  const file = await open(DKV, "r");
  try {
    await file.sync();
  } finally {
    await file.close();
  }
  await runCommand(["dd", `if=${DKV}`, "iflag=nocache", "count=0", "status=none"]);
}

async function idle(root: string): Promise<void> {
  if (COLD_BINARY) await dropBinaryPages();
  const port = await freePort();
  const proc = spawnDkv([
    "serve",
    "--data-dir",
    join(root, "idle"),
    "--transport-endpoint",
    `127.0.0.1:${port}`,
    "--log-level",
    "warn",
  ]);
  await waitUntil("the idle server", START_TIMEOUT_MS, async () => {
    await runCommand([DKV, "kv", "has", "probe", "--endpoints", `127.0.0.1:${port}`, "--timeout", "1s"]);
    return true;
  });
  await Bun.sleep(IDLE_WAIT_MS);
  const early = await rssMib(proc.pid);
  await Bun.sleep(IDLE_LATE_MS - IDLE_WAIT_MS);
  const late = await rssMib(proc.pid);
  const split = await rssSplitMib(proc.pid);
  console.log(
    `idle member (dkv serve, no data${COLD_BINARY ? ", binary read from disk" : ""}): ${early.toFixed(1)} MiB RSS after ${IDLE_WAIT_MS / 1000} s, ` +
      `${late.toFixed(1)} MiB after ${IDLE_LATE_MS / 1000} s (of which pages of the executable and ` +
      `libraries ${split.file.toFixed(1)} MiB, anonymous memory ${split.anon.toFixed(1)} MiB)`,
  );
  proc.kill();
  await proc.exited;
}

async function large(root: string): Promise<void> {
  const { pids, endpoints } = await startMembers(join(root, "large"), 3);
  const value = new Uint8Array(MIB).fill(0x62);
  const rate = await write(endpoints, LARGE_WRITES, LARGE_KEYS, 8, value);
  await settled(endpoints);
  const rss = await Promise.all(pids.map(rssMib));
  const sum = rss.reduce((a, b) => a + b, 0);
  console.log(
    `3 members after ${LARGE_WRITES} x 1 MiB sets over ${LARGE_KEYS} keys (${rate.toFixed(0)} sets/s): ` +
      `RSS ${rss.map((r) => r.toFixed(0)).join(" / ")} MiB, max ${Math.max(...rss).toFixed(0)}, sum ${sum.toFixed(0)} MiB`,
  );
  for (const pid of pids) process.kill(pid);
}

/**
 * RSS by mapping (/proc/PID/smaps), the largest first: each file by name, anonymous ones by
 * permissions and size class (the JIT's executable pool, the allocator's arena and stacks
 * differ in both), in MiB.
 */
async function rssByMapping(pid: number): Promise<string> {
  const text = await Bun.file(`/proc/${pid}/smaps`).text();
  const byKind = new Map<string, number>();
  let kind = "";
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      const size = (Number.parseInt(head[2]!, 16) - Number.parseInt(head[1]!, 16)) / MIB;
      const name = head[4]!.trim();
      kind =
        name !== "" && !name.startsWith("[anon")
          ? `${name.split("/").at(-1)} ${head[3]}`
          : `anon ${head[3]} ${size >= 1 ? `${size.toFixed(0)}M@${head[1]!.slice(0, -5)}` : "<1M"}`;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) byKind.set(kind, (byKind.get(kind) ?? 0) + Number(rss[1]) / 1024);
  }
  return [...byKind]
    .filter(([, mib]) => mib >= 0.5)
    .sort((a, b) => b[1] - a[1])
    .map(([name, mib]) => `${name} ${mib.toFixed(1)}`)
    .join(", ");
}

/** VmHWM: the process's peak RSS so far, in MiB. */
async function peakRssMib(pid: number): Promise<number> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024;
}

interface HeapSample {
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Snapshots saved so far, all shards (dkv_raft_snapshots_total, save, ok). */
  snapshots: number;
}

/** heap_used and external of dkv_process_memory_bytes from a member's metrics endpoint, in MiB. */
async function heapMib(metricsEndpoint: string): Promise<HeapSample> {
  const text = await (await fetch(`http://${metricsEndpoint}/metrics`)).text();
  const kind = (name: string): number => {
    const match = new RegExp(`dkv_process_memory_bytes\\{kind="${name}"\\} (\\S+)`).exec(text);
    return Number(match?.[1] ?? Number.NaN) / MIB;
  };
  // One counter per shard: the sum over all of them.
  let snapshots = 0;
  for (const match of text.matchAll(
    /dkv_raft_snapshots_total\{[^}]*kind="save"[^}]*result="ok"[^}]*\} (\S+)/g,
  )) {
    snapshots += Number(match[1]);
  }
  return {
    heapUsed: kind("heap_used"),
    heapTotal: kind("heap_total"),
    external: kind("external"),
    snapshots,
  };
}

function medianPeak(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${(sorted[sorted.length >> 1] ?? Number.NaN).toFixed(0)}, peak ${(sorted.at(-1) ?? Number.NaN).toFixed(0)}`;
}

/** With --series: one line per sample (ms since the writes began, RSS split, and the heap with --breakdown). */
async function printSample(pid: number, metricsEndpoint: string | undefined, ms: number): Promise<void> {
  const split = await rssSplitMib(pid);
  const heap = metricsEndpoint === undefined ? undefined : await heapMib(metricsEndpoint);
  console.log(
    `  ${ms.toFixed(0).padStart(6)} ms: file ${split.file.toFixed(1)}, anon ${split.anon.toFixed(1)} MiB` +
      (heap === undefined
        ? ""
        : `; heap ${heap.heapUsed.toFixed(1)} / ${heap.heapTotal.toFixed(1)}, external ${heap.external.toFixed(1)} MiB` +
          `, ${heap.snapshots} snapshots`),
  );
}

async function many(root: string): Promise<void> {
  const metricsEndpoint = BREAKDOWN ? `127.0.0.1:${await freePort()}` : undefined;
  // With --series and --breakdown the member logs at debug level, and its collections
  // (memory-release.ts) are printed among the samples.
  const logCollections = SERIES && metricsEndpoint !== undefined;
  let t0 = performance.now();
  const { pids, endpoints } = await startMembers(
    join(root, "many"),
    1,
    [
      ...(metricsEndpoint === undefined ? [] : ["--metrics-endpoint", metricsEndpoint]),
      ...(logCollections ? ["--log-level", "debug"] : []),
      ...SERVE_ARGS,
    ],
    logCollections
      ? (line) => {
          if (line.includes("garbage collection"))
            console.log(`  ${(performance.now() - t0).toFixed(0).padStart(6)} ms: ${line.slice(0, 160)}`);
        }
      : undefined,
    MANY_SHARDS,
    SERVE_ENV,
  );
  const pid = pids[0]!;
  const value = new Uint8Array(128).fill(0x61);
  const samples: number[] = [];
  const heapSamples: HeapSample[] = [];
  t0 = performance.now();
  const sampler = setInterval(() => {
    void rssMib(pid).then((mib) => samples.push(mib));
    if (metricsEndpoint !== undefined) void heapMib(metricsEndpoint).then((h) => heapSamples.push(h));
    if (SERIES) void printSample(pid, metricsEndpoint, performance.now() - t0);
  }, RSS_SAMPLE_MS);
  const cpuBefore = await cpuSeconds(pid);
  let rate: number;
  try {
    rate = await write(endpoints, MANY_WRITES, MANY_KEYS, 50, value, MANY_SHARDS);
  } finally {
    clearInterval(sampler);
  }
  const cpuUsPerSet = (((await cpuSeconds(pid)) - cpuBefore) * 1e6) / MANY_WRITES;
  const rss = await rssMib(pid);
  const split = await rssSplitMib(pid);
  const heapRightAfter = metricsEndpoint === undefined ? undefined : await heapMib(metricsEndpoint);
  const peak = await peakRssMib(pid);
  const smaps = SMAPS ? await rssByMapping(pid) : undefined;
  await Bun.sleep(SETTLED_RSS_WAIT_MS);
  const settled = await rssMib(pid);
  samples.sort((a, b) => a - b);
  const median = samples[samples.length >> 1] ?? Number.NaN;
  console.log(
    `one-member dstore${MANY_SHARDS === 1 ? "" : ` of ${MANY_SHARDS} shards`} after ${MANY_WRITES} sets of 128 B to ${MANY_KEYS} keys${MANY_SHARDS === 1 ? "" : " per shard, round-robin over the shards"} (${rate.toFixed(0)} sets/s, server CPU ${cpuUsPerSet.toFixed(1)} us/set): ${rss.toFixed(1)} MiB RSS ` +
      `(during the writes: median ${median.toFixed(0)}, peak ${peak.toFixed(0)} MiB; ${SETTLED_RSS_WAIT_MS / 1000} s after: ${settled.toFixed(0)} MiB)`,
  );
  if (heapRightAfter !== undefined) {
    console.log(
      `  right after the writes: executable pages ${split.file.toFixed(1)} MiB, anonymous ${split.anon.toFixed(1)} MiB; ` +
        `JS heap in use ${heapRightAfter.heapUsed.toFixed(1)} of ${heapRightAfter.heapTotal.toFixed(1)} MiB, ` +
        `ArrayBuffers ${heapRightAfter.external.toFixed(1)} MiB`,
    );
  }
  if (smaps !== undefined) console.log(`  right after the writes, RSS by mapping: ${smaps}`);
  if (metricsEndpoint !== undefined) {
    const after = await heapMib(metricsEndpoint);
    console.log(
      `  JS heap in use during the writes: ${medianPeak(heapSamples.map((h) => h.heapUsed))} MiB, ` +
        `${after.heapUsed.toFixed(0)} MiB ${SETTLED_RSS_WAIT_MS / 1000} s after; ArrayBuffers (external): ` +
        `${medianPeak(heapSamples.map((h) => h.external))} MiB, ${after.external.toFixed(0)} MiB after; ` +
        `${after.snapshots} snapshots saved`,
    );
  }
  process.kill(pid);
}

const root = await mkdtemp(join(tmpdir(), "dkv-memory-"));
try {
  console.log(`binary: ${DKV}`);
  if (ONLY.has("idle")) await idle(root);
  if (ONLY.has("large")) await large(root);
  if (ONLY.has("many")) await many(root);
} finally {
  for (const proc of started) proc.kill();
  await Promise.all(started.map((proc) => proc.exited));
  await rm(root, { recursive: true, force: true });
}

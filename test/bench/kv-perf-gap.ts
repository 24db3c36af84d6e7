/**
 * `dkv kv perf` against a plain Bun client on the same one-member dstore, side by side in
 * one run (a plain script, not a test): does the load tool report what a client reaches?
 *
 *   bun run test/bench/kv-perf-gap.ts [--rounds 3] [--duration 2s] [--threads 50] [--dkv dist/dkv]
 *
 * - starts `dkv serve --shards 200=dstore` (a one-member Raft group, fsync per batch) on a
 *   free 127.0.0.1 port with a temporary data dir;
 * - per round, in alternating order: `dkv kv perf --threads N` (set only, 128 B values,
 *   100 keys) and the library RpcClient in this process with N sets in flight over one
 *   connection (the same workload, no latency recording);
 * - prints each round's ops/s and the ratio of the medians; kills the server by PID.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/config/parse.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { flagValue, ROOT, runCommand } from "./commands.ts";

const SHARD = 200;
const KEYS = 100;
const VALUE_BYTES = 128;
const START_TIMEOUT_MS = 20_000;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** N workers each awaiting one set at a time, for `durationMs`; ops/s. */
async function plainClient(endpoint: string, threads: number, durationMs: number): Promise<number> {
  await using client = new RpcClient({ endpoints: [endpoint], transport: "tcp", serializer: "binary" });
  const store = client.store(SHARD);
  const value = new Uint8Array(VALUE_BYTES).fill(0x61);
  const keys = Array.from({ length: KEYS }, (_, i) => `__plain/${i}`);
  await store.has("__plain/probe");
  let next = 0;
  let done = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: threads }, async () => {
      while (performance.now() < deadline) {
        await store.set(keys[next++ % KEYS]!, value);
        done++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1_000;
  for (const key of keys) await store.delete(key);
  return done / seconds;
}

async function kvPerf(dkv: string, endpoint: string, threads: number, durationText: string): Promise<number> {
  const out = await runCommand([
    dkv,
    "kv",
    "perf",
    "--shard",
    String(SHARD),
    "--endpoints",
    endpoint,
    "--threads",
    String(threads),
    "--duration",
    durationText,
    "--keys",
    String(KEYS),
    "--value-size",
    String(VALUE_BYTES),
    "--skip",
    "set-large,get,delete,has,has-not,mixed",
    "--json",
  ]);
  const report: { results: { test: string; opsPerSec: number }[] } = JSON.parse(out);
  const set = report.results.find((r) => r.test === "set");
  if (set === undefined) throw new Error(`no set result in ${out}`);
  return set.opsPerSec;
}

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "3"));
  const threads = Number(flagValue(argv, "--threads", "50"));
  const durationText = flagValue(argv, "--duration", "2s");
  const durationMs = parseDuration(durationText, "--duration");
  const dkv = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv"));
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) throw new Error("--rounds must be 1..100");
  if (!(await Bun.file(dkv).exists())) await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);

  const dataDir = await mkdtemp(join(tmpdir(), "dkv-perf-gap-"));
  const server = Bun.spawn(
    [
      dkv,
      "serve",
      "--transport-endpoint",
      "127.0.0.1:0",
      "--shards",
      `${SHARD}=dstore`,
      "--data-dir",
      dataDir,
    ],
    { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "ignore" },
  );
  try {
    const reader = server.stdout.getReader();
    let text = "";
    const deadline = Date.now() + START_TIMEOUT_MS;
    let match: RegExpExecArray | null = null;
    while (match === null) {
      if (Date.now() > deadline) throw new Error(`dkv serve did not start:\n${text}`);
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`dkv serve exited:\n${text}`);
      text += new TextDecoder().decode(chunk.value);
      match = /dkv listening on tcp (\S+)\n/.exec(text);
    }
    const endpoint = match[1]!;
    console.log(
      `one-member dstore on ${endpoint}; set, ${threads} in flight, ${durationText} per run, ${rounds} rounds`,
    );
    const perf: number[] = [];
    const plain: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (["perf", "plain"] as const) : (["plain", "perf"] as const);
      for (const side of order) {
        if (side === "perf") perf.push(await kvPerf(dkv, endpoint, threads, durationText));
        else plain.push(await plainClient(endpoint, threads, durationMs));
      }
      console.log(
        `round ${round + 1}: dkv kv perf ${Math.round(perf.at(-1)!)} ops/s, plain client ${Math.round(plain.at(-1)!)} ops/s`,
      );
    }
    console.log(
      `median: dkv kv perf ${Math.round(median(perf))}, plain client ${Math.round(median(plain))}; perf/plain ${(median(perf) / median(plain)).toFixed(2)}`,
    );
  } finally {
    server.kill("SIGTERM");
    await server.exited;
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();

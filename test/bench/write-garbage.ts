/**
 * Bytes and objects a one-member dstore allocates per set (a plain script, not a test):
 *
 *   bun run test/bench/write-garbage.ts [--warmup 30000] [--writes 20000] [--rounds 3]
 *
 * Starts `dkv serve` from source (shard 200 = dstore) with the JS collector off
 * (BUN_JSC_useGC=false; Bun's GC timer off too) and write-garbage-preload.ts, writes
 * `--warmup` sets of 128 B to 100 keys (50 in flight, as memory.ts's `many` case) so the
 * JIT has settled, then per round `--writes` sets and the heap's growth over them: with no
 * collection at all, that is every allocation of the window, garbage included. It prints
 * JS heap bytes (heapCapacity), ArrayBuffer bytes and cells by type per set, and the
 * server's CPU per set (lower than in a normal run: no collector). The server's memory
 * only grows: keep warmup + rounds × writes to some 100,000 sets.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RpcClient } from "../../src/rpc/client/index.ts";
import { benchClusterArgs, flagValue, ROOT, readyStore, waitUntil } from "./commands.ts";

const SHARD = 200;
const KEYS = 100;
const IN_FLIGHT = 50;
const argv = process.argv.slice(2);
const WARMUP = Number(flagValue(argv, "--warmup", "30000"));
const WRITES = Number(flagValue(argv, "--writes", "20000"));
const ROUNDS = Number(flagValue(argv, "--rounds", "3"));
const START_TIMEOUT_MS = 30_000;
const REPORT_TIMEOUT_MS = 10_000;

interface Report {
  heapBytes: number;
  arrayBufferBytes: number;
  cpuUs: number;
  collected: boolean;
  types: Record<string, number>;
}

async function sets(store: ReturnType<RpcClient["store"]>, count: number, value: Uint8Array): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) {
        const n = next++;
        await store.set(`mem/${n % KEYS}`, value);
      }
    }),
  );
}

const root = await mkdtemp(join(tmpdir(), "dkv-garbage-"));
const outPath = join(root, "report.json");
const { args, endpoints } = await benchClusterArgs(1, `${SHARD}=dstore`, root);
const server = Bun.spawn(
  [
    "bun",
    "--preload",
    join(ROOT, "test/bench/write-garbage-preload.ts"),
    join(ROOT, "cli/main.ts"),
    ...args[0]!,
  ],
  {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: {
      ...process.env,
      BUN_JSC_useGC: "false",
      BUN_GC_TIMER_DISABLE: "1",
      DKV_GARBAGE_OUT: outPath,
    },
  },
);
try {
  const { client, store } = await readyStore(endpoints, SHARD, START_TIMEOUT_MS);
  await using _client = client;
  const value = new Uint8Array(128).fill(0x61);
  await sets(store, WARMUP, value);
  const rounds: Report[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await rm(outPath, { force: true });
    server.kill("SIGUSR2");
    await sets(store, WRITES, value);
    server.kill("SIGUSR2");
    await waitUntil("the report", REPORT_TIMEOUT_MS, async () => Bun.file(outPath).exists());
    await Bun.sleep(50);
    rounds.push((await Bun.file(outPath).json()) as Report);
  }
  const collected = rounds.filter((r) => r.collected).length;
  if (collected > 0)
    console.log(`warning: a collection ran in ${collected} of ${ROUNDS} windows (figures short)`);
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
  const per = (pick: (r: Report) => number) => median(rounds.map(pick)) / WRITES;
  console.log(
    `per set (median of ${ROUNDS} rounds of ${WRITES} sets): JS heap ${per((r) => r.heapBytes).toFixed(0)} B, ` +
      `ArrayBuffers ${per((r) => r.arrayBufferBytes).toFixed(0)} B, server CPU ${per((r) => r.cpuUs).toFixed(1)} us`,
  );
  const names = new Set(rounds.flatMap((r) => Object.keys(r.types)));
  const rows = [...names]
    .map((name) => ({ name, count: per((r) => r.types[name] ?? 0) }))
    .filter((row) => Math.abs(row.count) >= 0.05)
    .sort((a, b) => b.count - a.count);
  for (const row of rows) console.log(`  ${row.name.padEnd(28)} ${row.count.toFixed(2)}`);
} finally {
  server.kill();
  await server.exited;
  await rm(root, { recursive: true, force: true });
}

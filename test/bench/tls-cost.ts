/**
 * What TLS + token authentication cost in throughput, one run (a plain script, not a test):
 * set and get with 50 in flight on an lstore and on a 3-member dstore, plain vs secure.
 *
 *   bun run test/bench/tls-cost.ts [--rounds 3] [--duration 3s] [--threads 50] [--dkv dist/dkv] [--control]
 *
 * - builds `dist/dkv` unless it exists; issues a CA, member and client certificates with
 *   its `dkv cert` commands and an auth file with one write-role token
 *   (test/verify/security.ts);
 * - starts four configurations on free 127.0.0.1 ports, each process by PID:
 *   (a) `dkv serve --shards 100=lstore`, plain;
 *   (b) the same with `--cert-file`/`--key-file` and `--auth-file`;
 *   (c) a 3-member `200=dstore` cluster, plain;
 *   (d) the same with peer mutual TLS, client TLS with client certificates and
 *       `--auth-file` (the flags of `bun run verify --secure`);
 * - per round and per store, plain and secure one after the other, the first of the two
 *   alternating between rounds so drift in the machine's load hits both alike:
 *   `dkv kv perf --threads 50 --keys 100 --skip set-large,delete,has,has-not,mixed`
 *   (secure: `--cacert`, `--cert`/`--key`, `--token-file`), a new process per run, so
 *   each run pays its TLS handshake and token frame once, like any client;
 * - first, one uncounted 1 s warm-up run per configuration;
 * - prints each round's ops/s, the median per configuration and the secure/plain ratio,
 *   and the servers' CPU time per operation (from /proc; Linux), which the machine's
 *   load moves much less than ops/s.
 *
 * --control starts the "secure" side plain too (an A/A run): its ratios are the noise floor
 * of the measurement on this machine.
 *
 * Every step is bounded in time; every process started is stopped by its PID.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/config/parse.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import {
  type ClientAccess,
  createSecurity,
  type SecurityMaterial,
  secureServeArgs,
} from "../verify/security.ts";
import { flagValue, ROOT, runCommand } from "./commands.ts";

const LSTORE_SHARD = 100;
const DSTORE_SHARD = 200;
const MEMBER_IDS = ["n1", "n2", "n3"] as const;
const KEYS = 100;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 100;

type Store = "lstore" | "dstore";
type Mode = "plain" | "secure";

interface Deployment {
  readonly store: Store;
  readonly mode: Mode;
  /** Whether clients need TLS and the token (false for both sides of a --control run). */
  readonly secured: boolean;
  readonly shard: number;
  readonly endpoints: string[];
  readonly procs: Bun.Subprocess[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return 0;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function freePort(used: Set<number>): Promise<number> {
  // Bounded: the OS nearly always hands out an unused port on the first try.
  for (let attempt = 0; attempt < 50; attempt++) {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    if (!used.has(port)) {
      used.add(port);
      return port;
    }
  }
  throw new Error("could not find a free port");
}

/** Waits until `shard` answers a read on `endpoint` (for a dstore: a leader is elected). */
async function waitServing(
  endpoint: string,
  shard: number,
  access: ClientAccess | undefined,
  procs: Bun.Subprocess[],
  logPath: string,
): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  let lastError = "";
  while (performance.now() < deadline) {
    const exited = procs.find((proc) => proc.exitCode !== null);
    if (exited !== undefined) throw new Error(`a server exited with ${exited.exitCode}; see ${logPath}`);
    try {
      await using client = new RpcClient({
        endpoints: [endpoint],
        transport: "tcp",
        serializer: "binary",
        timeoutMs: 1_000,
        ...access,
      });
      await client.store(shard).has("__tls_cost/probe");
      return;
    } catch (error) {
      lastError = String(error);
    }
    await Bun.sleep(POLL_MS);
  }
  throw new Error(
    `${endpoint} shard ${shard} did not serve within ${START_TIMEOUT_MS} ms (${lastError}); see ${logPath}`,
  );
}

/** A secured deployment must refuse a client without TLS and token, or the run measures nothing. */
async function assertRefusesPlain(endpoint: string, shard: number): Promise<void> {
  let refused = false;
  try {
    await using client = new RpcClient({
      endpoints: [endpoint],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 2_000,
    });
    await client.store(shard).has("__tls_cost/probe");
  } catch {
    refused = true;
  }
  if (!refused) throw new Error(`${endpoint} answered a plain client without a token: not secured`);
}

function spawnServe(dkv: string, args: string[], logPath: string): Bun.Subprocess {
  // Only PATH: no inherited DKV_* variable changes the configuration.
  return Bun.spawn([dkv, "serve", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "" },
    stdin: "ignore",
    stdout: Bun.file(logPath),
    stderr: Bun.file(`${logPath}.err`),
  });
}

async function startLstore(
  dkv: string,
  root: string,
  used: Set<number>,
  mode: Mode,
  security: SecurityMaterial | undefined,
  procs: Bun.Subprocess[],
): Promise<Deployment> {
  const endpoint = `127.0.0.1:${await freePort(used)}`;
  const logPath = join(root, `lstore-${mode}.log`);
  const args = [
    "--shards",
    `${LSTORE_SHARD}=lstore`,
    "--transport-endpoint",
    endpoint,
    "--serializer",
    "binary",
  ];
  if (security !== undefined) {
    const id = MEMBER_IDS[0];
    args.push("--cert-file", security.memberCertFile(id), "--key-file", security.memberKeyFile(id));
    args.push("--auth-file", security.authFile);
  }
  const proc = spawnServe(dkv, args, logPath);
  procs.push(proc);
  await waitServing(endpoint, LSTORE_SHARD, security?.clientAccess, [proc], logPath);
  if (security !== undefined) await assertRefusesPlain(endpoint, LSTORE_SHARD);
  return {
    store: "lstore",
    mode,
    secured: security !== undefined,
    shard: LSTORE_SHARD,
    endpoints: [endpoint],
    procs: [proc],
  };
}

async function startDstore(
  dkv: string,
  root: string,
  used: Set<number>,
  mode: Mode,
  security: SecurityMaterial | undefined,
  procs: Bun.Subprocess[],
): Promise<Deployment> {
  const members = [];
  for (const id of MEMBER_IDS) {
    members.push({ id, peerPort: await freePort(used), rpcPort: await freePort(used) });
  }
  const clusterMembers = members.map((m) => `${m.id}=127.0.0.1:${m.peerPort}`).join(",");
  const own: Bun.Subprocess[] = [];
  for (const member of members) {
    const dataDir = join(root, `dstore-${mode}-${member.id}`);
    await mkdir(dataDir, { recursive: true });
    const args = [
      "--shards",
      `${DSTORE_SHARD}=dstore`,
      "--replica-id",
      member.id,
      "--cluster-members",
      clusterMembers,
      "--data-dir",
      dataDir,
      "--transport-endpoint",
      `127.0.0.1:${member.rpcPort}`,
      "--serializer",
      "binary",
      ...(security === undefined ? [] : secureServeArgs(security, member.id)),
    ];
    const proc = spawnServe(dkv, args, join(root, `dstore-${mode}-${member.id}.log`));
    procs.push(proc);
    own.push(proc);
  }
  const endpoints = members.map((m) => `127.0.0.1:${m.rpcPort}`);
  for (const endpoint of endpoints) {
    await waitServing(
      endpoint,
      DSTORE_SHARD,
      security?.clientAccess,
      own,
      join(root, `dstore-${mode}-*.log`),
    );
    if (security !== undefined) await assertRefusesPlain(endpoint, DSTORE_SHARD);
  }
  return {
    store: "dstore",
    mode,
    secured: security !== undefined,
    shard: DSTORE_SHARD,
    endpoints,
    procs: own,
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticksPerSecond = 100;
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

async function serverCpuSeconds(procs: readonly Bun.Subprocess[]): Promise<number> {
  let total = 0;
  for (const proc of procs) total += await cpuSeconds(proc.pid);
  return total;
}

/**
 * One `dkv kv perf` run of set then get; ops/s of each, and the servers' CPU time per
 * operation (set and get together): on a shared, loaded machine ops/s moves with the
 * other processes' load, CPU time per operation much less.
 */
async function kvPerf(
  dkv: string,
  deployment: Deployment,
  clientArgs: string[],
  threads: number,
  durationText: string,
  durationMs: number,
): Promise<{ set: number; get: number; cpuUsPerOp: number }> {
  const argv = [
    dkv,
    "kv",
    "perf",
    "--shard",
    String(deployment.shard),
    "--endpoints",
    deployment.endpoints.join(","),
    "--threads",
    String(threads),
    "--keys",
    String(KEYS),
    "--duration",
    durationText,
    "--skip",
    "set-large,delete,has,has-not,mixed",
    "--json",
    ...(deployment.secured ? clientArgs : []),
  ];
  const cpuBefore = await serverCpuSeconds(deployment.procs);
  // Two tests of `durationMs` each, plus preload, cleanup and start-up.
  const proc = Bun.spawn(argv, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 2 * durationMs + 60_000,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}:\n${stdout}\n${stderr}`);
  const report: { results: { test: string; opsPerSec: number; errors: number }[] } = JSON.parse(stdout);
  const pick = (test: string): number => {
    const result = report.results.find((r) => r.test === test);
    if (result === undefined) throw new Error(`no ${test} result in ${stdout}`);
    if (result.errors > 0) throw new Error(`${test} had ${result.errors} errors:\n${stdout}`);
    return result.opsPerSec;
  };
  const cpuUsed = (await serverCpuSeconds(deployment.procs)) - cpuBefore;
  const set = pick("set");
  const get = pick("get");
  const operations = ((set + get) * durationMs) / 1000 + KEYS;
  return { set, get, cpuUsPerOp: (cpuUsed * 1e6) / operations };
}

async function stopAll(procs: readonly Bun.Subprocess[]): Promise<void> {
  for (const proc of procs) proc.kill("SIGTERM");
  await Promise.all(
    procs.map(async (proc) => {
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await proc.exited;
      clearTimeout(timer);
    }),
  );
}

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "3"));
  const threads = Number(flagValue(argv, "--threads", "50"));
  const durationText = flagValue(argv, "--duration", "3s");
  const durationMs = parseDuration(durationText, "--duration");
  const dkv = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv"));
  const control = argv.includes("--control");
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error("--rounds must be 1..20");
  if (!Number.isInteger(threads) || threads < 1 || threads > 1000)
    throw new Error("--threads must be 1..1000");
  if (durationMs < 100 || durationMs > 60_000) throw new Error("--duration must be 100ms..60s");
  if (!(await Bun.file(dkv).exists())) await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);

  const root = await mkdtemp(join(tmpdir(), "dkv-tls-cost-"));
  const procs: Bun.Subprocess[] = [];
  try {
    const certDir = join(root, "certs");
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    const security = await createSecurity(dkv, certDir, MEMBER_IDS);
    const tls = security.clientAccess.tls;
    const token = security.clientAccess.token;
    if (tls === undefined || tls.cert === undefined || tls.key === undefined || token === undefined) {
      throw new Error("createSecurity gave no client certificate or token");
    }
    const clientCert = join(certDir, "bench-client.crt");
    const clientKey = join(certDir, "bench-client.key");
    const tokenFile = join(certDir, "token");
    await writeFile(clientCert, String(tls.cert));
    await writeFile(clientKey, String(tls.key), { mode: 0o600 });
    await writeFile(tokenFile, token, { mode: 0o600 });
    const clientArgs = ["--cacert", security.caFile, "--cert", clientCert, "--key", clientKey];
    clientArgs.push("--token-file", tokenFile);

    const used = new Set<number>();
    const secureSide = control ? undefined : security;
    const deployments = {
      lstore: {
        plain: await startLstore(dkv, root, used, "plain", undefined, procs),
        secure: await startLstore(dkv, root, used, "secure", secureSide, procs),
      },
      dstore: {
        plain: await startDstore(dkv, root, used, "plain", undefined, procs),
        secure: await startDstore(dkv, root, used, "secure", secureSide, procs),
      },
    };
    console.log(
      `tls-cost: set then get, ${threads} in flight, ${KEYS} keys, ${durationText} per test, ${rounds} rounds; ` +
        (control
          ? "CONTROL: both sides plain (noise floor)"
          : "secure = client TLS + token auth (dstore: + peer mutual TLS, client certificates)"),
    );
    const results: Record<Store, Record<Mode, { set: number[]; get: number[]; cpu: number[] }>> = {
      lstore: { plain: { set: [], get: [], cpu: [] }, secure: { set: [], get: [], cpu: [] } },
      dstore: { plain: { set: [], get: [], cpu: [] }, secure: { set: [], get: [], cpu: [] } },
    };
    // Warm-up, not counted: every server process runs the workload once before round 1.
    for (const store of ["lstore", "dstore"] as const) {
      for (const mode of ["plain", "secure"] as const) {
        await kvPerf(dkv, deployments[store][mode], clientArgs, threads, "1s", 1_000);
      }
    }
    for (let round = 0; round < rounds; round++) {
      for (const store of ["lstore", "dstore"] as const) {
        const order: Mode[] = round % 2 === 0 ? ["plain", "secure"] : ["secure", "plain"];
        for (const mode of order) {
          const rate = await kvPerf(
            dkv,
            deployments[store][mode],
            clientArgs,
            threads,
            durationText,
            durationMs,
          );
          results[store][mode].set.push(rate.set);
          results[store][mode].get.push(rate.get);
          results[store][mode].cpu.push(rate.cpuUsPerOp);
          console.log(
            `round ${round + 1} ${store} ${mode.padEnd(6)}: set ${Math.round(rate.set)} ops/s, get ${Math.round(rate.get)} ops/s, server CPU ${rate.cpuUsPerOp.toFixed(1)} µs/op`,
          );
        }
      }
    }
    console.log("");
    // In a --control run the second column is plain too.
    console.log(
      `| store  | op  | plain ops/s | ${control ? "plain (B) ops/s" : "TLS+auth ops/s"} | secure/plain |`,
    );
    console.log("| ------ | --- | ----------: | -------------: | -----------: |");
    for (const store of ["lstore", "dstore"] as const) {
      for (const op of ["set", "get"] as const) {
        const plain = median(results[store].plain[op]);
        const secure = median(results[store].secure[op]);
        console.log(
          `| ${store} | ${op} | ${Math.round(plain).toString().padStart(11)} | ${Math.round(secure).toString().padStart(14)} | ${(secure / plain).toFixed(2).padStart(12)} |`,
        );
      }
    }
    console.log(`(medians of ${rounds} rounds)`);
    console.log("");
    console.log("| store  | server CPU µs/op plain | secure | secure/plain |");
    console.log("| ------ | ---------------------: | -----: | -----------: |");
    for (const store of ["lstore", "dstore"] as const) {
      const plain = median(results[store].plain.cpu);
      const secure = median(results[store].secure.cpu);
      console.log(
        `| ${store} | ${plain.toFixed(1).padStart(22)} | ${secure.toFixed(1).padStart(6)} | ${(secure / plain).toFixed(2).padStart(12)} |`,
      );
    }
    console.log("(set and get together, all of the store's server processes; medians of the rounds)");
  } finally {
    await stopAll(procs);
    await rm(root, { recursive: true, force: true });
  }
}

await main();

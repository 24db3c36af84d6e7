/**
 * What TLS + token authentication cost, one run (a plain script, not a test): set and get
 * with 50 in flight on an lstore and on a 3-member dstore, plain vs secure.
 *
 *   bun run test/bench/tls-cost.ts [--rounds 10] [--duration 500ms] [--threads 50] [--pin CPU|none]
 *     [--dkv dist/dkv] [--control]
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
 * - one client process per configuration (this script with --worker: RpcClient over tcp,
 *   binary serializer, 128-byte values on 100 keys, like `dkv kv perf --threads 50 --keys
 *   100`), connected (TLS handshake and token done) and warmed up before anything counts;
 * - many short windows: in each, the plain and the secure client of a store run the same
 *   op (set, or get) for --duration AT THE SAME TIME, so both sides see the same load from
 *   the machine's other users (the one who starts first alternates); the other agents on
 *   this shared 2-core machine moved one binary's ops/s between runs minutes apart by
 *   0.48-1.26×, which an A/B in separate windows cannot cancel;
 * - the measure is CPU time per operation of everything that works for it: the client
 *   process and every server process of the configuration, all threads (getrusage and
 *   /proc/PID/stat, 10 ms ticks; Linux). When the machine is saturated, throughput is
 *   inversely proportional to CPU per operation, so the throughput cost of TLS + auth is
 *   1 - plain/secure of the CPU per operation. CPU per operation still moves with the
 *   load (fewer requests per wakeup when processes are scheduled apart, colder caches),
 *   which is why each window is a pair and the figure is the median of the pairs' ratios;
 * - --pin CPU (default 0; `none` to spread) runs every client and server on that one CPU
 *   (taskset): a process runs only while the others wait, so each wakeup finds a full
 *   batch of the requests in flight, as on a saturated machine, whatever the other agents
 *   do (they take turns on that CPU: wall time, not work per operation). On 2026-12-06
 *   this narrowed the per-window ratios' quartiles from about 0.87-1.47 to 0.93-1.11;
 * - prints per window the ops/s and CPU µs/op, then per store and op the medians, the
 *   median of the per-window secure/plain ratios with their spread (min, quartiles, max)
 *   and the derived throughput cost; ops/s ratios too, for reference.
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

/** `dkv` itself, or `taskset -c CPU dkv` (--pin). */
type Launcher = readonly string[];

function spawnServe(launcher: Launcher, args: string[], logPath: string): Bun.Subprocess {
  // Only PATH: no inherited DKV_* variable changes the configuration.
  return Bun.spawn([...launcher, "serve", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "" },
    stdin: "ignore",
    stdout: Bun.file(logPath),
    stderr: Bun.file(`${logPath}.err`),
  });
}

async function startLstore(
  launcher: Launcher,
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
  const proc = spawnServe(launcher, args, logPath);
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
  launcher: Launcher,
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
    const proc = spawnServe(launcher, args, join(root, `dstore-${mode}-${member.id}.log`));
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

/**
 * CPU nanoseconds a process has used so far, all its threads, exited ones included:
 * this process from getrusage (µs), another from /proc/PID/stat (clock ticks of 10 ms;
 * Linux). Summing /proc/PID/task/TID/schedstat would be finer but loses the time of
 * threads that exit during a window (Bun's helper threads come and go).
 */
async function cpuNs(pid: number | "self"): Promise<number> {
  if (pid === "self") {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) * 1000;
  }
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticksPerSecond = 100;
  return ((Number(fields[11]) + Number(fields[12])) / ticksPerSecond) * 1e9;
}

interface Sample {
  opsPerSec: number;
  /** Client and servers together, µs per operation. */
  cpuUs: number;
  serverCpuUs: number;
  clientCpuUs: number;
}

type Op = "set" | "get";

/** What a client worker reports for one run of an op. */
interface WorkerResult {
  ops: number;
  seconds: number;
  cpuNs: number;
  errors: number;
  firstError: string;
}

/**
 * A client process (this script with --worker): connects once, then runs `set|get MS`
 * commands from stdin with `threads` in flight and answers each with a WorkerResult line.
 */
async function runWorker(argv: readonly string[]): Promise<void> {
  const endpoints = flagValue(argv, "--endpoints", "").split(",");
  const shard = Number(flagValue(argv, "--shard", "0"));
  const threads = Number(flagValue(argv, "--threads", "50"));
  const ca = flagValue(argv, "--ca", "");
  const access: ClientAccess =
    ca === ""
      ? {}
      : {
          tls: {
            ca: await Bun.file(ca).text(),
            cert: await Bun.file(flagValue(argv, "--cert", "")).text(),
            key: await Bun.file(flagValue(argv, "--key", "")).text(),
          },
          token: (await Bun.file(flagValue(argv, "--token-file", "")).text()).trim(),
        };
  const client = new RpcClient({
    endpoints,
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 10_000,
    ...access,
  });
  const store = client.store(shard);
  const value = new Uint8Array(128).fill(0x61);
  const keys = Array.from({ length: KEYS }, (_, i) => `__tls_cost/${i}`);
  try {
    // Bounded by the parent: it sends a bounded number of commands, then closes stdin.
    for await (const line of console) {
      const [op, msText] = line.trim().split(" ");
      if (op !== "set" && op !== "get") break;
      const durationMs = Number(msText);
      let done = 0;
      let errors = 0;
      let firstError = "";
      const cpuBefore = await cpuNs("self");
      const start = performance.now();
      const deadline = start + durationMs;
      const worker = async () => {
        // Bounded by the deadline (and by 100 errors).
        for (let i = 0; performance.now() < deadline && errors < 100; i++) {
          try {
            const key = keys[(done + i) % KEYS]!;
            if (op === "set") await store.set(key, value);
            else await store.get(key);
            done++;
          } catch (error) {
            errors++;
            if (firstError === "") firstError = String(error);
          }
        }
      };
      await Promise.all(Array.from({ length: threads }, worker));
      const seconds = (performance.now() - start) / 1000;
      const result: WorkerResult = {
        ops: done,
        seconds,
        cpuNs: (await cpuNs("self")) - cpuBefore,
        errors,
        firstError,
      };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    }
  } finally {
    await client.close();
  }
}

/** A running client worker and its answers, line by line. */
class WorkerHandle {
  private readonly lines: AsyncIterator<string>;

  constructor(
    readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">,
    readonly name: string,
  ) {
    this.lines = readLines(proc.stdout);
  }

  async run(op: Op, durationMs: number): Promise<WorkerResult> {
    this.proc.stdin.write(`${op} ${durationMs}\n`);
    await this.proc.stdin.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name}: no result within ${durationMs + 60_000} ms`)),
        durationMs + 60_000,
      );
    });
    try {
      const next = await Promise.race([this.lines.next(), timeout]);
      if (next.done === true) {
        const stderr = await new Response(this.proc.stderr).text();
        throw new Error(`${this.name}: the client worker exited: ${stderr}`);
      }
      const result = JSON.parse(next.value) as WorkerResult;
      if (result.errors > 0) {
        throw new Error(`${this.name} ${op}: ${result.errors} errors, first: ${result.firstError}`);
      }
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.proc.exited;
    clearTimeout(timer);
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      newline = pending.indexOf("\n");
    }
  }
}

interface ClientFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  tokenFile: string;
}

function spawnWorker(
  launcher: readonly string[],
  deployment: Deployment,
  threads: number,
  files: ClientFiles,
): WorkerHandle {
  const args = [
    "--worker",
    "--endpoints",
    deployment.endpoints.join(","),
    "--shard",
    String(deployment.shard),
    "--threads",
    String(threads),
  ];
  if (deployment.secured) {
    args.push("--ca", files.caFile, "--cert", files.certFile, "--key", files.keyFile);
    args.push("--token-file", files.tokenFile);
  }
  const proc = Bun.spawn([...launcher, process.execPath, import.meta.path, ...args], {
    cwd: ROOT,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  return new WorkerHandle(proc, `${deployment.store} ${deployment.mode}`);
}

/**
 * One window: the plain and the secure client run `op` at the same time, so both see the
 * same load on the machine; CPU per operation of each side (its client and servers).
 */
async function measurePair(
  pair: Record<Mode, { deployment: Deployment; worker: WorkerHandle }>,
  op: Op,
  durationMs: number,
  secureFirst: boolean,
): Promise<Record<Mode, Sample>> {
  const modes: Mode[] = secureFirst ? ["secure", "plain"] : ["plain", "secure"];
  const cpuOf = async (mode: Mode) => {
    const each = await Promise.all(pair[mode].deployment.procs.map((proc) => cpuNs(proc.pid)));
    return each.reduce((a, b) => a + b, 0);
  };
  const before = { plain: await cpuOf("plain"), secure: await cpuOf("secure") };
  const results = await Promise.all(modes.map((mode) => pair[mode].worker.run(op, durationMs)));
  const after = { plain: await cpuOf("plain"), secure: await cpuOf("secure") };
  const samples = {} as Record<Mode, Sample>;
  modes.forEach((mode, i) => {
    const result = results[i]!;
    const serverNs = after[mode] - before[mode];
    samples[mode] = {
      opsPerSec: result.ops / result.seconds,
      cpuUs: (result.cpuNs + serverNs) / 1000 / result.ops,
      serverCpuUs: serverNs / 1000 / result.ops,
      clientCpuUs: result.cpuNs / 1000 / result.ops,
    };
  });
  return samples;
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return 0;
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low);
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
  const rounds = Number(flagValue(argv, "--rounds", "10"));
  const threads = Number(flagValue(argv, "--threads", "50"));
  const durationText = flagValue(argv, "--duration", "500ms");
  const durationMs = parseDuration(durationText, "--duration");
  const dkv = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv"));
  const control = argv.includes("--control");
  const pin = flagValue(argv, "--pin", "0");
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new Error("--rounds must be 1..50");
  if (!Number.isInteger(threads) || threads < 1 || threads > 1000)
    throw new Error("--threads must be 1..1000");
  if (durationMs < 100 || durationMs > 60_000) throw new Error("--duration must be 100ms..60s");
  if (!(await Bun.file(dkv).exists())) await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);

  if (pin !== "none" && !/^\d{1,3}$/.test(pin)) throw new Error("--pin takes a CPU number or none");
  const launcher: Launcher = pin === "none" ? [dkv] : ["taskset", "-c", pin, dkv];

  const root = await mkdtemp(join(tmpdir(), "dkv-tls-cost-"));
  const procs: Bun.Subprocess[] = [];
  const workers: WorkerHandle[] = [];
  try {
    const certDir = join(root, "certs");
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    const security = await createSecurity(dkv, certDir, MEMBER_IDS);
    const used = new Set<number>();
    const secureSide = control ? undefined : security;
    const deployments = {
      lstore: {
        plain: await startLstore(launcher, root, used, "plain", undefined, procs),
        secure: await startLstore(launcher, root, used, "secure", secureSide, procs),
      },
      dstore: {
        plain: await startDstore(launcher, root, used, "plain", undefined, procs),
        secure: await startDstore(launcher, root, used, "secure", secureSide, procs),
      },
    };
    const token = security.clientAccess.token;
    if (token === undefined) throw new Error("createSecurity gave no token");
    const files: ClientFiles = {
      caFile: security.caFile,
      certFile: security.clientCertFile,
      keyFile: security.clientKeyFile,
      tokenFile: join(certDir, "token"),
    };
    await writeFile(files.tokenFile, token, { mode: 0o600 });
    const clientLauncher = pin === "none" ? [] : ["taskset", "-c", pin];
    const pairs = {} as Record<Store, Record<Mode, { deployment: Deployment; worker: WorkerHandle }>>;
    for (const store of ["lstore", "dstore"] as const) {
      const entry = (mode: Mode) => {
        const deployment = deployments[store][mode];
        const worker = spawnWorker(clientLauncher, deployment, threads, files);
        workers.push(worker);
        return { deployment, worker };
      };
      pairs[store] = { plain: entry("plain"), secure: entry("secure") };
    }
    console.log(
      `tls-cost: set and get, ${threads} in flight, ${KEYS} keys, ${durationText} per op, ${rounds} rounds, ` +
        `plain and secure at the same time${pin === "none" ? "" : `, all on CPU ${pin}`}; ` +
        (control
          ? "CONTROL: both sides plain (noise floor)"
          : "secure = client TLS + token auth (dstore: + peer mutual TLS, client certificates)"),
    );
    const results = {} as Record<Store, Record<Op, Record<Mode, Sample[]>>>;
    for (const store of ["lstore", "dstore"] as const) {
      results[store] = { set: { plain: [], secure: [] }, get: { plain: [], secure: [] } };
    }
    // Warm-up, not counted: connects each client (TLS handshake, token) and writes the keys.
    for (const store of ["lstore", "dstore"] as const) {
      for (const op of ["set", "get"] as const) await measurePair(pairs[store], op, 500, false);
    }
    for (let round = 0; round < rounds; round++) {
      for (const store of ["lstore", "dstore"] as const) {
        for (const op of ["set", "get"] as const) {
          const samples = await measurePair(pairs[store], op, durationMs, round % 2 === 1);
          const line: string[] = [];
          for (const mode of ["plain", "secure"] as const) {
            const sample = samples[mode];
            results[store][op][mode].push(sample);
            line.push(
              `${mode} ${Math.round(sample.opsPerSec)} ops/s ${sample.cpuUs.toFixed(1)} µs/op (servers ${sample.serverCpuUs.toFixed(1)}, client ${sample.clientCpuUs.toFixed(1)})`,
            );
          }
          console.log(`round ${round + 1} ${store} ${op}: ${line.join("; ")}`);
        }
      }
    }
    const secureName = control ? "plain (B)" : "TLS+auth";
    console.log("");
    console.log(
      `CPU time per operation, client + all servers (µs; medians of ${rounds} rounds), and what it implies for throughput on a saturated machine:`,
    );
    console.log("");
    console.log(
      `| store  | op  | plain µs/op | ${secureName} µs/op | ratio of medians | per-window ratios min / q1 / median / q3 / max | throughput cost (from the median ratio) |`,
    );
    console.log("| --- | --- | ---: | ---: | ---: | --- | ---: |");
    for (const store of ["lstore", "dstore"] as const) {
      for (const op of ["set", "get"] as const) {
        const plain = results[store][op].plain.map((s) => s.cpuUs);
        const secure = results[store][op].secure.map((s) => s.cpuUs);
        const paired = plain.map((p, i) => secure[i]! / p);
        const ratio = quantile(paired, 0.5);
        const spread = [0, 0.25, 0.5, 0.75, 1].map((q) => quantile(paired, q).toFixed(2)).join(" / ");
        console.log(
          `| ${store} | ${op} | ${quantile(plain, 0.5).toFixed(1)} | ${quantile(secure, 0.5).toFixed(1)} | ${(quantile(secure, 0.5) / quantile(plain, 0.5)).toFixed(2)} | ${spread} | ${((1 - 1 / ratio) * 100).toFixed(0)}% |`,
        );
      }
    }
    console.log("");
    console.log("For reference, ops/s (moves with the machine's load):");
    console.log("");
    console.log(
      `| store  | op  | plain ops/s | ${secureName} ops/s | ratio of medians | per-window ratios min / median / max |`,
    );
    console.log("| --- | --- | ---: | ---: | ---: | --- |");
    for (const store of ["lstore", "dstore"] as const) {
      for (const op of ["set", "get"] as const) {
        const plain = results[store][op].plain.map((s) => s.opsPerSec);
        const secure = results[store][op].secure.map((s) => s.opsPerSec);
        const paired = plain.map((p, i) => secure[i]! / p);
        const spread = [0, 0.5, 1].map((q) => quantile(paired, q).toFixed(2)).join(" / ");
        console.log(
          `| ${store} | ${op} | ${Math.round(quantile(plain, 0.5))} | ${Math.round(quantile(secure, 0.5))} | ${(quantile(secure, 0.5) / quantile(plain, 0.5)).toFixed(2)} | ${spread} |`,
        );
      }
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.close()));
    await stopAll(procs);
    await rm(root, { recursive: true, force: true });
  }
}

if (Bun.argv.includes("--worker")) await runWorker(Bun.argv.slice(2));
else await main();

/**
 * Wall time of one CLI request against a running server, in one run (a plain script, not a
 * test):
 *
 *   bun run test/bench/cli-startup.ts [--runs 100] [--warmup 5] [--dkv dist/dkv]
 *
 * - installs hyperfine, etcd-server and etcd-client from Debian's packages when missing;
 * - builds dist/dkv when it is missing (pass --dkv to time another binary);
 * - starts `dkv serve` and etcd on free 127.0.0.1 ports with temporary data dirs and
 *   writes the key foo to both;
 * - hyperfine, alternating in one invocation: `dkv kv get foo`, `etcdctl get foo`, and a
 *   compiled Bun hello world (the floor: starting the runtime);
 * - prints median and p90 of each and the ratios; kills what it started by PID.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages, flagValue, ROOT, runCommand } from "./commands.ts";
import { waitForLine } from "./local-servers.ts";

const START_TIMEOUT_MS = 20_000;

interface Settings {
  runs: number;
  warmup: number;
  dkv: string;
}

function parseSettings(argv: readonly string[]): Settings {
  const runs = Number(flagValue(argv, "--runs", "100"));
  const warmup = Number(flagValue(argv, "--warmup", "5"));
  if (!Number.isInteger(runs) || runs < 3 || runs > 10_000) throw new Error("--runs must be 3..10000");
  if (!Number.isInteger(warmup) || warmup < 0 || warmup > 1_000) throw new Error("--warmup must be 0..1000");
  return { runs, warmup, dkv: flagValue(argv, "--dkv", join(ROOT, "dist", "dkv")) };
}

const started: Bun.Subprocess[] = [];

function spawn(argv: string[]): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(argv, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  started.push(proc);
  return proc;
}

/** A free loopback port: bound with port 0, read, released. */
function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

interface Timing {
  command: string;
  medianMs: number;
  p90Ms: number;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

async function main(): Promise<void> {
  const settings = parseSettings(Bun.argv.slice(2));
  await ensureDebianPackages(["hyperfine"], ["hyperfine"]);
  await ensureDebianPackages(["etcd", "etcdctl"], ["etcd-server", "etcd-client"]);
  if (!(await Bun.file(settings.dkv).exists())) {
    console.log("building dist/dkv...");
    await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);
  }
  const scratch = await mkdtemp(join(tmpdir(), "dkv-cli-startup-"));
  try {
    const hello = join(scratch, "hello");
    await Bun.write(join(scratch, "hello.ts"), 'console.log("hello");\n');
    await runCommand([process.execPath, "build", "--compile", join(scratch, "hello.ts"), "--outfile", hello]);

    const dkv = spawn([settings.dkv, "serve", "--transport-endpoint", "127.0.0.1:0"]);
    const endpoint = (await waitForLine(dkv, /dkv listening on tcp (\S+)\n/, "stdout", START_TIMEOUT_MS))[1]!;
    const clientPort = freePort();
    const peerPort = freePort();
    const etcdEndpoint = `127.0.0.1:${clientPort}`;
    const etcd = spawn([
      "etcd",
      "--name",
      "bench",
      "--data-dir",
      join(scratch, "etcd"),
      "--listen-client-urls",
      `http://${etcdEndpoint}`,
      "--advertise-client-urls",
      `http://${etcdEndpoint}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${peerPort}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peerPort}`,
      "--initial-cluster",
      `bench=http://127.0.0.1:${peerPort}`,
    ]);
    await waitForLine(etcd, /ready to serve client requests/, "stderr", START_TIMEOUT_MS);

    const dkvGet = `${settings.dkv} kv get foo --endpoints ${endpoint}`;
    const etcdGet = `etcdctl --endpoints=${etcdEndpoint} get foo`;
    await runCommand(["sh", "-c", `${settings.dkv} kv set foo bar --endpoints ${endpoint}`]);
    await runCommand(["sh", "-c", `ETCDCTL_API=3 etcdctl --endpoints=${etcdEndpoint} put foo bar`]);
    console.log(
      `${(await runCommand([settings.dkv, "version"])).trim()}; ${(await runCommand(["etcdctl", "version"])).split("\n")[0]}`,
    );

    const exported = join(scratch, "hyperfine.json");
    await runCommand([
      "hyperfine",
      "--shell=none",
      "--style",
      "basic",
      "--runs",
      String(settings.runs),
      "--warmup",
      String(settings.warmup),
      "--export-json",
      exported,
      "-n",
      "dkv kv get",
      dkvGet,
      "-n",
      "etcdctl get",
      etcdGet,
      "-n",
      "bun hello (compiled)",
      hello,
    ]);
    const report: { results: { command: string; times: number[] }[] } = JSON.parse(
      await readFile(exported, "utf8"),
    );
    const timings: Timing[] = report.results.map((result) => {
      const sorted = [...result.times].sort((a, b) => a - b);
      return {
        command: result.command,
        medianMs: percentile(sorted, 0.5) * 1_000,
        p90Ms: percentile(sorted, 0.9) * 1_000,
      };
    });
    console.log(
      `\n${settings.runs} runs each (${settings.warmup} warm-up), server up, wall time of one request:`,
    );
    console.log(`${"command".padEnd(24)}${"median ms".padStart(11)}${"p90 ms".padStart(10)}`);
    for (const t of timings) {
      console.log(
        `${t.command.padEnd(24)}${t.medianMs.toFixed(1).padStart(11)}${t.p90Ms.toFixed(1).padStart(10)}`,
      );
    }
    const [d, e, h] = timings;
    if (d !== undefined && e !== undefined && h !== undefined) {
      console.log(
        `\ndkv/etcdctl: median ${(d.medianMs / e.medianMs).toFixed(2)}, p90 ${(d.p90Ms / e.p90Ms).toFixed(2)} (target: at most 1.30)` +
          `\ndkv/bun hello: median ${(d.medianMs / h.medianMs).toFixed(2)}, p90 ${(d.p90Ms / h.p90Ms).toFixed(2)}`,
      );
    }
  } finally {
    for (const proc of started) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await proc.exited;
    }
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();

/**
 * The local servers the comparison scripts start: a `dkv serve` over tcp with the binary
 * serializer on a free 127.0.0.1 port, and a redis-server without persistence by default.
 * Each is pushed to the caller's `started` list, which the caller kills by PID when done.
 */
import { freePort, ROOT, runCommand } from "./commands.ts";

const START_TIMEOUT_MS = 10_000;

export type PipedProcess = Bun.Subprocess<"ignore", "pipe", "pipe">;

/** Spawns `argv` from the repository root with piped output, recorded in `started`. */
export function spawnPiped(argv: string[], started: Bun.Subprocess[]): PipedProcess {
  const proc = Bun.spawn(argv, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  started.push(proc);
  return proc;
}

/**
 * Reads `proc`'s `stream` until `pattern` matches (at most `timeoutMs`), then keeps
 * draining it so the process never blocks on a full pipe.
 */
export async function waitForLine(
  proc: PipedProcess,
  pattern: RegExp,
  stream: "stdout" | "stderr" = "stdout",
  timeoutMs = START_TIMEOUT_MS,
): Promise<RegExpExecArray> {
  const reader = proc[stream].getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  // Bounded by the deadline: each pass waits at most until then.
  for (;;) {
    const match = pattern.exec(text);
    if (match) {
      void (async () => {
        for (;;) if ((await reader.read()).done) return;
      })();
      return match;
    }
    const remaining = deadline - Date.now();
    const chunk = await Promise.race([
      reader.read(),
      Bun.sleep(Math.max(remaining, 0)).then(() => undefined),
    ]);
    if (chunk === undefined) throw new Error(`timed out waiting for ${pattern} from ${proc.pid}:\n${text}`);
    if (chunk.done) throw new Error(`process ${proc.pid} ended before ${pattern}:\n${text}`);
    text += decoder.decode(chunk.value);
  }
}

/** `dkv serve` over tcp + binary on a free port, with `extra` flags; resolves once it listens. */
export async function startLocalDkv(
  dkv: string,
  extra: string[],
  started: Bun.Subprocess[],
): Promise<{ proc: PipedProcess; endpoint: string }> {
  const proc = spawnPiped(
    [
      dkv,
      "serve",
      "--transport",
      "tcp",
      "--serializer",
      "binary",
      "--transport-endpoint",
      "127.0.0.1:0",
      "--log-level",
      "warn",
      ...extra,
    ],
    started,
  );
  const endpoint = (await waitForLine(proc, /dkv listening on tcp (\S+)\n/))[1]!;
  return { proc, endpoint };
}

/** redis-server on a free 127.0.0.1 port without snapshots, with `extra` flags. */
export async function startLocalRedis(
  extra: string[],
  started: Bun.Subprocess[],
): Promise<{ proc: PipedProcess; port: number }> {
  const port = await freePort();
  const proc = spawnPiped(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", ...extra],
    started,
  );
  await waitForLine(proc, /Ready to accept connections/);
  return { proc, port };
}

/** One redis-benchmark result: throughput and latency percentiles of a test. */
export interface RedisBenchmarkRow {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Runs redis-benchmark against 127.0.0.1:`port` (`tests` as for -t, e.g. "set,get") and
 * returns its CSV report by test name in lower case.
 */
export async function redisBenchmark(
  port: number,
  run: { tests: string; valueBytes: number; clients: number; requests: number; keys: number },
): Promise<Record<string, RedisBenchmarkRow>> {
  const out = await runCommand([
    "redis-benchmark",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    run.tests,
    "-d",
    String(run.valueBytes),
    "-c",
    String(run.clients),
    "-n",
    String(run.requests),
    "-r",
    String(run.keys),
    "--csv",
  ]);
  const lines = out
    .trim()
    .split("\n")
    .map((line) => line.split(",").map((cell) => cell.replace(/"/g, "")));
  const header = lines[0] ?? [];
  const column = (name: string) => header.indexOf(name);
  const rows: Record<string, RedisBenchmarkRow> = {};
  for (const cells of lines.slice(1)) {
    rows[cells[0]!.toLowerCase()] = {
      opsPerSec: Number(cells[column("rps")]),
      p50Ms: Number(cells[column("p50_latency_ms")]),
      p99Ms: Number(cells[column("p99_latency_ms")]),
    };
  }
  return rows;
}

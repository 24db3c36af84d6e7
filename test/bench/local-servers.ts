/**
 * The local servers the comparison scripts start: a `dkv serve` over tcp with the binary
 * serializer on a free 127.0.0.1 port, and a redis-server without persistence by default.
 * Each is pushed to the caller's `started` list, which the caller kills by PID when done.
 */
import { freePort, ROOT } from "./commands.ts";

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

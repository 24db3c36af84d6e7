import { readdir, rename, stat } from "node:fs/promises";
import { join } from "node:path";

/** Helpers for tests that run the compiled dist/dkv, the way users run it. */

export const ROOT = join(import.meta.dir, "..", "..");
export const DKV = join(ROOT, "dist", "dkv");

const SOURCE_DIRS = ["src", "cli"];
const SOURCE_FILES = ["package.json", "build.ts", "bun.lock"];
const BUILD_TIMEOUT_MS = 120_000;
const SERVER_START_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 15_000;

async function newestSourceMtimeMs(): Promise<number> {
  let newest = 0;
  for (const dir of SOURCE_DIRS) {
    const entries = await readdir(join(ROOT, dir), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      newest = Math.max(newest, (await stat(join(entry.parentPath, entry.name))).mtimeMs);
    }
  }
  for (const file of SOURCE_FILES) {
    newest = Math.max(newest, (await stat(join(ROOT, file)).catch(() => ({ mtimeMs: 0 }))).mtimeMs);
  }
  return newest;
}

let building: Promise<string> | undefined;

/**
 * dist/dkv, built once per test run when it is missing or older than any source. Built
 * to a temporary name and renamed, so a concurrent run never sees a half-written binary.
 */
export function ensureBinary(): Promise<string> {
  building ??= (async () => {
    const binary = await stat(DKV).catch(() => undefined);
    if (binary !== undefined && binary.mtimeMs >= (await newestSourceMtimeMs())) return DKV;
    const staged = join(ROOT, "dist", `.dkv.build-${process.pid}`);
    const proc = Bun.spawn([process.execPath, "run", join(ROOT, "build.ts"), "--outfile", staged], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      timeout: BUILD_TIMEOUT_MS,
    });
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    if (code !== 0) throw new Error(`building dist/dkv failed (${code}):\n${stdout}\n${stderr}`);
    await rename(staged, DKV);
    return DKV;
  })();
  return building;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs dist/dkv with `args` in an EMPTY environment (plus `env`): no PATH, so no Bun or
 * Node can be found, which is how the binary must work on a user's machine.
 */
export async function runDkv(
  args: readonly string[],
  env: Record<string, string> = {},
  stdin?: Uint8Array,
): Promise<CommandResult> {
  const binary = await ensureBinary();
  const proc = Bun.spawn([binary, ...args], {
    env,
    cwd: ROOT,
    stdin: stdin === undefined ? "ignore" : new Blob([stdin]),
    stdout: "pipe",
    stderr: "pipe",
    timeout: COMMAND_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

/** Parses stdout as exactly one JSON object (the --json contract): one line, nothing else. */
export function onlyJson(result: CommandResult): Record<string, unknown> {
  const lines = result.stdout.split("\n").filter((line) => line.length > 0);
  if (lines.length !== 1) {
    throw new Error(
      `expected one JSON line on stdout, got ${lines.length}:\n${result.stdout}\nstderr: ${result.stderr}`,
    );
  }
  const parsed: unknown = JSON.parse(lines[0]!);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`stdout is not a JSON object: ${lines[0]}`);
  }
  return parsed as Record<string, unknown>;
}

export interface RunningServer {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  transport: string;
  /** The bound endpoint the server printed ("127.0.0.1:PORT" or a socket path). */
  endpoint: string;
  /** Everything the server wrote to stderr so far (its logs). */
  logs(): string;
  /** SIGTERM, then the exit status. */
  stop(): Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts `dkv serve` with `args` (add `--transport-endpoint 127.0.0.1:0` for a free port)
 * and waits for its "dkv listening on <transport> <endpoint>" line.
 */
export async function startServer(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<RunningServer> {
  const binary = await ensureBinary();
  const proc = Bun.spawn([binary, "serve", ...args], {
    env,
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let stderr = "";
  // Drained in the background so a chatty server never blocks on a full pipe.
  const drainErr = (async () => {
    for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  const reader = proc.stdout.getReader();
  let stdout = "";
  const deadline = Date.now() + SERVER_START_TIMEOUT_MS;
  try {
    for (;;) {
      const match = /dkv listening on (\S+) (\S+)\n/.exec(stdout);
      if (match) {
        const server: RunningServer = {
          proc,
          transport: match[1]!,
          endpoint: match[2]!,
          logs: () => stderr,
          stop: async () => {
            proc.kill("SIGTERM");
            const code = await proc.exited;
            await drainErr;
            return code;
          },
          [Symbol.asyncDispose]: async () => {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
            await proc.exited;
          },
        };
        // Keep reading stdout in the background for the same reason as stderr.
        void (async () => {
          for (;;) if ((await reader.read()).done) return;
        })();
        return server;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error("timed out");
      const chunk = await Promise.race([reader.read(), Bun.sleep(remaining).then(() => "timeout" as const)]);
      if (chunk === "timeout") throw new Error("timed out");
      if (chunk.done) throw new Error(`exited with ${await proc.exited}`);
      stdout += new TextDecoder().decode(chunk.value);
    }
  } catch (error) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw new Error(
      `dkv serve ${args.join(" ")} did not start: ${String(error)}\nstdout: ${stdout}\nstderr: ${stderr}`,
    );
  }
}

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../e2e/helpers.ts";

/**
 * Starting dkv must not be enough work for the JIT: once JavaScriptCore compiles a
 * function (after ~35 calls; again with the DFG after ~100), it pages its compiler and a
 * compiler thread into the process, 2-3 MiB of RSS per tier for an idle server and
 * start-up time for every client command. Start-up code therefore builds tables in loops
 * rather than with a call per element (Maple's shards) and skips per-option work that is
 * not needed (DKV_* lookups without any DKV_* variable).
 *
 * Two functions called at module load are still compiled (defineOption, ~100 option
 * declarations; the wire schema's field helper, ~60 fields); a third one fails this test.
 * JavaScriptCore reports each compilation on stderr with BUN_JSC_reportBaselineCompileTimes.
 *
 * The CLI runs bundled, as `build.ts` bundles it into the binary: run from source, Bun's
 * module loader itself gets compiled while it resolves npm packages (citty, msgpackr),
 * which a user's binary never does.
 */

const KNOWN = new Set(["defineOption", "f"]);
const COMMAND_TIMEOUT_MS = 20_000;
const JIT_REPORT = { BUN_JSC_reportBaselineCompileTimes: "1", BUN_JSC_reportDFGCompileTimes: "1" };

/** Names of the functions a JIT report lists ("<anonymous>" when it has none). */
function compiled(stderr: string): string[] {
  return [...stderr.matchAll(/^Optimized (.*?)#\w+:.* using (Baseline|DFG|FTL)/gm)].map(
    (m) => `${m[1]!.includes("not materialized") || m[1] === "" ? "<anonymous>" : m[1]!} (${m[2]!})`,
  );
}

function unexpected(stderr: string): string[] {
  return compiled(stderr).filter((entry) => !KNOWN.has(entry.replace(/ \(Baseline\)$/, "")));
}

let bundleDir = "";

beforeAll(async () => {
  bundleDir = await mkdtemp(join(tmpdir(), "dkv-start-jit-"));
  const result = await Bun.build({
    entrypoints: [join(ROOT, "cli", "main.ts")],
    outdir: bundleDir,
    target: "bun",
    format: "esm",
    splitting: true,
    define: { DKV_BUILD_VERSION: JSON.stringify("0.0.0-test") },
  });
  if (!result.success) throw new Error(`bundling cli/main.ts failed: ${result.logs.join("\n")}`);
});

afterAll(async () => {
  if (bundleDir !== "") await rm(bundleDir, { recursive: true, force: true });
});

function dkv(args: readonly string[]): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  return Bun.spawn([process.execPath, join(bundleDir, "main.js"), ...args], {
    cwd: ROOT,
    // No DKV_* variable: the usual run.
    env: { PATH: process.env.PATH ?? "", ...JIT_REPORT },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: COMMAND_TIMEOUT_MS,
  });
}

describe("start-up compiles nothing with the JIT", () => {
  test("dkv serve (default shards), then one request, then stop", async () => {
    await using server = dkv(["serve", "--transport-endpoint", "127.0.0.1:0", "--log-level", "warn"]);
    const stderr = new Response(server.stderr).text();
    const reader = server.stdout.getReader();
    let stdout = "";
    while (!/dkv listening on tcp (\S+)\n/.test(stdout)) {
      const chunk = await reader.read();
      if (chunk.done) break;
      stdout += new TextDecoder().decode(chunk.value);
    }
    const endpoint = /dkv listening on tcp (\S+)\n/.exec(stdout)?.[1];
    expect(endpoint).toBeDefined();
    await using client = dkv(["kv", "set", "foo", "bar", "--endpoints", endpoint!]);
    const clientStderr = await new Response(client.stderr).text();
    expect(await client.exited).toBe(0);
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // The probe sees what it should: the two known functions are compiled in both.
    expect(compiled(await stderr)).toContain("defineOption (Baseline)");
    expect(unexpected(await stderr)).toEqual([]);
    expect(unexpected(clientStderr)).toEqual([]);
  }, 60_000);
});

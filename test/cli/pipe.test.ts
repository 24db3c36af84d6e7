import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";

/**
 * `dkv ... | head -1`: once stdout's reader is gone (EPIPE) the CLI stops quietly with
 * 141 (what a shell shows for SIGPIPE, as etcdctl and redis-cli end), no stack trace.
 */
const MAIN = join(import.meta.dir, "..", "..", "cli", "main.ts");
const PROCESS_TIMEOUT_MS = 10_000;

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** Runs `bun cli/main.ts ARGS | head -n 1` in bash; returns head's line, dkv's status and stderr. */
function spawnIntoHead(args: readonly string[]) {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, not a template
  const script = '"$@" | head -n 1; echo "status=${PIPESTATUS[0]}"';
  return Bun.spawn(["bash", "-c", script, "bash", process.execPath, MAIN, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: PROCESS_TIMEOUT_MS,
  });
}

async function outcome(proc: ReturnType<typeof spawnIntoHead>) {
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { lines: stdout.split("\n").filter((l) => l !== ""), stderr, code };
}

describe("stdout closed by its reader", () => {
  test("kv list | head -1 prints one line and exits 141 without a stack trace", async () => {
    stack = await startStack("tcp", "binary");
    // 1 MiB of listing: far more than head reads and a pipe holds, so later writes hit EPIPE.
    const value = "v".repeat(4096);
    for (let i = 0; i < 256; i++) await stack.store.set(`k${String(i).padStart(4, "0")}`, value);
    const args = ["kv", "list", "--endpoints", stack.server.endpoint, "--shard", String(storeShard)];
    const result = await outcome(spawnIntoHead(args));
    expect(result.lines[0]).toBe(`k0000\t${value}`);
    expect(result.lines[1]).toBe("status=141");
    expect(result.stderr).not.toContain("EPIPE");
    expect(result.stderr).toBe("");
  }, 20_000);

  test("kv watch | head -1 ends the watch at the next event and exits 141 quietly", async () => {
    stack = await startStack("tcp", "binary");
    const args = ["kv", "watch", "zz", "--endpoints", stack.server.endpoint, "--shard", String(storeShard)];
    const proc = spawnIntoHead(args);
    const done = outcome(proc);
    let finished = false;
    void proc.exited.then(() => {
      finished = true;
    });
    // Changes of the key until the watcher is gone: each is a line the closed pipe refuses.
    for (let i = 0; i < 200 && !finished; i++) {
      await stack.store.set("zz", String(i));
      await Promise.race([proc.exited, Bun.sleep(25)]);
    }
    const result = await done;
    expect(JSON.parse(result.lines[0]!)).toMatchObject({ type: expect.any(String) });
    expect(result.lines[1]).toBe("status=141");
    expect(result.stderr).toBe("");
  }, 20_000);
});

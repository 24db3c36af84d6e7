import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../../cli/app.ts";
import { LocalStore } from "../../src/store/local.ts";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";
import { capturingIo } from "../support/cli-io.ts";

/** `dkv kv watch`: the contract's JSON lines, COMPACTED, usage, and Ctrl-C. */
let stack: Stack | undefined;

afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const captured = capturingIo();
  const io = captured.io;
  const code = await runCli(
    ["kv", ...args, "--endpoints", stack!.server.endpoint, "--shard", String(storeShard)],
    io,
  );
  return { code, out: captured.out(), err: captured.err() };
}

describe("dkv kv watch", () => {
  test('--rev older than the kept history prints {"error":"COMPACTED","compactRevision":N} and exits 1', async () => {
    stack = await startStack("tcp", "binary");
    const small = new LocalStore({ purgeIntervalMs: 0, watch: { historyBytesMax: 1024 } });
    stack.shards.set(storeShard, { kind: "store", store: small });
    try {
      for (let i = 0; i < 40; i++) await small.set(`svc/${i}`, "x".repeat(40));
      const result = await run(["watch", "--prefix", "svc/", "--rev", "1"]);
      expect(result.code).toBe(1);
      const printed = JSON.parse(result.out) as { error: string; compactRevision: number };
      expect(Object.keys(printed)).toEqual(["error", "compactRevision"]);
      expect(printed.error).toBe("COMPACTED");
      expect(printed.compactRevision).toBeGreaterThan(1);
      expect(result.err).toContain("older than the kept watch history");
    } finally {
      await small.close();
    }
  });

  test("a KEY and --prefix together, or neither, is a usage error (exit 2)", async () => {
    stack = await startStack("tcp", "binary");
    expect((await run(["watch", "k", "--prefix", "p/"])).code).toBe(2);
    expect((await run(["watch"])).code).toBe(2);
  });

  test("prints one JSON object per line in commit order; Ctrl-C exits 0", async () => {
    stack = await startStack("tcp", "binary");
    const store = stack.store;
    await using proc = Bun.spawn(
      ["bun", join(import.meta.dir, "..", "..", "cli", "main.ts"), "kv", "watch", "--prefix", "svc/"].concat([
        "--endpoints",
        stack.server.endpoint,
        "--shard",
        String(storeShard),
      ]),
      { stdout: "pipe", stderr: "pipe" },
    );
    const reader = proc.stdout.getReader();
    let buffered = "";
    const nextLine = async (): Promise<string> => {
      // Bounded by the process: each read takes a chunk or ends the stream.
      while (!buffered.includes("\n")) {
        const chunk = await reader.read();
        if (chunk.done) throw new Error(`stdout ended; stderr: ${await new Response(proc.stderr).text()}`);
        buffered += new TextDecoder().decode(chunk.value);
      }
      const index = buffered.indexOf("\n");
      const line = buffered.slice(0, index);
      buffered = buffered.slice(index + 1);
      return line;
    };
    expect(JSON.parse(await nextLine())).toEqual({ type: "progress", revision: 0 });
    await store.set("svc/a", "1");
    await store.set("svc/bin", new Uint8Array([0xff, 0x00]));
    await store.set("other", "x");
    await store.delete("svc/a");
    expect(await nextLine()).toBe('{"type":"put","key":"svc/a","value":"1","revision":1}');
    expect(await nextLine()).toBe(
      '{"type":"put","key":"svc/bin","value":"/wA=","encoding":"base64","revision":2}',
    );
    expect(await nextLine()).toBe('{"type":"delete","key":"svc/a","revision":4}');
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
  }, 20_000);
});

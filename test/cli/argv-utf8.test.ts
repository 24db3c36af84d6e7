import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { checkArgumentsUtf8 } from "../../cli/argv.ts";
import { DkvError } from "../../src/errors.ts";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";

/**
 * An argument that is not valid UTF-8 is a usage error naming it, not silently replaced
 * by U+FFFD (which made $'\xff' and $'\xfe' the same key); a real U+FFFD is accepted.
 */
const MAIN = join(import.meta.dir, "..", "..", "cli", "main.ts");
let stack: Stack;

beforeAll(async () => {
  stack = await startStack("tcp", "binary");
});
afterAll(async () => {
  await stack?.close();
});

/** Runs `bun cli/main.ts kv set --shard 100 --endpoints E <key> <value>` with KEY and VALUE as bash $'...' words. */
async function setWithRawBytes(keyWord: string, valueWord: string) {
  const script = `"$@" ${keyWord} ${valueWord}`;
  const common = ["kv", "set", "--json", "--shard", String(storeShard), "--endpoints", stack.server.endpoint];
  const proc = Bun.spawn(["bash", "-c", script, "bash", process.execPath, MAIN, ...common], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: 10_000,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

describe("arguments that are not valid UTF-8", () => {
  test.skipIf(process.platform !== "linux")(
    "a key of invalid bytes is refused (exit 2, naming it) and nothing is written",
    async () => {
      const result = await setWithRawBytes("$'\\xff'", "v1");
      expect(result.code).toBe(2);
      const printed = JSON.parse(result.stdout) as { error: string; message: string; outcome: string };
      expect(printed).toMatchObject({ error: "USAGE", outcome: "not-applied" });
      expect(printed.message).toContain("\\xff");
      expect(printed.message).toContain("not valid UTF-8");
      expect(await stack.store.has("\uFFFD")).toBe(false);
    },
    20_000,
  );

  test.skipIf(process.platform !== "linux")(
    "a value of invalid bytes is refused and the error points to stdin and --base64",
    async () => {
      const result = await setWithRawBytes("bin", "$'\\xff\\x01'");
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("stdin");
      expect(result.stderr).toContain("--base64");
      expect(await stack.store.has("bin")).toBe(false);
    },
    20_000,
  );

  test.skipIf(process.platform !== "linux")(
    "a real U+FFFD (bytes EF BF BD) is a valid argument",
    async () => {
      const result = await setWithRawBytes("$'\\xef\\xbf\\xbd'", "real");
      expect(result.code).toBe(0);
      expect(new TextDecoder().decode(await stack.store.get("\uFFFD"))).toBe("real");
    },
    20_000,
  );

  test("checkArgumentsUtf8 compares against the tail of the raw arguments; unknown raw bytes check nothing", () => {
    const encoder = new TextEncoder();
    const raw = [encoder.encode("/usr/bin/dkv"), encoder.encode("get"), new Uint8Array([0x61, 0xfe])];
    expect(() => checkArgumentsUtf8(["get", "a\uFFFD"], () => raw)).toThrow(DkvError);
    expect(() => checkArgumentsUtf8(["get", "a\uFFFD"], () => undefined)).not.toThrow();
    let asked = false;
    checkArgumentsUtf8(["get", "plain"], () => {
      asked = true;
      return raw;
    });
    expect(asked).toBe(false);
    const real = [encoder.encode("dkv"), encoder.encode("get"), encoder.encode("a\uFFFD")];
    expect(() => checkArgumentsUtf8(["get", "a\uFFFD"], () => real)).not.toThrow();
  });
});

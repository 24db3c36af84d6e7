import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ROOT } from "../e2e/helpers.ts";

/**
 * Any node: builtin module (even node:path) costs a Bun process 2.5-7 MiB of RSS (the
 * runtime compiles its JavaScript at run time, paging in the parser and more runtime
 * code) and client commands start-up time. So the code every command loads, the client
 * commands' and an lstore-only `dkv serve`'s may import none: only Bun's own APIs
 * (`Bun.file`, `Bun.CryptoHasher`, `console.error`); node modules are imported inside the
 * functions that need them (TLS, --auth-file, --data-dir, unix sockets).
 *
 * Checked on the bundle build.ts compiles (code splitting, each subcommand a chunk): the
 * static import closure of the entry and of each listed subcommand's chunk.
 */

let outdir: string;
const chunks = new Map<string, string>();
/** Subcommand name -> the chunk the entry imports lazily for it. */
const subcommandChunks = new Map<string, string>();

beforeAll(async () => {
  outdir = await mkdtemp(join(tmpdir(), "dkv-builtins-"));
  const result = await Bun.build({
    entrypoints: [join(ROOT, "cli", "main.ts")],
    outdir,
    target: "bun",
    format: "esm",
    splitting: true,
    define: { DKV_BUILD_VERSION: JSON.stringify("0.0.0-test") },
  });
  expect(result.success).toBe(true);
  for (const output of result.outputs) {
    if (output.path.endsWith(".js")) chunks.set(basename(output.path), await readFile(output.path, "utf8"));
  }
  const entry = chunks.get("main.js") ?? "";
  for (const match of entry.matchAll(/([\w-]+|"[\w-]+"):\s*\(\)\s*=>\s*import\("\.\/([^"]+)"\)/g)) {
    subcommandChunks.set(match[1]!.replaceAll('"', ""), match[2]!);
  }
}, 120_000);

afterAll(async () => {
  await rm(outdir, { recursive: true, force: true });
});

/** Import specifiers of a chunk that are not other chunks: `import ... from "x"` and `import "x"`. */
function staticImports(source: string): string[] {
  return [...source.matchAll(/(?:^|[\n;])\s*import\s*(?:[\w*{}\s,$]+from\s*)?"([^"]+)"/g)].map((m) => m[1]!);
}

/** Every non-chunk module statically reachable from `start`, with the chunk that imports it. */
function builtinsReachable(start: string): string[] {
  const seen = new Set<string>();
  const found: string[] = [];
  const pending = [start];
  while (pending.length > 0) {
    const chunk = pending.pop()!;
    if (seen.has(chunk)) continue;
    seen.add(chunk);
    const source = chunks.get(chunk);
    if (source === undefined) throw new Error(`no chunk ${chunk} in the bundle`);
    for (const spec of staticImports(source)) {
      if (spec.startsWith("./")) pending.push(spec.slice(2));
      else if (spec !== "bun") found.push(`${spec} (in ${chunk})`);
    }
  }
  return found;
}

describe("no node: builtin module in the static graph", () => {
  test("the bundle has the chunks this test walks", () => {
    expect(chunks.has("main.js")).toBe(true);
    expect([...subcommandChunks.keys()]).toEqual(expect.arrayContaining(["serve", "kv", "lock", "cluster"]));
  });

  test("the probe sees node modules where they are imported statically (dkv cert)", () => {
    expect(builtinsReachable(subcommandChunks.get("cert")!).length).toBeGreaterThan(0);
  });

  for (const name of ["(every command)", "serve", "kv", "lock", "cluster", "version"]) {
    test(name, () => {
      const chunk = name === "(every command)" ? "main.js" : subcommandChunks.get(name);
      expect(chunk).toBeDefined();
      expect(builtinsReachable(chunk!)).toEqual([]);
    });
  }
});

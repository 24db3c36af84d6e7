import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { ROOT, type RunningServer, startServer } from "../e2e/helpers.ts";

/**
 * Client commands must start fast: their module graph may not reach the server, Raft,
 * storage, engine, backup or metrics modules, nor consola, the X.509 library or msgpackr
 * (unless --serializer msgpack). Each command runs from source with a preload that lists
 * every module the process loaded, against a running server.
 */

const FORBIDDEN = [
  "src/raft/",
  "src/server/",
  "src/db/",
  "src/store/replicated/",
  "src/backup/",
  "src/metrics/",
  "src/lockmgr/",
  "node_modules/consola/",
  "node_modules/@peculiar/",
  "node_modules/msgpackr/",
  "node_modules/msgpackr-extract/",
];
const COMMAND_TIMEOUT_MS = 15_000;

let server: RunningServer;
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dkv-cli-modules-"));
  server = await startServer(["--transport-endpoint", "127.0.0.1:0"]);
}, 150_000);

afterAll(async () => {
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});

let runs = 0;

/** Runs `bun cli/main.ts ARGS` and returns its exit status and the modules it loaded (relative to the root). */
async function loadedModules(
  args: readonly string[],
): Promise<{ code: number; stderr: string; modules: string[] }> {
  const file = join(scratch, `modules-${runs++}.txt`);
  const proc = Bun.spawn(
    [
      process.execPath,
      "--preload",
      join(import.meta.dir, "print-modules.ts"),
      join(ROOT, "cli", "main.ts"),
      ...args,
    ],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", DKV_TEST_MODULES_FILE: file },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: COMMAND_TIMEOUT_MS,
    },
  );
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  const modules = (await readFile(file, "utf8"))
    .split("\n")
    .filter((line) => line.length > 0)
    .map((path) => relative(ROOT, path));
  return { code, stderr, modules };
}

/** Imported by cli/main.ts so a test build announces its faults: no imports of its own. */
const ALWAYS_ALLOWED = ["src/raft/storage/test-faults.ts"];

function forbiddenIn(modules: readonly string[], allowed: readonly string[] = []): string[] {
  return modules.filter(
    (path) =>
      FORBIDDEN.some((prefix) => path.startsWith(prefix)) &&
      ![...ALWAYS_ALLOWED, ...allowed].some((a) => path.startsWith(a)),
  );
}

describe("client commands load no server-side modules", () => {
  const clientCommands: readonly (readonly string[])[] = [
    ["kv", "set", "foo", "bar"],
    ["kv", "get", "foo"],
    ["kv", "has", "foo"],
    ["kv", "del", "foo"],
    ["lock", "acquire", "jobs/x", "--timeout", "10s"],
    ["lock", "release", "jobs/x", "00"],
    ["cluster", "status"],
  ];
  for (const command of clientCommands) {
    test(`dkv ${command.join(" ")}`, async () => {
      const { code, stderr, modules } = await loadedModules([...command, "--endpoints", server.endpoint]);
      expect({ code, stderr }).toEqual({ code: 0, stderr: expect.any(String) });
      // The probe sees the command's own (lazily imported) modules.
      expect(modules).toContain("src/rpc/client/index.ts");
      expect(forbiddenIn(modules)).toEqual([]);
    });
  }

  test("msgpackr is loaded only for --serializer msgpack", async () => {
    // The server speaks binary, so the request fails; what matters is what the client loaded.
    const { modules } = await loadedModules([
      "kv",
      "get",
      "foo",
      "--serializer",
      "msgpack",
      "--endpoints",
      server.endpoint,
      "--timeout",
      "2s",
      "--retry-count",
      "0",
    ]);
    expect(modules.some((path) => path.startsWith("node_modules/msgpackr/"))).toBe(true);
    expect(forbiddenIn(modules, ["node_modules/msgpackr"])).toEqual([]);
  });

  test("the probe does see server modules when serve is loaded", async () => {
    const { code, modules } = await loadedModules(["serve", "--shards", "not-a-spec"]);
    expect(code).toBe(2);
    expect(modules).toContain("src/server/node.ts");
  });
});

describe("an lstore-only server loads no Raft and no consola", () => {
  test("dkv serve (lstore shards, stderr not a terminal)", async () => {
    const file = join(scratch, "modules-serve.txt");
    const proc = Bun.spawn(
      [
        process.execPath,
        "--preload",
        join(import.meta.dir, "print-modules.ts"),
        join(ROOT, "cli", "main.ts"),
        "serve",
        "--transport-endpoint",
        "127.0.0.1:0",
      ],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", DKV_TEST_MODULES_FILE: file },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        timeout: COMMAND_TIMEOUT_MS,
      },
    );
    const reader = proc.stdout.getReader();
    let stdout = "";
    while (!stdout.includes("dkv listening on")) {
      const chunk = await reader.read();
      if (chunk.done) break;
      stdout += new TextDecoder().decode(chunk.value);
    }
    expect(stdout).toContain("dkv listening on tcp 127.0.0.1:");
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    const modules = (await readFile(file, "utf8")).split("\n").map((path) => relative(ROOT, path));
    expect(modules).toContain("src/server/node.ts");
    expect(
      modules.filter((path) => path.startsWith("src/raft/core/") || path.startsWith("src/store/replicated/")),
    ).toEqual([]);
    // consola is for a terminal only (its basic build alone creates process.stdout and
    // process.stderr at import, ~9 MiB of RSS); a pipe gets plain lines from src/server/logger.ts.
    expect(modules.filter((path) => path.startsWith("node_modules/consola/"))).toEqual([]);
    // A tcp server without --metrics-endpoint loads no http server (its parser and routes)
    // and no metrics endpoint.
    const httpOnly = [
      "src/rpc/server/http-server.ts",
      "src/rpc/server/http1-parser.ts",
      "src/rpc/server/http-routes.ts",
      "src/server/metrics-endpoint.ts",
    ];
    expect(modules.filter((path) => httpOnly.includes(path))).toEqual([]);
  });
});

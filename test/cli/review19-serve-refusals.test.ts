import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary } from "../e2e/helpers.ts";

/**
 * review19: `dkv serve` with a mistyped flag must be refused with a usage error (exit 2)
 * BEFORE it touches the data dir. Before the fix, the Raft groups were started and
 * membership.json written first: the corrected start then found a seeded data dir and
 * ignored a corrected --cluster-members as "stale". Each case runs in an empty working
 * directory of its own, which must still be empty afterwards.
 */

let binary: string;
let root: string;
beforeAll(async () => {
  binary = await ensureBinary();
  root = await mkdtemp(join(tmpdir(), "dkv-review19-serve-"));
}, 120_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const REPLICATED = [
  "--shards",
  "200=dstore",
  "--replica-id",
  "node-1",
  "--cluster-members",
  "node-1=127.0.0.1:1,node-2=127.0.0.1:2",
];

const cases: [string, string[], string][] = [
  ["a client port out of range", ["--transport-endpoint", "127.0.0.1:99999"], "invalid endpoint"],
  ["a public client address without TLS", ["--transport-endpoint", "0.0.0.0:0"], "refusing to listen on"],
  [
    "a public metrics address",
    ["--transport-endpoint", "127.0.0.1:0", "--metrics-endpoint", "0.0.0.0:0"],
    "--metrics-endpoint 0.0.0.0:0 is not a loopback address",
  ],
  [
    "a missing --cert-file",
    ["--transport-endpoint", "127.0.0.1:0", "--cert-file", "missing.crt", "--key-file", "missing.key"],
    "cannot read --cert-file",
  ],
  [
    "a missing --auth-file",
    ["--transport-endpoint", "127.0.0.1:0", "--auth-file", "missing.json"],
    "cannot read --auth-file",
  ],
  ["an empty --data-dir", ["--transport-endpoint", "127.0.0.1:0", "--data-dir", ""], "--data-dir is empty"],
];

for (const [name, flags, message] of cases) {
  test(`${name}: exit 2 naming it, nothing written`, async () => {
    const cwd = await mkdtemp(join(root, "case-"));
    const proc = Bun.spawn([binary, "serve", ...REPLICATED, "--data-dir", "data", ...flags], {
      cwd,
      env: {},
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(stderr).toContain(message);
    expect(code).toBe(2);
    expect(await readdir(cwd)).toEqual([]);
  }, 20_000);
}

test("a duration below its minimum is named as a duration (1m), not as milliseconds (60000)", async () => {
  const dir = await mkdtemp(join(root, "certs-"));
  const proc = Bun.spawn([binary, "cert", "create-ca", "--dir", dir, "--lifetime", "1s"], {
    env: {},
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 10_000,
  });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  expect(code).toBe(2);
  expect(stderr).toContain("--lifetime: 1s is below the minimum of 1m.");
  expect(await readdir(dir)).toEqual([]);
}, 20_000);

test("dkv cluster with a malformed member is a usage error (exit 2) before any server is asked", async () => {
  // Nothing listens on port 1: the old code sent these to the server (exit 1, UNAVAILABLE
  // here; BAD_REQUEST with exit 1 from a live server) instead of saying the argument is wrong.
  for (const args of [
    ["add", "node-4=10.0.0.4"],
    ["add", "node-4=10.0.0.4:0"],
    ["add", "node 4=10.0.0.4:63001"],
    ["remove", "node 3"],
    ["promote", "_x"],
    ["transfer-leader", "a/b"],
  ]) {
    const proc = Bun.spawn([binary, "cluster", ...args, "--endpoints", "127.0.0.1:1", "--json"], {
      env: {},
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    const [code, stdout] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
    const json = JSON.parse(stdout) as { error: string; message: string };
    expect({ args, code, error: json.error }).toEqual({ args, code: 2, error: "USAGE" });
    expect(json.message).toMatch(/is not ID=HOST:PEER_PORT|must be letters, digits/);
  }
}, 30_000);

test("lock refresh/release/watch with an OWNER_ID that is not hex is a usage error (exit 2) before any request", async () => {
  // The old code sent it: exit 1 (UNAVAILABLE here, BAD_REQUEST from a live server).
  for (const command of ["refresh", "release", "watch"]) {
    const proc = Bun.spawn(
      [binary, "lock", command, "k", "not-hex", "--endpoints", "127.0.0.1:1", "--json"],
      {
        env: {},
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        timeout: 10_000,
      },
    );
    const [code, stdout] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
    expect({ command, code, json: JSON.parse(stdout) as unknown }).toEqual({
      command,
      code: 2,
      json: {
        error: "USAGE",
        message: `OWNER_ID "not-hex" is not hex; pass the ownerId that 'dkv lock acquire' printed`,
        outcome: "not-applied",
      },
    });
  }
}, 30_000);

import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runDkv, startServer } from "../e2e/helpers.ts";

/**
 * review19: a watch opened with a token that SIGHUP then revokes kept streaming every new
 * write to its holder (the grant was checked only when the watch opened). The README says
 * a revocation applies to open connections at once; the watch now ends with UNAUTHENTICATED
 * before the next event is sent.
 */

const OPS = "ops-token-review19";
const VIEWER = "viewer-token-review19";
const sha = (token: string) => createHash("sha256").update(token).digest("hex");
const authFile = (tokens: { name: string; token: string; role: string }[]) =>
  JSON.stringify({ tokens: tokens.map((t) => ({ name: t.name, sha256: sha(t.token), role: t.role })) });

let root: string;
beforeAll(async () => {
  await ensureBinary();
  root = await mkdtemp(join(tmpdir(), "dkv-review19-watch-"));
}, 120_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

test("a watch whose token is revoked by SIGHUP ends with UNAUTHENTICATED and receives nothing after", async () => {
  const auth = join(root, "auth.json");
  const ops = { name: "ops", token: OPS, role: "admin" };
  await writeFile(auth, authFile([ops, { name: "viewer", token: VIEWER, role: "read" }]));
  await using server = await startServer([
    "--shards",
    "200=dstore",
    "--data-dir",
    join(root, "data"),
    "--auth-file",
    auth,
    "--transport-endpoint",
    "127.0.0.1:0",
  ]);
  const target = ["--shard", "200", "--endpoints", server.endpoint];
  const binary = await ensureBinary();
  const watch = Bun.spawn([binary, "kv", "watch", "--prefix", "app/", ...target], {
    env: { DKV_TOKEN: VIEWER },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 20_000,
  });
  const stderr = new Response(watch.stderr).text();
  const reader = watch.stdout.getReader();
  let stdout = "";
  const readUntil = async (what: string) => {
    // Bounded by the watch process's own timeout: a read ends when it exits.
    while (!stdout.includes(what)) {
      const chunk = await reader.read();
      if (chunk.done) return;
      stdout += new TextDecoder().decode(chunk.value);
    }
  };
  try {
    // The watch is open once its first progress event arrives; then it sees a write.
    await readUntil('"type":"progress"');
    expect((await runDkv(["kv", "set", ...target, "app/1", "before"], { DKV_TOKEN: OPS })).code).toBe(0);
    await readUntil('"key":"app/1"');

    await writeFile(auth, authFile([ops]));
    process.kill(server.proc.pid, "SIGHUP");
    for (let i = 0; i < 250 && !server.logs().includes("SIGHUP: reloaded"); i++) await Bun.sleep(20);
    expect(server.logs()).toContain("SIGHUP: reloaded");

    expect((await runDkv(["kv", "set", ...target, "app/2", "after"], { DKV_TOKEN: OPS })).code).toBe(0);
    await readUntil("\u0000never"); // drains stdout until the watch exits
    expect(await watch.exited).toBe(1);
    expect(stdout).not.toContain("app/2");
    expect(await stderr).toContain("UNAUTHENTICATED");
  } finally {
    if (watch.exitCode === null) watch.kill("SIGKILL");
  }
}, 40_000);

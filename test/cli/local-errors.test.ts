import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../cli/app.ts";
import { reportFailure } from "../../cli/io.ts";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";
import { makeTestPki, type TestPki } from "../security/pki.ts";
import { capturingIo } from "../support/cli-io.ts";

/**
 * Problems found on this machine before anything is sent (TLS files that are not what
 * their flag says, output files that cannot be written) are usage errors (exit 2) naming
 * the file, with outcome "not-applied" — never INTERNAL / "unknown".
 */
let stack: Stack;
let pki: TestPki;
let dir: string;

beforeAll(async () => {
  stack = await startStack("tcp", "binary");
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), "dkv-cli-local-"));
}, 30_000);

afterAll(async () => {
  await stack?.close();
  await pki?.remove();
  await rm(dir, { recursive: true, force: true });
});

async function run(args: readonly string[]) {
  const captured = capturingIo();
  const code = await runCli([...args, "--json", "--endpoints", stack.server.endpoint], captured.io);
  const printed = JSON.parse(captured.out()) as { error: string; message: string; outcome: string };
  return { code, printed, err: captured.err() };
}

describe("client-side setup errors", () => {
  test("--cacert that is not a CA certificate: USAGE, not-applied, names the file; nothing written", async () => {
    const notCa = join(dir, "auth.json");
    await writeFile(notCa, '{"tokens":[]}');
    const { code, printed } = await run([
      "kv",
      "set",
      "x",
      "1",
      "--shard",
      String(storeShard),
      "--cacert",
      notCa,
    ]);
    expect(code).toBe(2);
    expect(printed.error).toBe("USAGE");
    expect(printed.outcome).toBe("not-applied");
    expect(printed.message).toContain(`--cacert ${notCa}`);
    expect(await stack.store.has("x")).toBe(false);
  });

  test("--cert and --key of different certificates: USAGE naming both files", async () => {
    const cert = pki.file("client.crt");
    const key = pki.file("otherClient.key");
    const { code, printed } = await run([
      "kv",
      "get",
      "x",
      "--cacert",
      pki.file("ca.crt"),
      "--cert",
      cert,
      "--key",
      key,
    ]);
    expect(code).toBe(2);
    expect(printed).toMatchObject({ error: "USAGE", outcome: "not-applied" });
    expect(printed.message).toContain(cert);
    expect(printed.message).toContain(key);
  });

  test("a file error of any command (e.g. restore's data dir under a file) is reported as USAGE naming the path", async () => {
    const blocker = join(dir, "a-file");
    await writeFile(blocker, "x");
    // What restoreBackup meets with --data-dir <a file>/data: the raw error of node:fs.
    const raw = await mkdir(join(blocker, "data", "group-200"), { recursive: true }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(raw).toBeInstanceOf(Error);
    const captured = capturingIo();
    expect(reportFailure(captured.io, true, raw)).toBe(2);
    const printed = JSON.parse(captured.out()) as { error: string; message: string; outcome: string };
    expect(printed).toMatchObject({ error: "USAGE", outcome: "not-applied" });
    expect(printed.message).toContain(blocker);
    expect(captured.err()).not.toContain("may or may not");
  });

  test("kv perf --csv in a missing directory: USAGE before the run, and the directory is not created", async () => {
    const missing = join(dir, "no-such-dir", "deeper");
    const csv = join(missing, "x.csv");
    const { code, printed } = await run([
      "kv",
      "perf",
      "--csv",
      csv,
      "--duration",
      "100ms",
      "--shard",
      "100",
    ]);
    expect(code).toBe(2);
    expect(printed).toMatchObject({ error: "USAGE", outcome: "not-applied" });
    expect(printed.message).toContain(csv);
    expect(existsSync(missing)).toBe(false);
    // Nothing was run: the perf keys were never written.
    expect(await stack.store.count({ prefix: "__dkv_perf/" })).toBe(0);
  });

  test("kv perf --csv naming a directory: USAGE naming it", async () => {
    const target = join(dir, "a-dir");
    await mkdir(target);
    const { code, printed } = await run(["kv", "perf", "--csv", target, "--duration", "100ms"]);
    expect(code).toBe(2);
    expect(printed).toMatchObject({ error: "USAGE", outcome: "not-applied" });
    expect(printed.message).toContain(target);
  });
});

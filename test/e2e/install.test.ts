import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DKV, ensureBinary, ROOT } from "./helpers.ts";

/**
 * install.sh against a local "release server" (Bun.serve) that serves the built binary
 * under its release name and a SHA256SUMS file, good or deliberately wrong.
 */

const INSTALL_TIMEOUT_MS = 60_000;
const releaseName = `dkv-${process.platform === "darwin" ? "darwin" : "linux"}-${process.arch === "arm64" ? "arm64" : "x64"}`;

let scratch: string;
let binary: Uint8Array;
let goodSums: string;
let sums = "";
let server: ReturnType<typeof Bun.serve>;
let requests: string[] = [];

beforeAll(async () => {
  await ensureBinary();
  scratch = await mkdtemp(join(tmpdir(), "dkv-install-"));
  binary = new Uint8Array(await readFile(DKV));
  goodSums = `${createHash("sha256").update(binary).digest("hex")}  ${releaseName}\n`;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      requests.push(path);
      if (path === `/release/${releaseName}`) return new Response(binary);
      if (path === "/release/SHA256SUMS") return new Response(sums);
      if (path === "/release/install.sh") return new Response(Bun.file(join(ROOT, "install.sh")));
      return new Response("not found", { status: 404 });
    },
  });
}, 120_000);

afterAll(async () => {
  await server?.stop(true);
  await rm(scratch, { recursive: true, force: true });
});

/** Runs a command with only the tools install.sh needs on PATH and HOME in the scratch dir. */
async function run(
  argv: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn(argv, {
    cwd: scratch,
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: scratch,
      DKV_INSTALL_BASE_URL: `http://127.0.0.1:${server.port}/release`,
      ...extraEnv,
    },
    stdout: "pipe",
    stderr: "pipe",
    timeout: INSTALL_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, output: stdout + stderr };
}

async function installedVersion(dir: string): Promise<string> {
  const proc = Bun.spawn([join(dir, "dkv"), "version"], { env: {}, stdout: "pipe", timeout: 10_000 });
  const [code, stdout] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
  expect(code).toBe(0);
  return stdout;
}

describe("install.sh", () => {
  test("downloads, verifies and installs a working dkv into --path", async () => {
    sums = goodSums;
    requests = [];
    const dir = join(scratch, "good", "bin");
    const result = await run(["sh", join(ROOT, "install.sh"), "--path", dir]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain("checksum verified");
    expect(requests).toEqual([`/release/${releaseName}`, "/release/SHA256SUMS"]);
    expect(await installedVersion(dir)).toStartWith("dkv v");
    expect(await readdir(dir)).toEqual(["dkv"]);
  }, 60_000);

  test("a wrong checksum aborts and installs nothing", async () => {
    sums = `${"0".repeat(64)}  ${releaseName}\n`;
    const dir = join(scratch, "bad", "bin");
    const result = await run(["sh", join(ROOT, "install.sh"), `--path=${dir}`]);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain("checksum mismatch");
    expect(await readdir(dir).catch(() => [])).toEqual([]);
  }, 60_000);

  test("a SHA256SUMS without this platform's binary aborts and installs nothing", async () => {
    sums = `${"0".repeat(64)}  dkv-plan9-mips\n`;
    const dir = join(scratch, "missing", "bin");
    const result = await run(["sh", join(ROOT, "install.sh"), "--path", dir]);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`no entry for ${releaseName}`);
    expect(await readdir(dir).catch(() => [])).toEqual([]);
  }, 60_000);

  test("without --path it installs into ~/.local/bin when the system bin dir is not usable", async () => {
    sums = goodSums;
    // A missing system dir stands in for an unwritable /usr/local/bin (root can write anywhere).
    const result = await run(["sh", join(ROOT, "install.sh")], {
      DKV_INSTALL_SYSTEM_DIR: join(scratch, "no-such-system-bin"),
    });
    expect(result.code, result.output).toBe(0);
    expect(await installedVersion(join(scratch, ".local", "bin"))).toStartWith("dkv v");
  }, 60_000);

  test("--help and an unknown option", async () => {
    const help = await run(["sh", join(ROOT, "install.sh"), "--help"]);
    expect(help.code).toBe(0);
    for (const flag of ["--path", "--source", "--base-url", "DKV_INSTALL_BASE_URL"])
      expect(help.output).toContain(flag);
    const bad = await run(["sh", join(ROOT, "install.sh"), "--bogus"]);
    expect(bad.code).toBe(2);
  });

  test("dkv upgrade downloads install.sh from the base URL and runs it", async () => {
    sums = goodSums;
    requests = [];
    const dir = join(scratch, "upgraded", "bin");
    const result = await run([DKV, "upgrade", "--path", dir]);
    expect(result.code, result.output).toBe(0);
    expect(requests).toEqual(["/release/install.sh", `/release/${releaseName}`, "/release/SHA256SUMS"]);
    expect(await installedVersion(dir)).toStartWith("dkv v");
  }, 60_000);

  test("dkv upgrade fails with exit 1 and leaves nothing behind on a wrong checksum", async () => {
    sums = `${"f".repeat(64)}  ${releaseName}\n`;
    const dir = join(scratch, "upgrade-bad", "bin");
    const result = await run([DKV, "upgrade", "--path", dir, "--script", join(ROOT, "install.sh")]);
    expect(result.code).toBe(1);
    expect(result.output).toContain("checksum mismatch");
    expect(await readdir(dir).catch(() => [])).toEqual([]);
  }, 60_000);
});

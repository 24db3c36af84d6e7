import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runDkv } from "../e2e/helpers.ts";

/**
 * review19: `dkv snapshot` given a directory where a backup file belongs, as an operator
 * mistypes it. Each must be a usage error (exit 2) naming the mistake, before any server
 * is asked and with nothing written.
 */

let root: string;
beforeAll(async () => {
  await ensureBinary();
  root = await mkdtemp(join(tmpdir(), "dkv-review19-backup-"));
}, 120_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

test("status and restore of a directory are a usage error naming it, not INTERNAL EISDIR", async () => {
  const dir = join(root, "backups");
  await mkdir(dir);
  const status = await runDkv(["snapshot", "status", dir, "--json"]);
  expect(status.code).toBe(2);
  const json = JSON.parse(status.stdout) as { error: string; message: string; outcome: string };
  expect(json.error).toBe("USAGE");
  expect(json.message).toContain("is not a file");
  expect(json.outcome).toBe("not-applied");

  const dataDir = join(root, "restored");
  const restore = await runDkv(["snapshot", "restore", dir, "--data-dir", dataDir, "--replica-id", "node-1"]);
  expect(restore.code).toBe(2);
  expect(restore.stderr).toContain("is not a file");
  expect(restore.stderr).not.toContain("INTERNAL");
  expect(await readdir(dataDir).catch(() => "absent")).toBe("absent");
}, 30_000);

test("save into a directory is refused before any server is asked, leaving no temp file", async () => {
  const dir = join(root, "target");
  await mkdir(dir);
  // Nothing listens on port 1: the old code got that far (exit 1, UNAVAILABLE) before the
  // rename found the directory; a reachable server would have streamed the whole backup first.
  const save = await runDkv(["snapshot", "save", dir, "--endpoints", "127.0.0.1:1", "--timeout", "2s"]);
  expect(save.code).toBe(2);
  expect(save.stderr).toContain("is a directory; give a file name");
  expect((await readdir(root)).sort()).toEqual(["backups", "target"]);
  expect(await readdir(dir)).toEqual([]);
}, 30_000);

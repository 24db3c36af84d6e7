import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runDkv, startServer } from "../e2e/helpers.ts";

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

test("restore into an existing member's data dir (other shards) is refused, and the dir is left as it was", async () => {
  // A backup of shard 200 from a one-member cluster.
  const backup = join(root, "shard-200.dkv");
  {
    await using server = await startServer([
      "--shards",
      "200=dstore",
      "--data-dir",
      join(root, "source"),
      "--transport-endpoint",
      "127.0.0.1:0",
    ]);
    expect(
      (await runDkv(["kv", "set", "--shard", "200", "--endpoints", server.endpoint, "k", "v"])).code,
    ).toBe(0);
    const saved = await runDkv(["snapshot", "save", backup, "--endpoints", server.endpoint]);
    expect(saved.code, saved.stderr).toBe(0);
  }
  // The data dir of a member of another cluster that runs shard 400 only.
  const member = join(root, "member");
  {
    await using _server = await startServer([
      "--shards",
      "400=dstore",
      "--data-dir",
      member,
      "--transport-endpoint",
      "127.0.0.1:0",
    ]);
  }
  // LOCK is the data dir lock's file (taken and released by each process), not data.
  const contents = async () => (await readdir(member)).filter((name) => name !== "LOCK").sort();
  const before = await contents();
  expect(before).toContain("membership.json");
  // Before the fix this wrote group-200 with the given voters next to a membership group
  // that knows none of them but node-1: shard 200 then never elected a leader.
  const restore = await runDkv([
    "snapshot",
    "restore",
    backup,
    "--data-dir",
    member,
    "--replica-id",
    "node-1",
    "--cluster-members",
    "node-1=127.0.0.1:1,node-2=127.0.0.1:2",
  ]);
  expect(restore.code).toBe(2);
  expect(restore.stderr).toContain("is the data dir of an existing member");
  expect(await contents()).toEqual(before);
}, 60_000);

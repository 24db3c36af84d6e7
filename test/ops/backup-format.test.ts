import { afterEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { restoreBackup, saveBackupFile, verifyBackupFile } from "../../src/backup/files.ts";
import { readBackup } from "../../src/backup/format.ts";
import { replicatedSnapshotSource } from "../../src/backup/source.ts";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { DkvError } from "../../src/errors.ts";
import { lockDataDir } from "../../src/raft/storage/data-dir-lock.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";

const dirs: string[] = [];
const running: ReplicatedShards[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((shards) => shards.close()));
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-backup-"));
  dirs.push(dir);
  return dir;
}

/** A one-member cluster with a dstore (200) and a lockmgr(dstore) (300) shard. */
async function startMember(dataDir: string): Promise<ReplicatedShards> {
  const shards = await startReplicatedShards({
    ...REPLICATED_TUNING_DEFAULT,
    replicaId: "node-1",
    clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
    dataDir,
    shards: [
      { id: 200, type: "dstore" },
      { id: 300, type: "lockmgr(dstore)" },
    ],
    rttMs: 10,
  });
  running.push(shards);
  return shards;
}

function sourceOf(shards: ReplicatedShards, timeoutMs = 5000) {
  return replicatedSnapshotSource(
    { host: shards.host, types: new Map([...shards.shards.values()].map((s) => [s.id, s.type])) },
    { timeoutMs },
  );
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part.slice());
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function corruptError(bytes: Uint8Array): Promise<DkvError | undefined> {
  try {
    await readBackup(once(bytes), "backup.dkv");
    return undefined;
  } catch (error) {
    if (DkvError.is(error)) return error;
    throw error;
  }
}

/** A backup of a member holding `keys` keys, a TTL key and a held lock; returns its bytes. */
async function makeBackup(keys: number): Promise<{ bytes: Uint8Array; token: bigint }> {
  const member = await startMember(await tempDir());
  const store = member.shards.get(200)!.store;
  for (let i = 0; i < keys; i++) await store.set(`key-${i}`, `value-${i}`);
  await store.setE("ttl", "soon", 3_600_000, 7_200_000);
  const lease = await member.shards.get(300)!.locks!.acquire("job", 0);
  return { bytes: await collect(sourceOf(member).open(undefined)), token: lease.fencingToken! };
}

describe("backup file format", () => {
  test("a backup names each shard's index and key count, and verifies", async () => {
    const { bytes } = await makeBackup(20);
    const summary = await readBackup(once(bytes), "backup.dkv");
    expect(summary.shards.map((s) => [s.shard, s.type, s.keys])).toEqual([
      [200, "dstore", 21],
      [300, "lockmgr(dstore)", 1],
    ]);
    // 21 writes after the leader's first entry: the state is at or past the last acknowledged write.
    expect(summary.shards[0]!.index).toBeGreaterThanOrEqual(22);
    expect(summary.sha256).toBe(new Bun.CryptoHasher("sha256").update(bytes.subarray(0, -32)).digest("hex"));
  });

  test("one flipped byte anywhere is refused as CORRUPT with the offset", async () => {
    const { bytes } = await makeBackup(5);
    for (let at = 0; at < bytes.length; at++) {
      const damaged = bytes.slice();
      damaged[at]! ^= 0x5a;
      const error = await corruptError(damaged);
      if (error === undefined) throw new Error(`a flip at offset ${at} of ${bytes.length} went unnoticed`);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toMatch(/^backup\.dkv: offset \d+: /);
    }
  });

  test("a truncated file is refused at every length, naming where it ends", async () => {
    const { bytes } = await makeBackup(5);
    for (let length = 0; length < bytes.length; length++) {
      const error = await corruptError(bytes.subarray(0, length));
      if (error === undefined) throw new Error(`truncation to ${length} of ${bytes.length} went unnoticed`);
      expect(error.code).toBe("CORRUPT");
    }
    expect((await corruptError(bytes.subarray(0, bytes.length - 10)))?.message).toMatch(
      /offset \d+: the file ends inside/,
    );
    const extended = Buffer.concat([bytes, new Uint8Array([0])]);
    expect((await corruptError(extended))?.message).toContain(
      `offset ${bytes.length}: bytes follow the trailer`,
    );
  });

  test("saved to a file via temp + rename, restored into a new member: data, TTLs and a higher fencing token", async () => {
    const { bytes, token } = await makeBackup(10);
    const dir = await tempDir();
    const file = join(dir, "backup.dkv");
    const saved = await saveBackupFile(file, once(bytes));
    expect((await readdir(dir)).sort()).toEqual(["backup.dkv"]); // no temp file left
    expect((await stat(file)).mode & 0o777).toBe(0o600); // it holds every value
    expect((await verifyBackupFile(file)).sha256).toBe(saved.sha256);

    const restoredDir = join(dir, "restored");
    await restoreBackup({ file, dataDir: restoredDir, replicaId: "node-1", voters: ["node-1"] });
    const member = await startMember(restoredDir);
    const store = member.shards.get(200)!.store;
    expect(new TextDecoder().decode(await store.get("key-7"))).toBe("value-7");
    expect(new TextDecoder().decode(await store.get("ttl"))).toBe("soon");
    const locks = member.shards.get(300)!.locks!;
    expect((await locks.acquire("job", 0)).acquired).toBe(false); // still held by its owner
    const next = await locks.acquire("other", 0);
    expect(next.fencingToken!).toBeGreaterThan(token);
    expect(BigInt(saved.shards[1]!.index)).toBeGreaterThanOrEqual(token);
  });

  test("restore refuses a data dir that already holds a shard, and writes nothing from a damaged file", async () => {
    const { bytes } = await makeBackup(3);
    const dir = await tempDir();
    const file = join(dir, "backup.dkv");
    await saveBackupFile(file, once(bytes));
    await restoreBackup({ file, dataDir: join(dir, "a"), replicaId: "node-1", voters: ["node-1"] });
    await expect(
      restoreBackup({ file, dataDir: join(dir, "a"), replicaId: "node-1", voters: ["node-1"] }),
    ).rejects.toThrow(/already holds data/);

    const damaged = bytes.slice();
    damaged[damaged.length - 40]! ^= 1;
    const bad = join(dir, "bad.dkv");
    await writeFile(bad, damaged);
    await expect(
      restoreBackup({ file: bad, dataDir: join(dir, "b"), replicaId: "node-1", voters: ["node-1"] }),
    ).rejects.toThrow(/bad\.dkv: offset \d+/);
    await expect(readdir(join(dir, "b"))).rejects.toThrow();

    // Not into a data dir a server holds.
    await mkdir(join(dir, "c"));
    await using _server = await lockDataDir(join(dir, "c"), "dkv serve");
    await expect(
      restoreBackup({ file, dataDir: join(dir, "c"), replicaId: "node-1", voters: ["node-1"] }),
    ).rejects.toThrow(/is in use by dkv serve/);
  });

  test("a backup abandoned midway ends the engine's save: the next backup and Raft snapshots still run", async () => {
    const member = await startMember(await tempDir());
    const store = member.shards.get(200)!.store;
    const value = new Uint8Array(64 * 1024).fill(1);
    for (let i = 0; i < 40; i++) await store.set(`big-${i}`, value);
    const source = sourceOf(member, 1000);
    const abandoned = source.open(200)[Symbol.asyncIterator]();
    for (let i = 0; i < 4; i++) expect((await abandoned.next()).done).toBe(false);
    await abandoned.return?.(); // the client went away mid-stream
    // The engine saves one snapshot at a time: a leaked save would make this wait out its 1 s and fail.
    const summary = await readBackup(source.open(200), "second");
    expect(summary.shards[0]!.keys).toBe(40);
  });
});

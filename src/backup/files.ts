import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { DkvError } from "../errors.ts";
import type { RaftLogger } from "../raft/core/types.ts";
import { MEMBERSHIP_FILE } from "../raft/host/membership-seed.ts";
import { lockDataDir } from "../raft/storage/data-dir-lock.ts";
import { openRaftStorage } from "../raft/storage/raft-storage.ts";
import { type BackupSummary, readBackup } from "./format.ts";

const READ_CHUNK_BYTES = 1024 * 1024;

/** A file's bytes in 1 MiB pieces (each a fresh buffer), never the whole file at once. */
export async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `cannot open ${path}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  try {
    if (!(await handle.stat()).isFile()) {
      throw new DkvError("USAGE", `${path} is not a file (a directory?); give the path of a backup file`);
    }
    let position = 0;
    // Bounded by the file size: each turn reads at least one byte or ends.
    for (;;) {
      const buffer = new Uint8Array(READ_CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** Checks a backup file end to end (`dkv snapshot status`). */
export function verifyBackupFile(path: string): Promise<BackupSummary> {
  return readBackup(fileChunks(path), path);
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a streamed backup to `path` durably: into a temp file next to it, fsync, verify
 * (structure, checksums, SHA-256) from disk, rename, fsync the directory. A failed or
 * damaged stream leaves no file at `path`.
 */
export async function saveBackupFile(
  path: string,
  source: AsyncIterable<Uint8Array>,
): Promise<BackupSummary> {
  const target = resolve(path);
  const temp = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  // Before anything is streamed: a directory would be found only at the rename, after the whole backup.
  if ((await stat(target).catch(() => undefined))?.isDirectory() === true) {
    throw new DkvError("USAGE", `${path} is a directory; give a file name, e.g. ${join(path, "backup.dkv")}`);
  }
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // 0600: a backup holds every value (etcd writes its snapshots so too).
    handle = await open(temp, "w", 0o600);
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `cannot write next to ${path}: ${error instanceof Error ? error.message : String(error)}; choose a writable directory`,
    );
  }
  try {
    let position = 0;
    try {
      for await (const chunk of source) {
        let written = 0;
        // Each pass writes at least one byte or throws.
        while (written < chunk.length) {
          const result = await handle.write(chunk, written, chunk.length - written, position + written);
          written += result.bytesWritten;
        }
        position += chunk.length;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    const summary = await verifyBackupFile(temp);
    await rename(temp, target);
    await fsyncDir(dirname(target));
    return summary;
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

export interface RestoreOptions {
  file: string;
  dataDir: string;
  /** This member's id and the new cluster's voters (every member gets the same file). */
  replicaId: string;
  voters: readonly string[];
  logger?: RaftLogger;
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (error) {
    if (typeof error === "object" && error !== null && (error as { code?: string }).code === "ENOENT")
      return true;
    throw error;
  }
}

/**
 * Writes one member's data dir of a new cluster from a backup: per shard, a Raft snapshot
 * at the saved index (with the new membership) and a hard state at its term, so the
 * member starts with the saved state and its log continues after the saved index — every
 * fencing token issued after the restore is greater than any issued before the save.
 * The file is verified whole before anything is written; existing groups are never touched.
 */
export async function restoreBackup(options: RestoreOptions): Promise<BackupSummary> {
  const summary = await verifyBackupFile(options.file);
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Not while a server runs on it (or another restore).
  await using _lock = await lockDataDir(dataDir, "dkv snapshot restore");
  // A member's data dir (its membership, its shared log): the restored groups would get a
  // configuration its membership group does not know, and could never elect a leader.
  for (const memberFile of [MEMBERSHIP_FILE, "raft-log"]) {
    if ((await stat(join(dataDir, memberFile)).catch(() => undefined)) !== undefined) {
      throw new DkvError(
        "USAGE",
        `${dataDir} is the data dir of an existing member (it holds ${memberFile}); restore into an empty --data-dir (a restore seeds a new cluster, it never overwrites a member)`,
      );
    }
  }
  for (const section of summary.shards) {
    const groupDir = join(dataDir, `group-${section.shard}`);
    if (!(await isEmptyOrMissing(groupDir))) {
      throw new DkvError(
        "USAGE",
        `${groupDir} already holds data; restore into an empty --data-dir (a restore seeds a new cluster, it never overwrites a member)`,
      );
    }
  }
  const voters = [...options.voters].sort();
  const conf = { voters, learners: [] as string[] };
  const quiet = {
    info: (message: string) => options.logger?.debug(message),
    warn: (message: string) => options.logger?.warn(message),
  };
  await readBackup(fileChunks(options.file), options.file, {
    async section(meta, data) {
      const storage = await openRaftStorage(join(dataDir, `group-${meta.shard}`), {
        initialConf: conf,
        logger: quiet,
      });
      try {
        await storage.saveSnapshot({ index: meta.index, term: meta.term, timeMs: meta.timeMs, conf }, data);
        // The term of the saved point, so a new leader's entries never carry an older term.
        await storage.append([], { term: meta.term, vote: null, commit: meta.index });
      } finally {
        await storage.close();
      }
    },
  });
  return summary;
}

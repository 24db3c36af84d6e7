/**
 * Migration into the shared log from the per-group WAL of earlier dkv versions
 * (`group-<id>/wal/`): replayed with the old rules, written into the shared log durably,
 * then retired by an atomic rename before it is deleted.
 */

import { rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { HardState, SnapshotMeta } from "../core/types.ts";
import type { EntryLog } from "./entry-log.ts";
import { fsyncDir, isNotFound } from "./fs-util.ts";
import { LogReplay } from "./recovery.ts";
import type { SharedLog } from "./shared-log.ts";
import type { StorageLogger } from "./snapshot-store.ts";
import { listSegments, replayWal } from "./wal.ts";

/** An import of an old per-group WAL commits every this many bytes (a bound on the pending frame). */
const IMPORT_CHUNK_BYTES = 16 * 1024 * 1024;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/**
 * Migration from the per-group WAL of earlier versions: replays `groupDir/wal/` with the
 * old rules, writes the surviving log and hard state into the shared log (durably), then
 * retires the old directory by an atomic rename before deleting it. A crash before the
 * rename repeats the import (an entry at i replaces the group's entries from i on, so the
 * same entries twice give the same log); after it, only the deletion is left to finish.
 */
export async function importGroupWal(
  sharedLog: SharedLog,
  groupId: number,
  groupDir: string,
  snapshot: SnapshotMeta | null,
  overheadEntries: number,
  logger: StorageLogger,
): Promise<{ log: EntryLog; hardState: HardState } | null> {
  const oldDir = join(groupDir, "wal");
  const retiredDir = join(groupDir, "wal.imported");
  if (await exists(retiredDir)) {
    await rm(retiredDir, { recursive: true, force: true });
    await fsyncDir(groupDir, sharedLog.counter);
  }
  if (!(await exists(oldDir))) return null;
  const oldSegments = await listSegments(oldDir);
  let result: { log: EntryLog; hardState: HardState } | null = null;
  if (oldSegments.length > 0) {
    const replay = new LogReplay();
    await replayWal(oldDir, logger, sharedLog.counter, replay.visit);
    const log = replay.finish(oldDir, snapshot, overheadEntries);
    const hardState = replay.hardState;
    let chunkBytes = 0;
    for (let index = log.firstIndex(); index <= log.lastIndex(); index++) {
      const entry = log.entryAt(index)!;
      sharedLog.assertWritable();
      sharedLog.frameFor(groupId).addEntry(entry);
      chunkBytes += entry.data.byteLength + 32;
      if (chunkBytes >= IMPORT_CHUNK_BYTES) {
        await sharedLog.commit();
        chunkBytes = 0;
      }
    }
    sharedLog.frameFor(groupId).addHardState(hardState);
    await sharedLog.commit();
    logger.info(
      `${oldDir}: imported ${log.lastIndex() - log.baseIndex} entries and the hard state of group ${groupId} into the shared log ${sharedLog.dir}`,
    );
    result = { log, hardState };
  }
  await rename(oldDir, retiredDir);
  await fsyncDir(groupDir, sharedLog.counter);
  await rm(retiredDir, { recursive: true, force: true });
  await fsyncDir(groupDir, sharedLog.counter);
  return result;
}

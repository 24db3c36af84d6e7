import { constants, writeSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { access, mkdir, open, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { DkvError } from "../../errors.ts";

/**
 * Flushes an open file or directory to stable storage: "data" (fdatasync: contents and
 * size) or "all" (fsync). Injectable, so tests can make it fail (RaftStorageOptions.syncFile).
 */
export type SyncFile = (handle: FileHandle, path: string, mode: "data" | "all") => Promise<void>;

export const systemSyncFile: SyncFile = (handle, _path, mode) =>
  mode === "data" ? handle.datasync() : handle.sync();

/** How this storage syncs, and how many fsyncs it issued (tests and benchmarks see group commit work). */
export interface SyncCounter {
  fsyncs: number;
  readonly syncFile: SyncFile;
}

/**
 * A failed fsync (of a WAL segment, a snapshot, or a directory). Fatal for the whole
 * process, not only the group: after a failed fsync Linux may mark the dirty pages clean
 * and drop the error, so the same process could later read back, and acknowledge, data
 * that never reached the disk. The runtime must exit (non-zero) on it; a restart then
 * recovers from what is really on disk: the WAL up to its last good frame, or a snapshot
 * from the leader.
 */
export class FsyncFailedError extends DkvError {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      "FSYNC_FAILED",
      `fsync of ${path} failed (${reason}): the disk may have lost writes this process believed durable. ` +
        "Stop this dkv process, check the disk (dmesg, SMART, free space), then restart it; " +
        "the member recovers from its log or from a snapshot of the leader",
      { cause, outcome: "unknown" },
    );
    this.name = "FsyncFailedError";
  }
}

/** fsync/fdatasync `handle`, counted; any failure becomes an FsyncFailedError. */
export async function syncHandle(
  handle: FileHandle,
  path: string,
  mode: "data" | "all",
  counter: SyncCounter,
): Promise<void> {
  try {
    await counter.syncFile(handle, path, mode);
  } catch (error) {
    throw new FsyncFailedError(path, error);
  }
  counter.fsyncs++;
}

/** Makes a directory's entries (created, renamed, removed files) durable. */
export async function fsyncDir(dir: string, counter: SyncCounter): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await syncHandle(handle, dir, "all", counter);
  } finally {
    await handle.close();
  }
}

/** `write` may write less than asked; loop until all of it is at `position`. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  // Each pass writes at least one byte or throws, so this ends within bytes.length passes.
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    if (bytesWritten <= 0)
      throw new Error(`write returned ${bytesWritten} bytes at offset ${position + written}`);
    written += bytesWritten;
  }
}

/**
 * writeFully without a trip through the file thread pool: the bytes go into the page cache
 * from this thread (microseconds for a log batch), which spares a batch the pool's wake-up
 * and completion round trip before its fsync (the fsync, which waits for the disk, stays
 * asynchronous). Throws like writeFully.
 */
export function writeFullySync(handle: FileHandle, bytes: Uint8Array, position: number): void {
  let written = 0;
  // Each pass writes at least one byte or throws, so this ends within bytes.length passes.
  while (written < bytes.length) {
    const bytesWritten = writeSync(handle.fd, bytes, written, bytes.length - written, position + written);
    if (bytesWritten <= 0)
      throw new Error(`write returned ${bytesWritten} bytes at offset ${position + written}`);
    written += bytesWritten;
  }
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined;
}

/**
 * Creates `dir` (and parents) if missing; fails clearly when it is a file or unreadable,
 * because guessing there risks writing a member's log somewhere nobody will look. Each
 * directory it creates is made durable in its parent (the parent is fsynced): otherwise
 * a power loss can drop a fresh group directory, and with it a log that acknowledged
 * writes, although every file in it was fsynced.
 */
export async function ensureDataDir(dir: string, what: string, counter: SyncCounter): Promise<void> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) {
      throw new DkvError(
        "USAGE",
        `${what} ${dir} is not a directory — point the data dir at a directory (or a path that does not exist yet)`,
      );
    }
  } catch (error) {
    if (DkvError.is(error)) throw error;
    if (errnoCode(error) !== "ENOENT") {
      throw new DkvError(
        "USAGE",
        `${what} ${dir} cannot be inspected (${errnoCode(error) ?? String(error)}) — check its path and permissions`,
        { cause: error },
      );
    }
    const firstCreated = await mkdir(dir, { recursive: true, mode: 0o700 });
    if (firstCreated !== undefined) await fsyncCreatedChain(resolve(firstCreated), resolve(dir), counter);
  }
  try {
    await access(dir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `${what} ${dir} is not readable and writable (${errnoCode(error) ?? String(error)}) — fix its permissions for the user running dkv`,
      { cause: error },
    );
  }
}

/** fsyncs the parent of every directory from `first` (created) down to `last`, deepest last. */
async function fsyncCreatedChain(first: string, last: string, counter: SyncCounter): Promise<void> {
  const created: string[] = [];
  // Bounded by the path's depth: each step goes one level up until `first`.
  for (let path = last; ; path = dirname(path)) {
    created.push(path);
    if (path === first || dirname(path) === path) break;
  }
  for (const path of created.reverse()) await fsyncDir(dirname(path), counter);
}

export function isNotFound(error: unknown): boolean {
  return errnoCode(error) === "ENOENT";
}

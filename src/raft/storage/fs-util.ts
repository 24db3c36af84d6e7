import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { access, mkdir, open, stat } from "node:fs/promises";
import { DkvError } from "../../errors.ts";

/** Counts the fsyncs this storage issued, so tests and benchmarks can see group commit work. */
export interface SyncCounter {
  fsyncs: number;
}

/** Makes a directory's entries (created, renamed, removed files) durable. */
export async function fsyncDir(dir: string, counter: SyncCounter): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
    counter.fsyncs++;
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

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined;
}

/**
 * Creates `dir` (and parents) if missing; fails clearly when it is a file or unreadable,
 * because guessing there risks writing a member's log somewhere nobody will look.
 */
export async function ensureDataDir(dir: string, what: string): Promise<void> {
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
    await mkdir(dir, { recursive: true, mode: 0o700 });
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

export function isNotFound(error: unknown): boolean {
  return errnoCode(error) === "ENOENT";
}

import { open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";

/** The file in a data dir naming the process that holds it (for the refusal's message). */
export const LOCK_FILE = "LOCK";

/** A data dir held by this process; disposing it lets another process open it. */
export interface DataDirLock extends AsyncDisposable {
  readonly dir: string;
}

interface LockRecord {
  pid: number;
  /** What holds it: "dkv serve", "dkv snapshot restore". */
  by: string;
}

/**
 * Makes `dir` (an existing data dir) this process's alone until the lock is disposed: two
 * servers on one data dir would interleave their log writes and lose acknowledged writes.
 * A second opener is refused with the holder's pid.
 *
 * On Linux the lock is a listening socket in the abstract namespace named after the dir's
 * device and inode: the kernel lets one process bind a name and releases it when that
 * process exits, however it exits (kill -9 included), so there is nothing stale to clean
 * up, and two paths to one directory (a symlink, a bind mount) are one lock. The LOCK file
 * only names the holder. Elsewhere the LOCK file is the lock: created exclusively, and
 * taken over when the pid it names no longer runs (two processes starting in the same
 * instant on a dir whose holder died could both take it over: the README says so).
 */
export async function lockDataDir(dir: string, by: string): Promise<DataDirLock> {
  const lockFile = join(dir, LOCK_FILE);
  const record: LockRecord = { pid: process.pid, by };
  if (process.platform === "linux") {
    const { dev, ino } = await stat(dir);
    let listener: ReturnType<typeof Bun.listen> | undefined;
    try {
      // Only its name matters; a process that connects to it is cut at once (nothing is
      // read or kept, so local connections cannot pile up).
      listener = Bun.listen({
        unix: lockSocketName(dev, ino),
        socket: {
          open(socket) {
            socket.terminate();
          },
          data() {},
        },
      });
    } catch (error) {
      if ((error as { code?: string }).code !== "EADDRINUSE") throw error;
      throw inUse(dir, await readRecord(lockFile));
    }
    await writeFile(lockFile, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    const held = listener;
    return {
      dir,
      async [Symbol.asyncDispose]() {
        await rm(lockFile, { force: true });
        held.stop(true);
      },
    };
  }
  await takeLockFile(dir, lockFile, record);
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await rm(lockFile, { force: true });
    },
  };
}

/** The abstract-namespace name of the lock of the dir with device `dev` and inode `ino`. */
export function lockSocketName(dev: number, ino: number): string {
  return `\0dkv-data-dir-${dev}-${ino}`;
}

/** Without the kernel's help: an exclusive create, or the takeover of a dead holder's file. */
async function takeLockFile(dir: string, lockFile: string, record: LockRecord): Promise<void> {
  // Bounded: a second round only after finding (and removing) a dead holder's file.
  for (let round = 0; round < 2; round++) {
    try {
      const handle = await open(lockFile, "wx", 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(record)}\n`);
      } finally {
        await handle.close();
      }
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw error;
    }
    const holder = await readRecord(lockFile);
    if (holder !== undefined && running(holder)) throw inUse(dir, holder);
    await rm(lockFile, { force: true });
  }
  throw inUse(dir, await readRecord(lockFile));
}

function running(holder: LockRecord): boolean {
  if (holder.pid === process.pid) return true;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as { code?: string }).code === "EPERM";
  }
}

async function readRecord(lockFile: string): Promise<LockRecord | undefined> {
  try {
    const parsed = JSON.parse(await readFile(lockFile, "utf8")) as Partial<LockRecord>;
    if (typeof parsed.pid !== "number" || typeof parsed.by !== "string") return undefined;
    return parsed as LockRecord;
  } catch {
    // Missing or half-written (its holder is starting or died while writing it).
    return undefined;
  }
}

function inUse(dir: string, holder: LockRecord | undefined): DkvError {
  const who = holder === undefined ? "another process" : `${holder.by} (pid ${holder.pid})`;
  return new DkvError(
    "USAGE",
    `the data dir ${dir} is in use by ${who}; two processes on one data dir would corrupt its log. ` +
      "Stop that process first, or give this one its own --data-dir",
  );
}

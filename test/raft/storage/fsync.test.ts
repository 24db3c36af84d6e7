/**
 * fsync: a group directory created at open is made durable in its parent, and a failed
 * fsync surfaces as FsyncFailedError (DkvError code FSYNC_FAILED), the error the runtime
 * ends the process on. Failures are injected through RaftStorageOptions.syncFile.
 */
import { describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import { FsyncFailedError, openRaftStorage, type SyncFile } from "../../../src/raft/storage/index.ts";
import { entryRange, RecordingLogger, withTempDir } from "./helpers.ts";

interface SyncCall {
  path: string;
  mode: "data" | "all";
}

/** A SyncFile that records every call and fails those `fails` picks, like a disk returning EIO. */
function injectedSync(fails: (call: SyncCall) => boolean = () => false): {
  sync: SyncFile;
  calls: SyncCall[];
} {
  const calls: SyncCall[] = [];
  const sync: SyncFile = async (handle, path, mode) => {
    calls.push({ path, mode });
    if (fails({ path, mode })) throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    await (mode === "data" ? handle.datasync() : handle.sync());
  };
  return { sync, calls };
}

function expectFsyncFailed(error: unknown, path: string): void {
  expect(error).toBeInstanceOf(FsyncFailedError);
  expect(DkvError.is(error, "FSYNC_FAILED")).toBe(true);
  const failure = error as FsyncFailedError;
  expect(failure.path).toBe(path);
  expect(failure.outcome).toBe("unknown");
  expect(failure.message).toContain("EIO");
  expect(failure.message).toContain("check the disk (dmesg");
  expect(failure.message).toContain("recovers from its log or from a snapshot of the leader");
}

describe("a group directory created at open", () => {
  test("is fsynced into its parent, and so is every directory created above it", async () => {
    await withTempDir(async (root) => {
      const dataDir = join(root, "data");
      const groupDir = join(dataDir, "group-7");
      const { sync, calls } = injectedSync();
      const storage = await openRaftStorage(groupDir, { logger: new RecordingLogger(), syncFile: sync });
      const dirSyncs = calls.filter((c) => !c.path.endsWith(".seg")).map((c) => c.path);
      // The data dir's entry in the root, the group dir's entry in the data dir, then the
      // wal/ and snap/ entries in the group dir.
      expect(dirSyncs.indexOf(root)).toBeGreaterThanOrEqual(0);
      expect(dirSyncs.indexOf(dataDir)).toBeGreaterThan(dirSyncs.indexOf(root));
      expect(dirSyncs.indexOf(groupDir)).toBeGreaterThan(dirSyncs.indexOf(dataDir));
      await storage.close();

      // Reopening creates nothing: the parents are not fsynced again.
      const again = injectedSync();
      const reopened = await openRaftStorage(groupDir, {
        logger: new RecordingLogger(),
        syncFile: again.sync,
      });
      expect(again.calls.map((c) => c.path)).not.toContain(dataDir);
      expect(again.calls.map((c) => c.path)).not.toContain(root);
      await reopened.close();
    });
  });

  test("a failed fsync of the parent fails the open with FSYNC_FAILED", async () => {
    await withTempDir(async (root) => {
      const dataDir = join(root, "data");
      const { sync } = injectedSync((call) => call.path === dataDir);
      let failure: unknown;
      await openRaftStorage(join(dataDir, "group-1"), {
        logger: new RecordingLogger(),
        syncFile: sync,
      }).catch((error: unknown) => {
        failure = error;
      });
      expectFsyncFailed(failure, dataDir);
    });
  });
});

describe("a failed fsync", () => {
  test("of the WAL fails that append and every later one with FSYNC_FAILED; a restart keeps what was durable", async () => {
    await withTempDir(async (root) => {
      const dir = join(root, "member");
      let failing = false;
      const { sync, calls } = injectedSync((call) => failing && call.mode === "data");
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger(), syncFile: sync });
      await storage.append(entryRange(1, 5, 1), { term: 1, vote: null, commit: 3 });
      failing = true;
      let failure: unknown;
      await storage.append(entryRange(6, 8, 1)).catch((error: unknown) => {
        failure = error;
      });
      const segment = calls.at(-1)!.path;
      expect(segment.endsWith(".seg")).toBe(true);
      expectFsyncFailed(failure, segment);
      // The writer is poisoned: retrying could acknowledge what the failed fsync lost.
      failing = false;
      let later: unknown;
      await storage.append(entryRange(9, 9, 1)).catch((error: unknown) => {
        later = error;
      });
      expect(later).toBe(failure);
      await storage.close();

      const reopened = await openRaftStorage(dir, { logger: new RecordingLogger() });
      expect(reopened.lastIndex()).toBeGreaterThanOrEqual(5);
      expect(reopened.initialState().hardState).toEqual({ term: 1, vote: null, commit: 3 });
      await reopened.close();
    });
  });

  test("of a snapshot fails saveSnapshot with FSYNC_FAILED and leaves no temp file", async () => {
    await withTempDir(async (root) => {
      const dir = join(root, "member");
      let failing = false;
      const { sync } = injectedSync((call) => failing && call.path.endsWith(".tmp"));
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger(), syncFile: sync });
      await storage.append(entryRange(1, 5, 1));
      failing = true;
      let failure: unknown;
      const meta = { index: 5, term: 1, timeMs: 0, conf: { voters: ["a"], learners: [] } };
      await storage.saveSnapshot(meta, new Uint8Array(10)).catch((error: unknown) => {
        failure = error;
      });
      expect(failure).toBeInstanceOf(FsyncFailedError);
      expect((failure as FsyncFailedError).path.endsWith(".tmp")).toBe(true);
      expect((await readdir(join(dir, "snap"))).filter((name) => name.endsWith(".tmp"))).toEqual([]);
      await storage.close();
    });
  });
});

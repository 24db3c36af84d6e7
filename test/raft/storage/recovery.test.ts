import { describe, expect, test } from "bun:test";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import { openRaftStorage } from "../../../src/raft/storage/index.ts";
import { entry, entryRange, RecordingLogger, withTempDir } from "./helpers.ts";

async function segmentPaths(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "wal"))).sort().map((name) => join(dir, "wal", name));
}

/** Five single-entry frames; returns the segment and the offset where each frame starts. */
async function writeFiveFrames(dir: string): Promise<{ path: string; frameOffsets: number[] }> {
  const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
  const [path] = await segmentPaths(dir);
  const frameOffsets: number[] = [];
  for (let i = 1; i <= 5; i++) {
    frameOffsets.push((await stat(path!)).size);
    await storage.append([entry(i, 1)], { term: 1, vote: "b", commit: i - 1 });
  }
  await storage.close();
  return { path: path!, frameOffsets };
}

async function openError(dir: string): Promise<DkvError> {
  const error = await openRaftStorage(dir, { logger: new RecordingLogger() }).catch((e: unknown) => e);
  if (!DkvError.is(error)) throw new Error(`expected a DkvError, got ${String(error)}`);
  return error;
}

describe("raft storage recovery: torn tail", () => {
  const cuts: [string, (bytes: Uint8Array, lastFrame: number) => Uint8Array][] = [
    ["1 byte of the frame header", (b, at) => b.subarray(0, at + 1)],
    ["the whole frame header only", (b, at) => b.subarray(0, at + 8)],
    ["half of the record", (b, at) => b.subarray(0, at + Math.floor((b.length - at) / 2))],
    ["all but the last byte", (b) => b.subarray(0, b.length - 1)],
    [
      "full length, tail zeroed (size updated, data not)",
      (b, at) => {
        const copy = b.slice();
        copy.fill(0, at + 8);
        return copy;
      },
    ],
  ];

  for (const [name, cut] of cuts) {
    test(`a last frame cut at "${name}" is repaired; earlier records are intact`, async () => {
      await withTempDir(async (dir) => {
        const { path, frameOffsets } = await writeFiveFrames(dir);
        const original = new Uint8Array(await readFile(path));
        await writeFile(path, cut(original, frameOffsets[4]!));

        const logger = new RecordingLogger();
        let storage = await openRaftStorage(dir, { logger });
        expect(logger.warnings.join("\n")).toContain(`${path} offset ${frameOffsets[4]}: torn write`);
        expect(storage.lastIndex()).toBe(4);
        expect(storage.initialState().hardState).toEqual({ term: 1, vote: "b", commit: 3 });
        expect((await stat(path)).size).toBe(frameOffsets[4]!);

        await storage.append([entry(5, 2)]);
        await storage.close();
        const quiet = new RecordingLogger();
        storage = await openRaftStorage(dir, { logger: quiet });
        expect(quiet.warnings).toEqual([]);
        expect(storage.lastIndex()).toBe(5);
        expect(storage.term(5)).toBe(2);
        await storage.close();
      });
    });
  }

  test("a crash while creating a new segment leaves a stub that is removed", async () => {
    await withTempDir(async (dir) => {
      const options = { segmentBytesMax: 4096 };
      let storage = await openRaftStorage(dir, { ...options, logger: new RecordingLogger() });
      for (let i = 1; i <= 30; i++)
        await storage.append([entry(i, 1, "y".repeat(200))], { term: 1, vote: null, commit: i });
      await storage.close();
      const paths = await segmentPaths(dir);
      const last = paths[paths.length - 1]!;
      const seq = Number(basename(last).slice(0, 20));
      const stub = join(dir, "wal", `${String(seq + 1).padStart(20, "0")}-${"31".padStart(20, "0")}.seg`);
      await writeFile(stub, new Uint8Array([0x44, 0x4b, 0x56])); // 3 bytes of a 16-byte header

      const logger = new RecordingLogger();
      storage = await openRaftStorage(dir, { ...options, logger });
      expect(logger.warnings.join("\n")).toContain(stub);
      expect(await segmentPaths(dir)).toEqual(paths);
      expect(storage.lastIndex()).toBe(30);
      expect(storage.initialState().hardState.commit).toBe(30);
      await storage.close();
    });
  });
});

describe("raft storage recovery: corruption is loud", () => {
  test("a flipped byte in a middle record fails with CORRUPT naming the file and offset", async () => {
    await withTempDir(async (dir) => {
      const { path, frameOffsets } = await writeFiveFrames(dir);
      const bytes = new Uint8Array(await readFile(path));
      bytes[frameOffsets[2]! + 8 + 40]! ^= 0x01; // inside entry 3's data
      await writeFile(path, bytes);

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${path} offset ${frameOffsets[2]}: checksum mismatch`);
      expect(error.message).toContain(`followed by valid data at offset ${frameOffsets[3]}`);
      expect(error.message).toContain("restore this member from a snapshot or remove its data dir to rejoin");
    });
  });

  test("a damaged frame length in the middle is not mistaken for a torn tail", async () => {
    await withTempDir(async (dir) => {
      const { path, frameOffsets } = await writeFiveFrames(dir);
      const bytes = new Uint8Array(await readFile(path));
      bytes[frameOffsets[1]! + 1]! ^= 0x40; // length field of entry 2's frame
      await writeFile(path, bytes);

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${path} offset ${frameOffsets[1]}:`);
    });
  });

  test("damage at the end of a segment that is not the last one is CORRUPT, not torn", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { segmentBytesMax: 4096, logger: new RecordingLogger() });
      for (let i = 1; i <= 30; i++) await storage.append([entry(i, 1, "z".repeat(200))]);
      await storage.close();
      const [first] = await segmentPaths(dir);
      const bytes = new Uint8Array(await readFile(first!));
      bytes[bytes.length - 20]! ^= 0xff;
      await writeFile(first!, bytes);

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${first} offset `);
    });
  });

  test("a missing segment in the middle of the sequence is CORRUPT", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { segmentBytesMax: 4096, logger: new RecordingLogger() });
      for (let i = 1; i <= 40; i++) await storage.append([entry(i, 1, "w".repeat(200))]);
      await storage.close();
      const paths = await segmentPaths(dir);
      expect(paths.length).toBeGreaterThanOrEqual(3);
      await Bun.file(paths[1]!).delete();

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(paths[2]!);
    });
  });
});

describe("raft storage recovery: snapshots", () => {
  test("a snapshot temp file left by a crash is removed at open", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 10, 1));
      await storage.saveSnapshot(
        { index: 5, term: 1, timeMs: 5, conf: { voters: ["a"], learners: [] } },
        new Uint8Array([5]),
      );
      await storage.close();
      const temp = join(dir, "snap", "00000000000000000009-00000000000000000001.snap.tmp");
      await writeFile(temp, "half a snapshot");

      const logger = new RecordingLogger();
      storage = await openRaftStorage(dir, { logger });
      expect(await readdir(join(dir, "snap"))).toEqual(["00000000000000000005-00000000000000000001.snap"]);
      expect(logger.infos.join("\n")).toContain(temp);
      expect(storage.snapshot().meta.index).toBe(5);
      await storage.close();
    });
  });

  test("a corrupt latest snapshot falls back to the previous one, loudly, and the log fills the gap", async () => {
    await withTempDir(async (dir) => {
      const conf = { voters: ["a"], learners: [] };
      let storage = await openRaftStorage(dir, {
        compactionOverheadEntries: 0,
        logger: new RecordingLogger(),
      });
      await storage.append(entryRange(1, 30, 1), { term: 1, vote: "a", commit: 30 });
      await storage.saveSnapshot({ index: 10, term: 1, timeMs: 10, conf }, new Uint8Array([10]));
      await storage.compact(10);
      await storage.saveSnapshot({ index: 20, term: 1, timeMs: 20, conf }, new Uint8Array([20, 20, 20]));
      await storage.compact(20);
      await storage.close();
      const latest = join(dir, "snap", "00000000000000000020-00000000000000000001.snap");
      const bytes = new Uint8Array(await readFile(latest));
      bytes[bytes.length - 17]! ^= 0x01; // last data byte
      await writeFile(latest, bytes);

      const logger = new RecordingLogger();
      storage = await openRaftStorage(dir, { compactionOverheadEntries: 0, logger });
      const warnings = logger.warnings.join("\n");
      expect(warnings).toContain(`CORRUPT SNAPSHOT ${latest}`);
      expect(warnings).toContain("data checksum mismatch");
      expect(warnings).toContain("falling back to 00000000000000000010-00000000000000000001.snap");
      expect(storage.snapshot().meta.index).toBe(10);
      expect(storage.firstIndex()).toBe(11);
      expect(storage.lastIndex()).toBe(30);
      expect(storage.entries(11, 31, Infinity).length).toBe(20);
      expect((await readdir(join(dir, "snap"))).sort()).toEqual([
        "00000000000000000010-00000000000000000001.snap",
        "00000000000000000020-00000000000000000001.snap.corrupt",
      ]);
      await storage.close();
    });
  });

  test("when no snapshot is usable and the log was compacted, open fails with CORRUPT", async () => {
    await withTempDir(async (dir) => {
      const conf = { voters: ["a"], learners: [] };
      const options = { compactionOverheadEntries: 0, segmentBytesMax: 4096, snapshotsRetained: 1 };
      const storage = await openRaftStorage(dir, { ...options, logger: new RecordingLogger() });
      for (let i = 1; i <= 40; i++) await storage.append([entry(i, 1, "v".repeat(200))]);
      await storage.saveSnapshot({ index: 35, term: 1, timeMs: 35, conf }, new Uint8Array([35]));
      await storage.compact(35);
      await storage.close();
      const [only] = await readdir(join(dir, "snap"));
      await writeFile(join(dir, "snap", only!), "garbage");

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain("are missing");
    });
  });
});

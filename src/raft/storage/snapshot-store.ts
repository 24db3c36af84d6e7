import { readFileSync } from "node:fs";
import { open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import type { Logger } from "../../logger.ts";
import type { ConfState, Snapshot, SnapshotMeta } from "../core/types.ts";
import { readU64, writeU64 } from "./codec.ts";
import { fsyncDir, isNotFound, type SyncCounter, syncHandle, writeFully } from "./fs-util.ts";

/**
 * Snapshot files: `snap/<index:20>-<term:20>.snap`, written as `<name>.tmp`, fsynced,
 * renamed, then the directory fsynced, so a crash leaves either the old set of files or
 * the new one plus a stray temp file (removed at open).
 *
 *   "DKVSNAP1" | u32 metaBytes | u32 crc(meta) | meta (JSON) | data | trailer
 *   trailer = u64 dataBytes | u32 crc(data) | u32 crc(first 12 trailer bytes)
 * The trailer comes last so data can be streamed without knowing its size up front.
 */

const MAGIC = "DKVSNAP1";
const HEADER_BYTES = 16;
const TRAILER_BYTES = 16;
const SUFFIX = ".snap";
const TEMP_SUFFIX = ".tmp";
const CORRUPT_SUFFIX = ".corrupt";
const NAME_PATTERN = /^(\d{20})-(\d{20})\.snap$/;

const textEncoder = new TextEncoder();

/** The part of dkv's one Logger (src/logger.ts) storage calls. */
export type StorageLogger = Pick<Logger, "info" | "warn">;

/** Where storage speaks when nobody passed a logger (library use; the Raft host always passes its own). */
export const consoleStorageLogger: StorageLogger = {
  info: (message) => console.info(`[raft storage] ${message}`),
  warn: (message) => console.warn(`[raft storage] ${message}`),
};

export interface SnapshotFileInfo {
  name: string;
  path: string;
  index: number;
  term: number;
}

function pad20(n: number): string {
  return n.toString().padStart(20, "0");
}

export function snapshotFileName(index: number, term: number): string {
  return `${pad20(index)}-${pad20(term)}${SUFFIX}`;
}

function compareSnapshots(a: SnapshotFileInfo, b: SnapshotFileInfo): number {
  return a.index - b.index || a.term - b.term;
}

function isConfState(value: unknown): value is ConfState {
  if (typeof value !== "object" || value === null) return false;
  const conf = value as Record<string, unknown>;
  const isIdList = (v: unknown) => Array.isArray(v) && v.every((id) => typeof id === "string");
  return isIdList(conf.voters) && isIdList(conf.learners);
}

function parseMeta(json: string): SnapshotMeta | null {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const meta = value as Record<string, unknown>;
  const isCount = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (!isCount(meta.index) || !isCount(meta.term) || !isCount(meta.timeMs) || !isConfState(meta.conf)) {
    return null;
  }
  return {
    index: meta.index as number,
    term: meta.term as number,
    timeMs: meta.timeMs as number,
    conf: meta.conf,
  };
}

function corrupt(path: string, offset: number, what: string): DkvError {
  return new DkvError(
    "CORRUPT",
    `${path} offset ${offset}: ${what} — delete this snapshot file so an older one is used, or remove the member's data dir to rejoin`,
  );
}

/** Validates a whole snapshot file; throws DkvError CORRUPT naming the file and offset. */
export function decodeSnapshotFile(path: string, info: SnapshotFileInfo, bytes: Uint8Array): Snapshot {
  if (bytes.length < HEADER_BYTES + TRAILER_BYTES) {
    throw corrupt(path, 0, `file is ${bytes.length} bytes, shorter than a snapshot's header and trailer`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) throw corrupt(path, 0, "not a dkv snapshot");
  const metaBytes = view.getUint32(8, true);
  const dataStart = HEADER_BYTES + metaBytes;
  const trailerStart = bytes.length - TRAILER_BYTES;
  if (dataStart > trailerStart) throw corrupt(path, 8, `meta length ${metaBytes} runs past the end`);
  const meta = bytes.subarray(HEADER_BYTES, dataStart);
  if (Bun.hash.crc32(meta) !== view.getUint32(12, true))
    throw corrupt(path, HEADER_BYTES, "meta checksum mismatch");
  const trailer = bytes.subarray(trailerStart);
  if (Bun.hash.crc32(trailer.subarray(0, 12)) !== view.getUint32(trailerStart + 12, true)) {
    throw corrupt(path, trailerStart, "trailer checksum mismatch (the file may be truncated)");
  }
  const dataBytes = readU64(view, trailerStart);
  if (dataBytes !== trailerStart - dataStart) {
    throw corrupt(
      path,
      trailerStart,
      `trailer says ${dataBytes} data bytes, file holds ${trailerStart - dataStart}`,
    );
  }
  const data = bytes.subarray(dataStart, trailerStart);
  if (Bun.hash.crc32(data) !== view.getUint32(trailerStart + 8, true)) {
    throw corrupt(path, dataStart, "data checksum mismatch");
  }
  const parsed = parseMeta(new TextDecoder().decode(meta));
  if (parsed === null) throw corrupt(path, HEADER_BYTES, "meta is not a valid snapshot description");
  if (parsed.index !== info.index || parsed.term !== info.term) {
    throw corrupt(
      path,
      HEADER_BYTES,
      `meta says index ${parsed.index} term ${parsed.term}, unlike the file name`,
    );
  }
  return { meta: parsed, data };
}

async function* singleChunk(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

export class SnapshotStore {
  private files: SnapshotFileInfo[] = [];

  private constructor(
    readonly dir: string,
    private readonly logger: StorageLogger,
    private readonly counter: SyncCounter,
    private readonly retainedCount: number,
  ) {}

  /** Lists valid-looking snapshot names and removes temp files left by a crash mid-save. */
  static async open(
    dir: string,
    logger: StorageLogger,
    counter: SyncCounter,
    retainedCount: number,
  ): Promise<SnapshotStore> {
    const store = new SnapshotStore(dir, logger, counter, retainedCount);
    let removedTemp = false;
    for (const name of await readdir(dir)) {
      const match = NAME_PATTERN.exec(name);
      if (match !== null) {
        store.files.push({ name, path: join(dir, name), index: Number(match[1]), term: Number(match[2]) });
      } else if (name.endsWith(TEMP_SUFFIX)) {
        await unlink(join(dir, name));
        removedTemp = true;
        logger.info(`removed ${join(dir, name)}, a snapshot temp file left by an interrupted save`);
      }
    }
    if (removedTemp) await fsyncDir(dir, counter);
    store.files.sort(compareSnapshots);
    return store;
  }

  /** Snapshot files on disk, oldest first. */
  list(): readonly SnapshotFileInfo[] {
    return this.files;
  }

  latest(): SnapshotFileInfo | undefined {
    return this.files[this.files.length - 1];
  }

  /** Writes a snapshot durably (temp, fsync, rename, dir fsync), then prunes old ones. */
  async save(meta: SnapshotMeta, data: AsyncIterable<Uint8Array> | Uint8Array): Promise<SnapshotFileInfo> {
    const name = snapshotFileName(meta.index, meta.term);
    const path = join(this.dir, name);
    const tempPath = path + TEMP_SUFFIX;
    const handle = await open(tempPath, "w");
    try {
      const metaBytes = textEncoder.encode(
        JSON.stringify({ index: meta.index, term: meta.term, timeMs: meta.timeMs, conf: meta.conf }),
      );
      const header = new Uint8Array(HEADER_BYTES + metaBytes.length);
      const headerView = new DataView(header.buffer);
      header.set(textEncoder.encode(MAGIC), 0);
      headerView.setUint32(8, metaBytes.length, true);
      headerView.setUint32(12, Bun.hash.crc32(metaBytes), true);
      header.set(metaBytes, HEADER_BYTES);
      await writeFully(handle, header, 0);
      let position = header.length;
      let dataCrc = 0;
      for await (const chunk of data instanceof Uint8Array ? singleChunk(data) : data) {
        await writeFully(handle, chunk, position);
        dataCrc = Bun.hash.crc32(chunk, dataCrc);
        position += chunk.length;
      }
      const trailer = new Uint8Array(TRAILER_BYTES);
      const trailerView = new DataView(trailer.buffer);
      writeU64(trailerView, 0, position - header.length);
      trailerView.setUint32(8, dataCrc, true);
      trailerView.setUint32(12, Bun.hash.crc32(trailer.subarray(0, 12)), true);
      await writeFully(handle, trailer, position);
      await syncHandle(handle, tempPath, "all", this.counter);
    } catch (error) {
      await handle.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      throw error;
    }
    await handle.close();
    await rename(tempPath, path);
    await fsyncDir(this.dir, this.counter);
    const info: SnapshotFileInfo = { name, path, index: meta.index, term: meta.term };
    this.files = this.files.filter((f) => f.name !== name);
    this.files.push(info);
    this.files.sort(compareSnapshots);
    await this.prune();
    return info;
  }

  /** Keeps the newest `retainedCount` snapshots: the previous one is the fallback if the latest rots. */
  private async prune(): Promise<void> {
    const excess = this.files.length - this.retainedCount;
    if (excess <= 0) return;
    const doomed = this.files.slice(0, excess);
    this.files = this.files.slice(excess);
    for (const file of doomed) {
      await unlink(file.path).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    }
    await fsyncDir(this.dir, this.counter);
  }

  async read(info: SnapshotFileInfo): Promise<Snapshot> {
    return decodeSnapshotFile(info.path, info, new Uint8Array(await readFile(info.path)));
  }

  /** For LogStorage.snapshot(), which is synchronous; only used when no copy is cached. */
  readSync(info: SnapshotFileInfo): Snapshot {
    return decodeSnapshotFile(info.path, info, new Uint8Array(readFileSync(info.path)));
  }

  /**
   * The newest snapshot that validates. A corrupt one is renamed to `*.corrupt` (kept for
   * inspection, never read again) with a loud warning, and the previous one is tried.
   */
  async loadLatest(): Promise<Snapshot | null> {
    // Bounded by the number of files listed at open (plus saves since).
    for (let i = this.files.length - 1; i >= 0; i--) {
      const info = this.files[i]!;
      try {
        return await this.read(info);
      } catch (error) {
        if (!DkvError.is(error, "CORRUPT")) throw error;
        const reason = error.message;
        const fallback = i > 0 ? `falling back to ${this.files[i - 1]!.name}` : "no older snapshot is left";
        this.logger.warn(
          `CORRUPT SNAPSHOT ${info.path}: ${reason}. Renamed it to ${info.name}${CORRUPT_SUFFIX}; ${fallback}. ` +
            "Check the disk; the member recovers from the log only if the log still covers the gap",
        );
        await rename(info.path, info.path + CORRUPT_SUFFIX);
        await fsyncDir(this.dir, this.counter);
        this.files.splice(i, 1);
      }
    }
    return null;
  }
}

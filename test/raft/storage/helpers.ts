import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Entry, EntryKind } from "../../../src/raft/core/types.ts";
import type { StorageLogger } from "../../../src/raft/storage/index.ts";

/** A logger that keeps what it was told, so tests can assert on warnings. */
export class RecordingLogger implements StorageLogger {
  readonly infos: string[] = [];
  readonly warnings: string[] = [];
  info(message: string): void {
    this.infos.push(message);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
}

export async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-storage-"));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const encoder = new TextEncoder();

export function entry(index: number, term: number, text = `cmd-${index}-${term}`): Entry {
  return {
    index,
    term,
    kind: EntryKind.Normal,
    timeMs: 1_700_000_000_000 + index,
    data: encoder.encode(text),
  };
}

/** Entries lo..hi inclusive, all in `term`. */
export function entryRange(lo: number, hi: number, term: number, dataBytes?: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) {
    out.push(
      dataBytes === undefined
        ? entry(i, term)
        : {
            index: i,
            term,
            kind: EntryKind.Normal,
            timeMs: i,
            data: new Uint8Array(dataBytes).fill(i & 0xff),
          },
    );
  }
  return out;
}

export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

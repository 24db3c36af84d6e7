import { type Entry, EntryKind } from "./types.ts";

/** Fixed per-entry cost counted against byte limits, so empty entries cannot batch unbounded. */
export const ENTRY_OVERHEAD_BYTES = 16;

export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/**
 * A shared empty list for messages and Readys without entries; nobody may append to it
 * (test/raft/core/no-entries.test.ts checks it stays empty). Not frozen: a frozen array
 * has another indexing type (ArrayStorage) and shape than every other entry list (plain
 * contiguous arrays), so every site that sees both (encode, size checks, appends to
 * the log, applies) ran polymorphic and the JIT kept exiting and recompiling them. It
 * held an entry once so that it is a contiguous array like the others, not an
 * undecided one.
 */
export const NO_ENTRIES: Entry[] = contiguousEmpty();

function contiguousEmpty(): Entry[] {
  const list: Entry[] = [{ term: 0, index: 0, kind: EntryKind.Normal, timeMs: 0, data: new Uint8Array(0) }];
  list.length = 0;
  return list;
}

/**
 * How many of `entries[from..to)` fit in `maxBytes` (at least one, so progress is always
 * possible). Returns the exclusive end position.
 */
export function limitBySize(entries: readonly Entry[], from: number, to: number, maxBytes: number): number {
  if (from >= to) return from;
  let bytes = entrySizeBytes(entries[from]!);
  let end = from + 1;
  while (end < to) {
    bytes += entrySizeBytes(entries[end]!);
    if (bytes > maxBytes) break;
    end++;
  }
  return end;
}

export function sumSizeBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entrySizeBytes(entry);
  return bytes;
}

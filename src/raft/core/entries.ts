import type { Entry } from "./types.ts";

/** Fixed per-entry cost counted against byte limits, so empty entries cannot batch unbounded. */
export const ENTRY_OVERHEAD_BYTES = 16;

export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** A shared empty list for messages without entries; frozen so nobody appends to it. */
export const NO_ENTRIES = Object.freeze([]) as unknown as Entry[];

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

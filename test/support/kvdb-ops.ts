/**
 * Random operations on a KVDB for the engines' model tests (maple-model, records-model, the
 * review tests' histories): the writes, a paged list, one function that applies a write to
 * any engine (or to an engine and its model alike), random ranges and cursors, and a
 * snapshot's chunks. Each test adds its own non-write steps (time passing, purges, slices)
 * and its own value sizes.
 */
import fc from "fast-check";
import type { KeyRange, KVDB, ListOptions } from "../../src/db/kvdb.ts";

export type WriteOp =
  | { kind: "set"; key: string; value: number }
  | { kind: "setE"; key: string; value: number; expireIn: number; deleteIn: number }
  | { kind: "setEIfUnset"; key: string; value: number; expireIn: number; deleteIn: number }
  | { kind: "expire"; key: string }
  | { kind: "delete"; key: string }
  | { kind: "deleteIfEquals"; key: string; value: number }
  | { kind: "renewIfEquals"; key: string; value: number; expireIn: number; deleteIn: number };

export type ListOp = { kind: "list"; options: ListOptions };

const WRITE_KINDS = new Set<string>([
  "set",
  "setE",
  "setEIfUnset",
  "expire",
  "delete",
  "deleteIfEquals",
  "renewIfEquals",
]);

export function isWrite<Op extends { kind: string }>(step: Op): step is Op & WriteOp {
  return WRITE_KINDS.has(step.kind);
}

/** Every kind of write over `key`s and small `value` numbers (turned into bytes by the test). */
export function writeOps(
  key: fc.Arbitrary<string>,
  value: fc.Arbitrary<number>,
  ms: fc.Arbitrary<number>,
): fc.Arbitrary<WriteOp>[] {
  return [
    fc.record({ kind: fc.constant("set" as const), key, value }),
    fc.record({ kind: fc.constant("setE" as const), key, value, expireIn: ms, deleteIn: ms }),
    fc.record({ kind: fc.constant("setEIfUnset" as const), key, value, expireIn: ms, deleteIn: ms }),
    fc.record({ kind: fc.constant("expire" as const), key }),
    fc.record({ kind: fc.constant("delete" as const), key }),
    fc.record({ kind: fc.constant("deleteIfEquals" as const), key, value }),
    fc.record({ kind: fc.constant("renewIfEquals" as const), key, value, expireIn: ms, deleteIn: ms }),
  ];
}

/** A page of a list: any of prefix / from / to / after out of `bounds` and `keys`, a small limit. */
export function listOp(bounds: readonly string[], keys: readonly string[]): fc.Arbitrary<ListOp> {
  return fc.record({
    kind: fc.constant("list" as const),
    options: fc.record(
      {
        prefix: fc.constantFrom(...bounds),
        from: fc.constantFrom(...bounds),
        to: fc.constantFrom(...bounds),
        after: fc.constantFrom(...bounds, ...keys),
        limit: fc.integer({ min: 1, max: 4 }),
        keysOnly: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
  });
}

/** Applies one write to any KVDB; returns its answer (undefined for writes without one). */
export function applyWrite(
  kvdb: KVDB,
  step: WriteOp,
  nowMs: number,
  valueBytes: (n: number) => Uint8Array,
): unknown {
  switch (step.kind) {
    case "set":
      return kvdb.set(step.key, valueBytes(step.value), nowMs);
    case "setE":
      return kvdb.setE(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
    case "setEIfUnset":
      return kvdb.setEIfUnset(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
    case "expire":
      return kvdb.expire(step.key, nowMs);
    case "delete":
      return kvdb.delete(step.key, nowMs);
    case "deleteIfEquals":
      return kvdb.deleteIfEquals(step.key, valueBytes(step.value), nowMs);
    case "renewIfEquals":
      return kvdb.renewIfEquals(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
  }
}

/** Applies one write to each of `dbs` alike (an engine and its model), in order. */
export function applyWriteToEach(
  dbs: readonly KVDB[],
  step: WriteOp,
  nowMs: number,
  valueBytes: (n: number) => Uint8Array,
): void {
  for (const kvdb of dbs) applyWrite(kvdb, step, nowMs, valueBytes);
}

/**
 * A setE of `key` drawn from `next` (in this order: its value out of `values`, expiry within
 * 40 ms, deletion within 40 ms after): the deadline write of the review histories.
 */
export function randomSetE(next: () => number, key: string, values: number): WriteOp {
  const value = Math.floor(next() * values);
  const expireIn = Math.floor(next() * 40);
  const deleteIn = expireIn + Math.floor(next() * 40);
  return { kind: "setE", key, value, expireIn, deleteIn };
}

/** Purges up to `max` expired keys from each of `dbs`; throws `mismatch(counts)` unless all purged alike. */
export function purgeEach(
  dbs: readonly KVDB[],
  nowMs: number,
  max: number,
  mismatch: (counts: number[]) => string,
): void {
  const counts = dbs.map((kvdb) => kvdb.purgeExpired(nowMs, max));
  if (counts.some((count) => count !== counts[0])) throw new Error(mismatch(counts));
}

/**
 * A range drawn from `next`: a prefix (`prefixShare` of the time), [from, to), from only, or
 * every key, out of `prefixes` and `bounds`.
 */
export function randomRange(
  next: () => number,
  prefixes: readonly string[],
  bounds: readonly string[],
  prefixShare = 0.45,
): KeyRange {
  const pick = (items: readonly string[]): string => items[Math.floor(next() * items.length)]!;
  const r = next();
  if (r < prefixShare) return { prefix: pick(prefixes) };
  if (r < 0.85) return { from: pick(bounds), to: pick(bounds) };
  if (r < 0.93) return { from: pick(bounds) };
  return {};
}

/** A continuation a history keeps: its range and the last key of its last page. */
export interface Cursor {
  range: KeyRange;
  after: string;
}

/**
 * Reads the next page (1 to `limitMax` keys, through `page`) of one of `cursors` drawn from
 * `next`; the cursor moves on, or is dropped at its range's end.
 */
export function resumeCursor(
  next: () => number,
  cursors: Cursor[],
  limitMax: number,
  page: (range: KeyRange, after: string, limit: number) => { more: boolean; next?: string },
): void {
  const i = Math.floor(next() * cursors.length);
  const cursor = cursors[i]!;
  const got = page(cursor.range, cursor.after, 1 + Math.floor(next() * limitMax));
  if (got.more) cursor.after = got.next!;
  else cursors.splice(i, 1);
}

/** Starts `kvdb.save` at `nowMs` into chunks (copies: a sink may reuse its buffer). */
export function saveChunks(kvdb: KVDB, nowMs: number): { chunks: Uint8Array[]; saving: Promise<void> } {
  const chunks: Uint8Array[] = [];
  const saving = kvdb.save({ write: (chunk) => void chunks.push(chunk.slice()) }, nowMs);
  return { chunks, saving };
}

/** Loads a snapshot's `chunks` into `kvdb`. */
export function loadChunks(kvdb: KVDB, chunks: readonly Uint8Array[]): Promise<void> {
  return kvdb.load(
    (async function* () {
      for (const chunk of chunks) yield chunk;
    })(),
  );
}

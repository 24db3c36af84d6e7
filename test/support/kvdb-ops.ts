/**
 * Random operations on a KVDB for the engines' model tests (maple-model, records-model):
 * the writes, a paged list, and one function that applies a write to any engine. Each test
 * adds its own non-write steps (time passing, purges, snapshots) and its own value sizes.
 */
import fc from "fast-check";
import type { KVDB, ListOptions } from "../../src/db/kvdb.ts";

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

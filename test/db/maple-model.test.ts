import { expect, test } from "bun:test";
import fc from "fast-check";
import { MapleDB } from "../../src/db/maple/index.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";
import { concat, pieces, saveChunks, T0 } from "./helpers.ts";

const KEYS = ["a", "b", "c", "\uD800", "long-".repeat(20)];

type Op =
  | { kind: "set"; key: string; value: number }
  | { kind: "setE"; key: string; value: number; expireIn: number; deleteIn: number }
  | { kind: "setEIfUnset"; key: string; value: number; expireIn: number; deleteIn: number }
  | { kind: "expire"; key: string }
  | { kind: "delete"; key: string }
  | { kind: "deleteIfEquals"; key: string; value: number }
  | { kind: "renewIfEquals"; key: string; value: number; expireIn: number; deleteIn: number }
  | { kind: "advance"; ms: number }
  | { kind: "purge"; max: number }
  | { kind: "snapshot"; pieceBytes: number };

const key = fc.constantFrom(...KEYS);
// Few distinct values so compare-and-delete/renew often match.
const value = fc.integer({ min: 0, max: 3 });
const ms = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), key, value }),
  fc.record({ kind: fc.constant("setE" as const), key, value, expireIn: ms, deleteIn: ms }),
  fc.record({ kind: fc.constant("setEIfUnset" as const), key, value, expireIn: ms, deleteIn: ms }),
  fc.record({ kind: fc.constant("expire" as const), key }),
  fc.record({ kind: fc.constant("delete" as const), key }),
  fc.record({ kind: fc.constant("deleteIfEquals" as const), key, value }),
  fc.record({ kind: fc.constant("renewIfEquals" as const), key, value, expireIn: ms, deleteIn: ms }),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ kind: fc.constant("purge" as const), max: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant("snapshot" as const), pieceBytes: fc.integer({ min: 1, max: 100 }) }),
);

function valueBytes(n: number): Uint8Array {
  return n === 0 ? new Uint8Array(0) : Uint8Array.of(n, n);
}

test("MapleDB behaves like the plain model under random operations, snapshots and purges", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
      let db = new MapleDB({ shards: 2 });
      const model = new ModelKVDB();
      let nowMs = T0;
      for (const step of ops) {
        let actual: unknown;
        let expected: unknown;
        switch (step.kind) {
          case "set":
            db.set(step.key, valueBytes(step.value), nowMs);
            model.set(step.key, valueBytes(step.value), nowMs);
            break;
          case "setE":
            db.setE(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
            model.setE(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
            break;
          case "setEIfUnset":
            actual = db.setEIfUnset(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
            expected = model.setEIfUnset(
              step.key,
              valueBytes(step.value),
              step.expireIn,
              step.deleteIn,
              nowMs,
            );
            break;
          case "expire":
            db.expire(step.key, nowMs);
            model.expire(step.key, nowMs);
            break;
          case "delete":
            db.delete(step.key, nowMs);
            model.delete(step.key, nowMs);
            break;
          case "deleteIfEquals":
            actual = db.deleteIfEquals(step.key, valueBytes(step.value), nowMs);
            expected = model.deleteIfEquals(step.key, valueBytes(step.value), nowMs);
            break;
          case "renewIfEquals":
            actual = db.renewIfEquals(step.key, valueBytes(step.value), step.expireIn, step.deleteIn, nowMs);
            expected = model.renewIfEquals(
              step.key,
              valueBytes(step.value),
              step.expireIn,
              step.deleteIn,
              nowMs,
            );
            break;
          case "advance":
            nowMs += step.ms;
            break;
          case "purge":
            // The two may purge different (equally due) keys; only visible state must agree.
            db.purgeExpired(nowMs, step.max);
            break;
          case "snapshot": {
            const restored = new MapleDB({ shards: 4 });
            await restored.load(pieces(concat(await saveChunks(db, nowMs)), step.pieceBytes));
            db = restored;
            break;
          }
        }
        expect(actual).toBe(expected);
        for (const k of KEYS) {
          expect(db.has(k, nowMs)).toBe(model.has(k, nowMs));
          expect(db.get(k, nowMs)).toEqual(model.get(k, nowMs));
        }
        expect(db.info(nowMs).keysWithDeadline).toBe(model.info(nowMs).keysWithDeadline);
      }
      // Purging everything due leaves exactly the keys the model still has.
      db.purgeExpired(nowMs, 1000);
      expect(db.info(nowMs).keys).toBe(KEYS.filter((k) => model.has(k, nowMs)).length);
      expect(db.deadlineIndexSize).toBeLessThanOrEqual(KEYS.length);
    }),
    { numRuns: 300 },
  );
});

import { expect, test } from "bun:test";
import fc from "fast-check";
import { MapleDB } from "../../src/db/maple/index.ts";
import { applyWrite, isWrite, type ListOp, listOp, type WriteOp, writeOps } from "../support/kvdb-ops.ts";
import { ModelKVDB, modelKeyOrder } from "../support/model-kvdb.ts";
import { concat, pieces, saveChunks, T0 } from "./helpers.ts";

// Byte order and code-unit order disagree between "\uE000" and "😀" (a surrogate pair).
const KEYS = ["a", "ab", "b", "c", "\uD800", "\uE000", "😀", "long-".repeat(20)];
const BOUNDS = ["", "a", "ab", "b", "\uE000", "\uD83D", "😀", "z"];

type Op =
  | WriteOp
  | { kind: "advance"; ms: number }
  | { kind: "purge"; max: number }
  | { kind: "snapshot"; pieceBytes: number }
  | ListOp;

const key = fc.constantFrom(...KEYS);
// Few distinct values so compare-and-delete/renew often match.
const value = fc.integer({ min: 0, max: 3 });
const ms = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  ...writeOps(key, value, ms),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ kind: fc.constant("purge" as const), max: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant("snapshot" as const), pieceBytes: fc.integer({ min: 1, max: 100 }) }),
  listOp(BOUNDS, KEYS),
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
        if (isWrite(step)) {
          // The same write to both; their answers (where there is one) must agree.
          actual = applyWrite(db, step, nowMs, valueBytes);
          expected = applyWrite(model, step, nowMs, valueBytes);
        }
        switch (step.kind) {
          case "advance":
            nowMs += step.ms;
            break;
          case "purge":
            // Both purge in (delete deadline, key) order, each removal a revision: they agree exactly.
            expect(db.purgeExpired(nowMs, step.max)).toBe(model.purgeExpired(nowMs, step.max));
            break;
          case "snapshot": {
            const restored = new MapleDB({ shards: 4 });
            await restored.load(pieces(concat(await saveChunks(db, nowMs)), step.pieceBytes));
            db = restored;
            break;
          }
          case "list": {
            // A prefix wins over from/to in both; drop it half the time so ranges are tested too.
            const options = step.options.limit === 1 ? { ...step.options, prefix: undefined } : step.options;
            expect(db.list(options, nowMs)).toEqual(model.list(options, nowMs));
            expect(db.count(options, nowMs)).toBe(model.count(options, nowMs));
            break;
          }
        }
        expect(actual).toBe(expected);
        for (const k of KEYS) {
          expect(db.has(k, nowMs)).toBe(model.has(k, nowMs));
          expect(db.get(k, nowMs)).toEqual(model.get(k, nowMs));
          expect(db.getEntry(k, nowMs)).toEqual(model.getEntry(k, nowMs));
        }
        expect(db.revision).toBe(model.revision);
        expect(db.list({}, nowMs)).toEqual(model.list({}, nowMs));
        // The index holds exactly the keys in the maps (purged or not), in byte order.
        const indexed = db.orderedKeys();
        expect(indexed.length).toBe(db.shardSizes().reduce((a, b) => a + b, 0));
        expect(indexed).toEqual([...indexed].sort(modelKeyOrder));
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

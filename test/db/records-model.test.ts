import { expect, test } from "bun:test";
import fc from "fast-check";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { EXTERNAL_VALUE_BYTES, RecordDB } from "../../src/db/records/record-db.ts";
import { applyWrite, isWrite, type ListOp, listOp, type WriteOp, writeOps } from "../support/kvdb-ops.ts";
import { ModelKVDB, modelKeyOrder } from "../support/model-kvdb.ts";
import { concat, pieces, saveChunks, T0 } from "./helpers.ts";

// Byte order and code-unit order disagree between "\uE000" and "😀" (a surrogate pair);
// "\uD800" is a lone surrogate and "\uFFFD" what a lossy encoder would make of it.
const KEYS = ["a", "ab", "b", "c", "\uD800", "\uFFFD", "\uE000", "😀", "é", "long-".repeat(20)];
const BOUNDS = ["", "a", "ab", "b", "\uE000", "\uD83D", "😀", "z"];

type Op =
  | WriteOp
  | { kind: "advance"; ms: number }
  | { kind: "purge"; max: number }
  | { kind: "snapshot"; pieceBytes: number; via: "records" | "maple" }
  | ListOp;

const key = fc.constantFrom(...KEYS);
// Few distinct values so compare-and-delete/renew often match; 4 and 5 are of other sizes
// (a record moves), 6 is large (kept outside the records).
const value = fc.integer({ min: 0, max: 6 });
const ms = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  ...writeOps(key, value, ms),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ kind: fc.constant("purge" as const), max: fc.integer({ min: 0, max: 3 }) }),
  fc.record({
    kind: fc.constant("snapshot" as const),
    pieceBytes: fc.integer({ min: 1, max: 100 }),
    via: fc.constantFrom("records" as const, "maple" as const),
  }),
  listOp(BOUNDS, KEYS),
);

function valueBytes(n: number): Uint8Array {
  if (n === 0) return new Uint8Array(0);
  if (n === 4) return new Uint8Array(40).fill(4);
  if (n === 5) return new Uint8Array(200).fill(5);
  if (n === 6) return new Uint8Array(EXTERNAL_VALUE_BYTES + 1).fill(6);
  return Uint8Array.of(n, n);
}

async function saved(db: KVDB, nowMs: number): Promise<Uint8Array> {
  return concat(await saveChunks(db, nowMs));
}

type Event = [string, string, Uint8Array | undefined, number];

test("RecordDB behaves like the plain model and like MapleDB (events, snapshots both ways)", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
      let db = new RecordDB();
      const maple = new MapleDB({ shards: 2, indexFromStart: false });
      const model = new ModelKVDB();
      const events: Event[] = [];
      const mapleEvents: Event[] = [];
      const listen = (target: Event[]) => (type: string, k: string, v: Uint8Array | undefined, rev: number) =>
        void target.push([type, k, v === undefined ? undefined : v.slice(), rev]);
      db.onChange(listen(events));
      maple.onChange(listen(mapleEvents));
      let nowMs = T0;
      for (const step of ops) {
        let actual: unknown;
        let expected: unknown;
        if (isWrite(step)) {
          actual = applyWrite(db, step, nowMs, valueBytes);
          expected = applyWrite(model, step, nowMs, valueBytes);
          expect(applyWrite(maple, step, nowMs, valueBytes)).toBe(actual as never);
        }
        switch (step.kind) {
          case "advance":
            nowMs += step.ms;
            break;
          case "purge": {
            const purged = db.purgeExpired(nowMs, step.max);
            expect(purged).toBe(model.purgeExpired(nowMs, step.max));
            expect(maple.purgeExpired(nowMs, step.max)).toBe(purged);
            break;
          }
          case "snapshot": {
            // A RecordDB snapshot loads into a RecordDB and a MapleDB alike, and back.
            const bytes = await saved(db, nowMs);
            expect(bytes).toEqual(await saved(db, nowMs));
            const restored = new RecordDB();
            if (step.via === "maple") {
              const viaMaple = new MapleDB({ shards: 4 });
              await viaMaple.load(pieces(bytes, step.pieceBytes));
              await restored.load(pieces(await saved(viaMaple, nowMs), step.pieceBytes));
            } else {
              await restored.load(pieces(bytes, step.pieceBytes));
            }
            restored.onChange(listen(events));
            db = restored;
            break;
          }
          case "list": {
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
        const indexed = db.orderedKeys();
        expect(indexed.length).toBe(db.size);
        expect(indexed).toEqual([...indexed].sort(modelKeyOrder));
        expect(db.info(nowMs)).toEqual({ ...maple.info(nowMs), shards: db.info(nowMs).shards });
        expect(events).toEqual(mapleEvents);
      }
      db.purgeExpired(nowMs, 1000);
      expect(db.info(nowMs).keys).toBe(KEYS.filter((k) => model.has(k, nowMs)).length);
      expect(db.deadlineIndexSize).toBeLessThanOrEqual(KEYS.length);
    }),
    { numRuns: 300 },
  );
});

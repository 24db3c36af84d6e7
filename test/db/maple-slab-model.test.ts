import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { KVDB, LentBytes, LentEntry } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { SLAB_VALUE_MAX } from "../../src/db/maple/value-slab.ts";
import { DkvError } from "../../src/errors.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";
import { concat, pieces, saveChunks, T0 } from "./helpers.ts";

/**
 * The value slab's reuse against the plain model: values of many sizes, so a key's record
 * is rewritten in place (same size class), moves to another class (bigger or smaller),
 * leaves the slab (a value over SLAB_VALUE_MAX, or a deadline) and comes back, and freed
 * records are taken by other keys. Every read goes through both getEntry (a copy) and
 * lendEntry (the server's path: the record's bytes copied into a buffer at an offset).
 */

const KEYS = ["a", "b", "c", "d", "e", "f"];
/** Size classes are 16 B steps of 32 + length: these cross several, and the slab's edge. */
const SIZES = [0, 1, 15, 16, 17, 100, 128, 129, 500, SLAB_VALUE_MAX, SLAB_VALUE_MAX + 1, 3000];

type Op =
  | { kind: "set"; key: string; size: number; seed: number }
  | { kind: "setE"; key: string; size: number; seed: number; expireIn: number; deleteIn: number }
  | { kind: "expire"; key: string }
  | { kind: "delete"; key: string }
  | { kind: "deleteIfEquals"; key: string; size: number; seed: number }
  | { kind: "advance"; ms: number }
  | { kind: "purge" }
  | { kind: "snapshot"; pieceBytes: number };

const key = fc.constantFrom(...KEYS);
const size = fc.constantFrom(...SIZES);
// Few seeds so compare-and-delete often matches.
const seed = fc.integer({ min: 0, max: 2 });
const ms = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("set" as const), key, size, seed }), weight: 6 },
  fc.record({ kind: fc.constant("setE" as const), key, size, seed, expireIn: ms, deleteIn: ms }),
  fc.record({ kind: fc.constant("expire" as const), key }),
  { arbitrary: fc.record({ kind: fc.constant("delete" as const), key }), weight: 2 },
  fc.record({ kind: fc.constant("deleteIfEquals" as const), key, size, seed }),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ kind: fc.constant("purge" as const) }),
  fc.record({ kind: fc.constant("snapshot" as const), pieceBytes: fc.integer({ min: 7, max: 5000 }) }),
);

function patterned(length: number, seedValue: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seedValue * 97 + i * 13 + length) & 0xff;
  return out;
}

/** What the server's get reply would carry: the value copied into a frame at an offset. */
function viaLoan(lent: LentEntry | undefined): Omit<LentEntry, "value"> & { value: Uint8Array } {
  if (lent === undefined)
    return { value: new Uint8Array(0), version: -1, createRevision: -1, modRevision: -1 };
  const { value, version, createRevision, modRevision } = lent;
  const frame = new Uint8Array(value.byteLength + 10).fill(0xee);
  if (value instanceof Uint8Array) frame.set(value, 3);
  else value.copyInto(frame, new DataView(frame.buffer), 3);
  // Nothing outside the value's range was touched.
  expect(frame.subarray(0, 3)).toEqual(new Uint8Array(3).fill(0xee));
  expect(frame.subarray(3 + value.byteLength)).toEqual(new Uint8Array(7).fill(0xee));
  return { value: frame.slice(3, 3 + value.byteLength), version, createRevision, modRevision };
}

function loanOf(entry: LentEntry): LentBytes {
  if (entry.value instanceof Uint8Array) throw new Error("expected a lent value, got an array");
  return entry.value;
}

function apply(kvdb: KVDB, step: Op, nowMs: number): unknown {
  switch (step.kind) {
    case "set":
      return kvdb.set(step.key, patterned(step.size, step.seed), nowMs);
    case "setE":
      return kvdb.setE(step.key, patterned(step.size, step.seed), step.expireIn, step.deleteIn, nowMs);
    case "expire":
      return kvdb.expire(step.key, nowMs);
    case "delete":
      return kvdb.delete(step.key, nowMs);
    case "deleteIfEquals":
      return kvdb.deleteIfEquals(step.key, patterned(step.size, step.seed), nowMs);
    default:
      return undefined;
  }
}

describe("value slab reuse, against the model", () => {
  test("overwrites bigger and smaller, deletes, expiry and snapshot round trips agree with the model", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), async (ops) => {
        let db = new MapleDB({ shards: 2 });
        const model = new ModelKVDB();
        let nowMs = T0;
        for (const step of ops) {
          if (step.kind === "advance") nowMs += step.ms;
          else if (step.kind === "purge")
            expect(db.purgeExpired(nowMs, 100)).toBe(model.purgeExpired(nowMs, 100));
          else if (step.kind === "snapshot") {
            const restored = new MapleDB({ shards: 4 });
            await restored.load(pieces(concat(await saveChunks(db, nowMs)), step.pieceBytes));
            db = restored;
          } else expect(apply(db, step, nowMs)).toBe(apply(model, step, nowMs));
          for (const k of KEYS) {
            const expected = model.getEntry(k, nowMs);
            expect(db.getEntry(k, nowMs)).toEqual(expected);
            const lent = db.lendEntry(k, nowMs);
            expect(lent === undefined).toBe(expected === undefined);
            expect(viaLoan(lent)).toEqual(viaLoan(model.lendEntry(k, nowMs)));
            expect(db.has(k, nowMs)).toBe(model.has(k, nowMs));
          }
          const { keys, keysWithDeadline } = model.info(nowMs);
          expect(db.info(nowMs)).toMatchObject({ keys, keysWithDeadline });
        }
      }),
      { numRuns: 300 },
    );
  });

  test("churn over one size class reuses freed records: the slab stops growing", () => {
    const db = new MapleDB({ shards: 1 });
    const model = new ModelKVDB();
    let state = 12345;
    const next = (): number => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state;
    };
    const round = (): void => {
      for (let i = 0; i < 3000; i++) {
        const k = `k${next() % 500}`;
        const r = next() % 10;
        if (r < 2) {
          db.delete(k, T0);
          model.delete(k, T0);
        } else {
          // 100..140 B: a few neighbouring classes, in place or moving between them.
          const value = patterned(100 + (next() % 41), next() % 7);
          db.set(k, value, T0);
          model.set(k, value, T0);
        }
      }
    };
    for (let i = 0; i < 3; i++) round();
    const held = db.slabBytesHeld;
    for (let i = 0; i < 10; i++) round();
    expect(db.slabBytesHeld).toBe(held);
    for (let i = 0; i < 500; i++) expect(db.getEntry(`k${i}`, T0)).toEqual(model.getEntry(`k${i}`, T0));
  });
});

describe("a lent value", () => {
  test("is a loan over the slab (no array made), and refuses to be read after a later write", () => {
    const db = new MapleDB({ shards: 1 });
    db.set("a", patterned(128, 1), T0);
    db.set("b", patterned(128, 2), T0);
    const lent = db.lendEntry("a", T0)!;
    expect(lent.value).not.toBeInstanceOf(Uint8Array);
    expect(lent.value.byteLength).toBe(128);
    // Same turn: fine, and again.
    expect(viaLoan(lent).value).toEqual(patterned(128, 1));
    expect(viaLoan(lent).value).toEqual(patterned(128, 1));
    // "a" rewritten in place (same class): the record now holds other bytes.
    db.set("a", patterned(128, 3), T0);
    const target = new Uint8Array(128);
    expect(() => loanOf(lent).copyInto(target, new DataView(target.buffer), 0)).toThrow(DkvError);
    expect(() => loanOf(lent).copyInto(target, new DataView(target.buffer), 0)).toThrow(
      /after a later write/,
    );
    expect(target).toEqual(new Uint8Array(128));
    // A write to another key voids it too (it may take a record freed under the loan).
    const again = db.lendEntry("a", T0)!;
    db.delete("a", T0);
    db.set("c", patterned(128, 4), T0);
    expect(() => loanOf(again).copyInto(target, new DataView(target.buffer), 0)).toThrow(
      /after a later write/,
    );
  });

  test("a value outside the slab (big, or with a deadline) is the stored array itself", () => {
    const db = new MapleDB({ shards: 1 });
    const big = patterned(SLAB_VALUE_MAX + 1, 1);
    db.set("big", big, T0);
    db.setE("timed", patterned(10, 2), 1000, 0, T0);
    expect(db.lendEntry("big", T0)!.value).toBe(big);
    expect(db.lendEntry("timed", T0)!.value).toEqual(patterned(10, 2));
    expect(db.lendEntry("timed", T0 + 1000)).toBeUndefined();
    expect(db.lendEntry("missing", T0)).toBeUndefined();
  });
});

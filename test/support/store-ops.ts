import fc from "fast-check";
import type { IStore } from "../../src/store/types.ts";
import { ModelKVDB } from "./model-kvdb.ts";

/** One step of a random store workload: an operation, or time passing. */
export type StoreOp =
  | { op: "set"; key: string; value: Uint8Array }
  | { op: "setE"; key: string; value: Uint8Array; expireInMs: number; deleteInMs: number }
  | { op: "setEIfUnset"; key: string; value: Uint8Array; expireInMs: number; deleteInMs: number }
  | { op: "claim"; key: string; value: Uint8Array; expireInMs: number; deleteInMs: number }
  | { op: "expire"; key: string }
  | { op: "delete"; key: string }
  | { op: "get"; key: string }
  | { op: "has"; key: string }
  | { op: "deleteIfEquals"; key: string; value: Uint8Array }
  | { op: "renewIfEquals"; key: string; value: Uint8Array; expireInMs: number; deleteInMs: number }
  | { op: "advance"; ms: number };

/** Few keys and values, so operations collide and compare-and-X calls sometimes match. */
const keyArb = fc.constantFrom("a", "b", "ключ", "🔑");
const valueArb = fc.oneof(
  fc.constantFrom(new Uint8Array(0), new Uint8Array([1]), new Uint8Array([0, 255, 128])),
  fc.uint8Array({ maxLength: 6 }),
);
const durationArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 }));

export const storeOpArb: fc.Arbitrary<StoreOp> = fc.oneof(
  fc.record({ op: fc.constant("set" as const), key: keyArb, value: valueArb }),
  fc.record({
    op: fc.constant("setE" as const),
    key: keyArb,
    value: valueArb,
    expireInMs: durationArb,
    deleteInMs: durationArb,
  }),
  fc.record({
    op: fc.constant("setEIfUnset" as const),
    key: keyArb,
    value: valueArb,
    expireInMs: durationArb,
    deleteInMs: durationArb,
  }),
  fc.record({
    op: fc.constant("claim" as const),
    key: keyArb,
    value: valueArb,
    expireInMs: durationArb,
    deleteInMs: durationArb,
  }),
  fc.record({ op: fc.constant("expire" as const), key: keyArb }),
  fc.record({ op: fc.constant("delete" as const), key: keyArb }),
  fc.record({ op: fc.constant("get" as const), key: keyArb }),
  fc.record({ op: fc.constant("has" as const), key: keyArb }),
  fc.record({ op: fc.constant("deleteIfEquals" as const), key: keyArb, value: valueArb }),
  fc.record({
    op: fc.constant("renewIfEquals" as const),
    key: keyArb,
    value: valueArb,
    expireInMs: durationArb,
    deleteInMs: durationArb,
  }),
  fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 120 }) }),
);

/** A result both sides can be compared on; claim revisions are checked separately. */
export type OpResult = "ok" | "true" | "false" | "missing" | `value:${string}`;

function valueResult(value: Uint8Array | undefined): OpResult {
  return value === undefined ? "missing" : `value:${Buffer.from(value).toString("hex")}`;
}

/** The oracle side: the model KVDB with its own copy of "now", moved by `advance` ops. */
export class ModelStore {
  readonly db = new ModelKVDB();
  constructor(public nowMs: number) {}

  apply(op: StoreOp, prefix: string): OpResult {
    if (op.op === "advance") {
      this.nowMs += op.ms;
      return "ok";
    }
    const key = prefix + op.key;
    const now = this.nowMs;
    switch (op.op) {
      case "set":
        this.db.set(key, op.value, now);
        return "ok";
      case "setE":
        this.db.setE(key, op.value, op.expireInMs, op.deleteInMs, now);
        return "ok";
      case "setEIfUnset":
      case "claim":
        return String(this.db.setEIfUnset(key, op.value, op.expireInMs, op.deleteInMs, now)) as OpResult;
      case "expire":
        this.db.expire(key, now);
        return "ok";
      case "delete":
        this.db.delete(key, now);
        return "ok";
      case "get":
        return valueResult(this.db.get(key, now));
      case "has":
        return String(this.db.has(key, now)) as OpResult;
      case "deleteIfEquals":
        return String(this.db.deleteIfEquals(key, op.value, now)) as OpResult;
      case "renewIfEquals":
        return String(this.db.renewIfEquals(key, op.value, op.expireInMs, op.deleteInMs, now)) as OpResult;
    }
  }
}

/**
 * The side under test. `advance` moves the harness clock; `onClaim` sees each written
 * claim's revision so the caller can check that revisions only grow.
 */
export async function applyToStore(
  store: IStore,
  advance: (ms: number) => Promise<void>,
  op: StoreOp,
  prefix: string,
  onClaim: (revision: bigint) => void,
): Promise<OpResult> {
  if (op.op === "advance") {
    await advance(op.ms);
    return "ok";
  }
  const key = prefix + op.key;
  switch (op.op) {
    case "set":
      await store.set(key, op.value);
      return "ok";
    case "setE":
      await store.setE(key, op.value, op.expireInMs, op.deleteInMs);
      return "ok";
    case "setEIfUnset":
      return String(await store.setEIfUnset(key, op.value, op.expireInMs, op.deleteInMs)) as OpResult;
    case "claim": {
      const claim = await store.claim(key, op.value, op.expireInMs, op.deleteInMs);
      if (claim.written) onClaim(claim.revision);
      return String(claim.written) as OpResult;
    }
    case "expire":
      await store.expire(key);
      return "ok";
    case "delete":
      await store.delete(key);
      return "ok";
    case "get":
      return valueResult(await store.get(key));
    case "has":
      return String(await store.has(key)) as OpResult;
    case "deleteIfEquals":
      return String(await store.deleteIfEquals(key, op.value)) as OpResult;
    case "renewIfEquals":
      return String(await store.renewIfEquals(key, op.value, op.expireInMs, op.deleteInMs)) as OpResult;
  }
}

/** Property-test knobs: DKV_SEED replays a failure, DKV_PROPERTY_RUNS scales the effort. */
export function propertyParameters(defaultRuns: number): fc.Parameters<unknown> {
  const seed = process.env.DKV_SEED;
  const runs = process.env.DKV_PROPERTY_RUNS;
  return {
    numRuns: runs === undefined ? defaultRuns : Number(runs),
    ...(seed === undefined ? {} : { seed: Number(seed) }),
  };
}

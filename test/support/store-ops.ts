import fc from "fast-check";
import type { EntryInfo } from "../../src/db/kvdb.ts";
import type { IStore, TxnCompare, TxnOp, TxnOpResult, TxnRequest } from "../../src/store/types.ts";
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
  | { op: "advance"; ms: number }
  | { op: "list"; limit: number | undefined; after: string | undefined; keysOnly: boolean }
  | { op: "txn"; txn: TxnRequest };

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
  fc.record({
    op: fc.constant("list" as const),
    limit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    after: fc.option(keyArb, { nil: undefined }),
    keysOnly: fc.boolean(),
  }),
  fc.record({ op: fc.constant("txn" as const), txn: txnArb() }),
);

/** Transactions over the same few keys; no revision targets, as the model counts its own revisions. */
function txnArb(): fc.Arbitrary<TxnRequest> {
  const compare: fc.Arbitrary<TxnCompare> = fc.oneof(
    fc.record({
      key: keyArb,
      target: fc.constant("value" as const),
      op: fc.constantFrom("==", "!=", "<", ">"),
      value: valueArb,
    }),
    fc.record({
      key: keyArb,
      target: fc.constant("version" as const),
      op: fc.constantFrom("==", "!=", "<", ">"),
      value: fc.integer({ min: 0, max: 3 }),
    }),
    fc.record({
      key: keyArb,
      target: fc.constant("exists" as const),
      op: fc.constantFrom("==", "!="),
      value: fc.boolean(),
    }),
  );
  const op: fc.Arbitrary<TxnOp> = fc.oneof(
    fc.record({ op: fc.constant("set" as const), key: keyArb, value: valueArb }),
    fc.record({
      op: fc.constant("setE" as const),
      key: keyArb,
      value: valueArb,
      expireInMs: durationArb,
      deleteInMs: durationArb,
    }),
    fc.record({ op: fc.constant("delete" as const), key: keyArb }),
    fc.record({ op: fc.constant("get" as const), key: keyArb }),
  );
  return fc.record({
    compare: fc.array(compare, { maxLength: 2 }),
    success: fc.array(op, { maxLength: 3 }),
    failure: fc.array(op, { maxLength: 3 }),
  });
}

/** The keys of a transaction prefixed with a run's prefix. */
function prefixedTxn(txn: TxnRequest, prefix: string): TxnRequest {
  return {
    compare: txn.compare.map((c) => ({ ...c, key: prefix + c.key })),
    success: txn.success.map((o) => ({ ...o, key: prefix + o.key })),
    failure: txn.failure.map((o) => ({ ...o, key: prefix + o.key })),
  };
}

function entriesResult(
  items: { key: string; value?: Uint8Array | undefined; version?: number; found?: boolean }[],
  more: boolean,
  prefix: string,
): OpResult {
  const shown = items.map((item) => [
    item.key.slice(prefix.length),
    item.found ?? null,
    item.value === undefined ? null : Buffer.from(item.value).toString("hex"),
    item.version ?? null,
  ]);
  return `value:${JSON.stringify({ shown, more })}`;
}

function txnResult(succeeded: boolean, results: TxnOpResult[], prefix: string): OpResult {
  return `value:${succeeded}/${entriesResult(results, false, prefix)}` as OpResult;
}

function bytesOf(value: Uint8Array | string): Uint8Array {
  return typeof value === "string" ? new TextEncoder().encode(value) : value;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function holds(order: number, op: string): boolean {
  return op === "==" ? order === 0 : op === "!=" ? order !== 0 : op === "<" ? order < 0 : order > 0;
}

/** The model's own reading of a transaction (written apart from src/store/txn.ts, as an oracle). */
function modelTxn(
  db: ModelKVDB,
  txn: TxnRequest,
  nowMs: number,
): { succeeded: boolean; results: TxnOpResult[] } {
  const entry = (key: string): EntryInfo | undefined => db.getEntry(key, nowMs);
  const succeeded = txn.compare.every((c) => {
    const found = entry(c.key);
    if (c.target === "value")
      return found !== undefined && holds(compareBytes(found.value!, bytesOf(c.value)), c.op);
    if (c.target === "exists") return holds((found !== undefined) === c.value ? 0 : 1, c.op);
    return holds((found?.version ?? 0) - (c.value as number), c.op);
  });
  const results: TxnOpResult[] = [];
  for (const op of succeeded ? txn.success : txn.failure) {
    if (op.op === "set") db.set(op.key, bytesOf(op.value), nowMs);
    else if (op.op === "setE") db.setE(op.key, bytesOf(op.value), op.expireInMs, op.deleteInMs, nowMs);
    else if (op.op === "delete") db.delete(op.key, nowMs);
    if (op.op !== "get") {
      results.push({ op: op.op, key: op.key });
      continue;
    }
    const found = entry(op.key);
    results.push(
      found === undefined
        ? { op: "get", key: op.key, found: false }
        : { op: "get", key: op.key, found: true, value: found.value, version: found.version },
    );
  }
  return { succeeded, results };
}

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
    const key = "key" in op ? prefix + op.key : prefix;
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
      case "list": {
        const after = op.after === undefined ? undefined : prefix + op.after;
        const page = this.db.list({ prefix, limit: op.limit, after, keysOnly: op.keysOnly }, now);
        return entriesResult(page.items, page.more, prefix);
      }
      case "txn": {
        const { succeeded, results } = modelTxn(this.db, prefixedTxn(op.txn, prefix), now);
        return txnResult(succeeded, results, prefix);
      }
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
  const key = "key" in op ? prefix + op.key : prefix;
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
    case "list": {
      const after = op.after === undefined ? undefined : prefix + op.after;
      const page = await store.list({ prefix, limit: op.limit, after, keysOnly: op.keysOnly });
      return entriesResult(page.items, page.more, prefix);
    }
    case "txn": {
      const result = await store.txn(prefixedTxn(op.txn, prefix));
      // Revisions differ between model and store; compare what both define alike.
      const results = result.results.map(({ op: kind, key: k, found, value, version }) =>
        kind === "get" ? { op: kind, key: k, found, value, version } : { op: kind, key: k },
      );
      return txnResult(result.succeeded, results, prefix);
    }
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

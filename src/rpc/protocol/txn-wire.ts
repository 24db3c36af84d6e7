import { DkvError } from "../../errors.ts";
import type { TxnCompare, TxnOp, TxnOpResult, TxnRequest, TxnResult } from "../../store/txn.ts";
import type { WireCompare, WireTxnOp, WireTxnResult } from "./types.ts";

/** Transactions between the store's types and the wire's flat records (see Requests["txn"]). */
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

function bytesOf(value: Uint8Array | string): Uint8Array {
  return typeof value === "string" ? utf8.encode(value) : value;
}

export function txnToWire(txn: TxnRequest): {
  compare: WireCompare[];
  success: WireTxnOp[];
  failure: WireTxnOp[];
} {
  const compare = txn.compare.map((c): WireCompare => {
    if (c.target === "value")
      return { key: c.key, target: c.target, op: c.op, value: bytesOf(c.value), number: 0 };
    if (c.target === "exists")
      return { key: c.key, target: c.target, op: c.op, value: undefined, number: c.value ? 1 : 0 };
    return { key: c.key, target: c.target, op: c.op, value: undefined, number: c.value };
  });
  const op = (o: TxnOp): WireTxnOp => ({
    op: o.op,
    key: o.key,
    value: o.op === "set" || o.op === "setE" ? bytesOf(o.value) : undefined,
    expireInMs: o.op === "setE" ? o.expireInMs : 0,
    deleteInMs: o.op === "setE" ? o.deleteInMs : 0,
  });
  return { compare, success: txn.success.map(op), failure: txn.failure.map(op) };
}

function bad(message: string): DkvError {
  return new DkvError("BAD_REQUEST", message, { outcome: "not-applied" });
}

/** The store's request from the wire; the store validates it fully (checkTxn). */
export function txnFromWire(wire: {
  compare: WireCompare[];
  success: WireTxnOp[];
  failure: WireTxnOp[];
}): TxnRequest {
  const compare = wire.compare.map((c, i): TxnCompare => {
    switch (c.target) {
      case "value":
        if (c.value === undefined) throw bad(`compare[${i}]: target "value" needs a value`);
        return { key: c.key, target: "value", op: c.op as TxnCompare["op"], value: c.value };
      case "exists":
        if (c.number !== 0 && c.number !== 1) throw bad(`compare[${i}]: "exists" takes true or false`);
        return { key: c.key, target: "exists", op: c.op as "==" | "!=", value: c.number === 1 };
      default:
        return { key: c.key, target: c.target as "version", op: c.op as TxnCompare["op"], value: c.number };
    }
  });
  const op = (o: WireTxnOp): TxnOp => {
    switch (o.op) {
      case "set":
        return { op: "set", key: o.key, value: o.value ?? EMPTY };
      case "setE":
        return {
          op: "setE",
          key: o.key,
          value: o.value ?? EMPTY,
          expireInMs: o.expireInMs,
          deleteInMs: o.deleteInMs,
        };
      default:
        return { op: o.op as "get" | "delete", key: o.key };
    }
  };
  return { compare, success: wire.success.map(op), failure: wire.failure.map(op) };
}

export function txnResultToWire(result: TxnResult): {
  succeeded: boolean;
  revision: number;
  results: WireTxnResult[];
} {
  return {
    succeeded: result.succeeded,
    revision: result.revision,
    results: result.results.map((r) => ({
      op: r.op,
      key: r.key,
      found: r.found ?? false,
      value: r.value,
      version: r.version ?? 0,
      createRevision: r.createRevision ?? 0,
      modRevision: r.modRevision ?? 0,
    })),
  };
}

export function txnResultFromWire(wire: {
  succeeded: boolean;
  revision: number;
  results: WireTxnResult[];
}): TxnResult {
  return {
    succeeded: wire.succeeded,
    revision: wire.revision,
    results: wire.results.map((r): TxnOpResult => {
      const op = r.op as TxnOpResult["op"];
      if (op !== "get") return { op, key: r.key };
      if (!r.found) return { op, key: r.key, found: false };
      const { version, createRevision, modRevision } = r;
      return { op, key: r.key, found: true, value: r.value ?? EMPTY, version, createRevision, modRevision };
    }),
  };
}

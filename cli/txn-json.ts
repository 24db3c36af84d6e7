import { parseDuration } from "../src/config/parse.ts";
import { DkvError } from "../src/errors.ts";
import type { TxnCompare, TxnOp, TxnRequest, TxnResult } from "../src/store/types.ts";

/**
 * `dkv kv txn`'s JSON document (stdin) and result (stdout):
 *   {"compare":[{"key":"a","target":"value|version|createRevision|modRevision|exists","op":"==|!=|<|>","value":..}],
 *    "success":[{"op":"set|setE|delete|get","key":"k","value":"v","expireIn":"30s","deleteIn":"0"}],
 *    "failure":[...]}
 * A value is UTF-8 text or {"base64":"..."}; setE durations are "expireIn"/"deleteIn"
 * (e.g. "30s"; a bare number is seconds) or "expireInMs"/"deleteInMs". The store checks
 * the rest (targets, ops, keys) and refuses a bad document whole.
 */
function usage(message: string): DkvError {
  return new DkvError("USAGE", `${message} (see dkv kv txn --help)`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function documentValue(value: unknown, where: string): Uint8Array | string {
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.base64 === "string") {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value.base64) || value.base64.length % 4 === 1) {
      throw usage(`${where}.value.base64 is not valid base64`);
    }
    return new Uint8Array(Buffer.from(value.base64, "base64"));
  }
  throw usage(`${where}.value must be a string or {"base64":"..."}`);
}

function durationMs(op: Record<string, unknown>, name: "expireIn" | "deleteIn", where: string): number {
  const ms = op[`${name}Ms`];
  if (ms !== undefined) {
    if (typeof ms !== "number") throw usage(`${where}.${name}Ms must be a number of milliseconds`);
    return ms;
  }
  const text = op[name];
  if (text === undefined) return 0;
  if (typeof text === "number") return text * 1000;
  if (typeof text !== "string") throw usage(`${where}.${name} must be a duration such as "30s"`);
  return parseDuration(text, `${where}.${name}`);
}

function parseOp(raw: unknown, where: string): TxnOp {
  if (!isObject(raw)) throw usage(`${where} must be an object`);
  const key = raw.key as string;
  switch (raw.op) {
    case "set":
      return { op: "set", key, value: documentValue(raw.value, where) };
    case "setE":
      return {
        op: "setE",
        key,
        value: documentValue(raw.value, where),
        expireInMs: durationMs(raw, "expireIn", where),
        deleteInMs: durationMs(raw, "deleteIn", where),
      };
    case "delete":
    case "get":
      return { op: raw.op, key };
    default:
      throw usage(`${where}.op must be set, setE, delete or get`);
  }
}

function parseCompare(raw: unknown, where: string): TxnCompare {
  if (!isObject(raw)) throw usage(`${where} must be an object`);
  const base = { key: raw.key as string, op: raw.op as TxnCompare["op"] };
  if (raw.target === "value") return { ...base, target: "value", value: documentValue(raw.value, where) };
  // Types beyond this (a number for version, a boolean for exists) are checked by the store.
  return { ...base, target: raw.target, value: raw.value } as TxnCompare;
}

export function parseTxnDocument(text: string): TxnRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw usage(`stdin is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isObject(parsed))
    throw usage('stdin must hold one JSON object {"compare":[..],"success":[..],"failure":[..]}');
  const list = (name: string): unknown[] => {
    const value = parsed[name] ?? [];
    if (!Array.isArray(value)) throw usage(`"${name}" must be a list`);
    return value;
  };
  return {
    compare: list("compare").map((c, i) => parseCompare(c, `compare[${i}]`)),
    success: list("success").map((op, i) => parseOp(op, `success[${i}]`)),
    failure: list("failure").map((op, i) => parseOp(op, `failure[${i}]`)),
  };
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

export function txnResultJson(result: TxnResult): Record<string, unknown> {
  return {
    succeeded: result.succeeded,
    revision: result.revision,
    results: result.results.map((r) => {
      if (r.op !== "get") return { op: r.op, key: r.key };
      if (!r.found || r.value === undefined) return { op: r.op, key: r.key, found: false };
      let value: Record<string, unknown>;
      try {
        value = { value: utf8Strict.decode(r.value) };
      } catch {
        value = { value: Buffer.from(r.value).toString("base64"), encoding: "base64" };
      }
      const { version, createRevision, modRevision } = r;
      return { op: r.op, key: r.key, found: true, ...value, version, createRevision, modRevision };
    }),
  };
}

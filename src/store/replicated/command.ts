import { DkvError } from "../../errors.ts";
import type { CheckedTxn } from "../txn.ts";
import { decodeTxn } from "./txn-command.ts";

/**
 * The replicated log's command for a dstore write, small and binary (little-endian):
 *   u8 op | u8 flags (bit 0: has origin) | u16 0 | u32 keyBytes | u32 valueBytes |
 *   f64 expireInMs | f64 deleteInMs | [origin: 16 B clientId | f64 requestId] | key | value
 * The value field is the new value, or the expected one for the compare operations.
 */
export const Op = {
  Set: 1,
  SetE: 2,
  SetEIfUnset: 3,
  Expire: 4,
  Delete: 5,
  Claim: 6,
  DeleteIfEquals: 7,
  RenewIfEquals: 8,
  /** A transaction: the value is its body (txn-command.ts), the key is empty. */
  Txn: 9,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Who sent a write, so a retry of it applies at most once and gets the first answer. */
export interface RequestOrigin {
  /** 16 bytes, random per client. */
  clientId: Uint8Array;
  /** Unique per write of that client (a retry reuses it); a safe integer. */
  requestId: number;
}

export interface Command {
  op: Op;
  key: string;
  value: Uint8Array;
  expireInMs: number;
  deleteInMs: number;
  origin: RequestOrigin | undefined;
  /** Op.Txn only: the transaction, decoded and validated from the value. */
  txn?: CheckedTxn;
}

export const CLIENT_ID_BYTES = 16;
const HEADER_BYTES = 28;
const ORIGIN_BYTES = CLIENT_ID_BYTES + 8;
const FLAG_ORIGIN = 1;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeCommand(command: Command): Uint8Array {
  const key = utf8.encode(command.key);
  const { value, origin } = command;
  const originBytes = origin === undefined ? 0 : ORIGIN_BYTES;
  const out = new Uint8Array(HEADER_BYTES + originBytes + key.byteLength + value.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, command.op);
  view.setUint8(1, origin === undefined ? 0 : FLAG_ORIGIN);
  view.setUint32(4, key.byteLength, true);
  view.setUint32(8, value.byteLength, true);
  view.setFloat64(12, command.expireInMs, true);
  view.setFloat64(20, command.deleteInMs, true);
  let pos = HEADER_BYTES;
  if (origin !== undefined) {
    if (origin.clientId.byteLength !== CLIENT_ID_BYTES || !Number.isSafeInteger(origin.requestId)) {
      throw new DkvError(
        "BAD_REQUEST",
        "a request origin needs a 16-byte client id and a whole-number request id",
      );
    }
    out.set(origin.clientId, pos);
    view.setFloat64(pos + CLIENT_ID_BYTES, origin.requestId, true);
    pos += ORIGIN_BYTES;
  }
  out.set(key, pos);
  out.set(value, pos + key.byteLength);
  return out;
}

/** Decodes a command; the value is copied, so the engine may keep it. Throws CORRUPT on bad bytes. */
export function decodeCommand(data: Uint8Array): Command {
  if (data.byteLength < HEADER_BYTES) throw corrupt(`${data.byteLength} bytes`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const op = view.getUint8(0);
  if (op < Op.Set || op > Op.Txn) throw corrupt(`unknown op ${op}`);
  const hasOrigin = (view.getUint8(1) & FLAG_ORIGIN) !== 0;
  const keyBytes = view.getUint32(4, true);
  const valueBytes = view.getUint32(8, true);
  const expireInMs = view.getFloat64(12, true);
  const deleteInMs = view.getFloat64(20, true);
  let pos = HEADER_BYTES;
  let origin: RequestOrigin | undefined;
  if (hasOrigin) {
    if (data.byteLength < pos + ORIGIN_BYTES) throw corrupt("truncated origin");
    origin = {
      clientId: data.slice(pos, pos + CLIENT_ID_BYTES),
      requestId: view.getFloat64(pos + CLIENT_ID_BYTES, true),
    };
    pos += ORIGIN_BYTES;
  }
  if (data.byteLength !== pos + keyBytes + valueBytes) throw corrupt("length mismatch");
  const key = utf8Decoder.decode(data.subarray(pos, pos + keyBytes));
  const value = data.slice(pos + keyBytes, pos + keyBytes + valueBytes);
  if (op === Op.Txn)
    return { op, key, value, expireInMs, deleteInMs, origin, txn: decodeTxn(value, corrupt) };
  return { op: op as Op, key, value, expireInMs, deleteInMs, origin };
}

function corrupt(detail: string): DkvError {
  return new DkvError(
    "CORRUPT",
    `a dstore log entry does not decode (${detail}); the members run different dkv versions or the log is damaged`,
  );
}

// ---- results -------------------------------------------------------------------------
// void: 0 bytes; boolean: 1 byte; claim: u8 written | u64 revision.

export const RESULT_VOID = new Uint8Array(0);
const RESULT_TRUE = new Uint8Array([1]);
const RESULT_FALSE = new Uint8Array([0]);

export function encodeBoolean(value: boolean): Uint8Array {
  return value ? RESULT_TRUE : RESULT_FALSE;
}

export function decodeBoolean(result: Uint8Array): boolean {
  if (result.byteLength !== 1) throw badResult(result);
  return result[0] === 1;
}

export function encodeClaim(written: boolean, revision: bigint): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = written ? 1 : 0;
  new DataView(out.buffer).setBigUint64(1, revision, true);
  return out;
}

export function decodeClaim(result: Uint8Array): { written: boolean; revision: bigint } {
  if (result.byteLength !== 9) throw badResult(result);
  const view = new DataView(result.buffer, result.byteOffset, result.byteLength);
  return { written: result[0] === 1, revision: view.getBigUint64(1, true) };
}

function badResult(result: Uint8Array): DkvError {
  return new DkvError(
    "INTERNAL",
    `unexpected ${result.byteLength}-byte result from the replicated store; the members may run different dkv versions`,
    { outcome: "unknown" },
  );
}

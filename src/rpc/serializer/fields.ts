import type { LentBytes } from "../../db/kvdb.ts";
import { DkvError } from "../../errors.ts";
import type { FieldSpec, FieldValue, Message } from "../protocol/types.ts";

const utf8Encoder = new TextEncoder();

export function badBody(serializer: string, detail: string): DkvError {
  return new DkvError("BAD_FRAME", `cannot decode ${serializer} message body: ${detail}`);
}

export function asBytes(value: FieldValue): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8Encoder.encode(value);
  if (isLent(value)) return ownBytes(value);
  throw new DkvError("BAD_REQUEST", "expected bytes or a string");
}

/** Whether a field holds bytes lent by the engine (see KVDB.lendEntry). */
export function isLent(value: FieldValue): value is LentBytes {
  return typeof value === "object" && !(value instanceof Uint8Array) && !Array.isArray(value);
}

/** A lent value copied into an array of its own (for a serializer that needs one, or a later turn). */
export function ownBytes(value: LentBytes): Uint8Array {
  const bytes = new Uint8Array(value.byteLength);
  value.copyInto(bytes, new DataView(bytes.buffer), 0);
  return bytes;
}

/**
 * `message` as a plain object of `schema`'s fields with every lent value (top-level
 * fields) copied into its own array: for a reply target that reads the response in a
 * later turn, after writes may have happened. A message without lent values is returned
 * as it is.
 */
export function ownedMessage(schema: readonly FieldSpec[], message: Message): Message {
  let lent = false;
  for (const spec of schema) {
    const value = message[spec.name];
    if (value !== undefined && isLent(value)) lent = true;
  }
  if (!lent) return message;
  const owned: Message = {};
  for (const spec of schema) {
    const value = message[spec.name];
    owned[spec.name] = value !== undefined && isLent(value) ? ownBytes(value) : value;
  }
  return owned;
}

export function recordsOf(value: FieldValue): Message[] {
  if (Array.isArray(value)) return value;
  throw new DkvError("BAD_REQUEST", "expected a list of records");
}

/** Normalises a decoded value to the field's type (msgpack and JSON are loosely typed). */
export function coerce(serializer: string, spec: FieldSpec, value: unknown): FieldValue {
  const optional = spec.type === "optStr" || spec.type === "optBytes" || spec.type === "optU64";
  if (value === undefined || value === null) {
    if (optional) return undefined;
    throw badBody(serializer, `field "${spec.name}" is missing`);
  }
  switch (spec.type) {
    case "str":
    case "optStr":
      if (typeof value === "string") return value;
      break;
    case "bytes":
    case "optBytes":
      if (value instanceof Uint8Array) return value;
      break;
    case "num":
      if (typeof value === "number") return value;
      if (typeof value === "bigint") return Number(value);
      if (value === "NaN" || value === "Infinity" || value === "-Infinity") return Number(value);
      break;
    case "bool":
      if (typeof value === "boolean") return value;
      break;
    case "records":
      // Nested records are decoded by the serializer itself, which passes them here.
      if (Array.isArray(value)) return value as Message[];
      break;
    case "u64":
    case "optU64":
      if (typeof value === "bigint" && value >= 0n) return value;
      if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
      if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
      break;
  }
  throw badBody(serializer, `field "${spec.name}" is not of type ${spec.type}`);
}

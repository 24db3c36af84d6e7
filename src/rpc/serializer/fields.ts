import { DkvError } from "../../errors.ts";
import type { FieldSpec, FieldValue, Message } from "../protocol/types.ts";

const utf8Encoder = new TextEncoder();

export function badBody(serializer: string, detail: string): DkvError {
  return new DkvError("BAD_FRAME", `cannot decode ${serializer} message body: ${detail}`);
}

export function asBytes(value: FieldValue): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8Encoder.encode(value);
  throw new DkvError("BAD_REQUEST", "expected bytes or a string");
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

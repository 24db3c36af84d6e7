import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody, coerce, recordsOf } from "./fields.ts";
import type { Serializer } from "./types.ts";

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** JSON objects keyed by field name; bytes as base64 and u64 as decimal strings, so both are exact. */
export class JsonSerializer implements Serializer {
  readonly name = "json";
  readonly id = serializerIds.json;

  write(schema: readonly FieldSpec[], message: Message, out: ByteWriter): void {
    out.bytes(utf8Encoder.encode(JSON.stringify(toObject(schema, message))));
  }

  read(schema: readonly FieldSpec[], body: Uint8Array): Message {
    let parsed: unknown;
    try {
      parsed = JSON.parse(utf8Decoder.decode(body));
    } catch (error) {
      throw badBody("json", error instanceof Error ? error.message : String(error));
    }
    return fromObject(schema, parsed);
  }
}

type JsonField = string | number | boolean | JsonObject[];
interface JsonObject {
  [name: string]: JsonField;
}

function toObject(schema: readonly FieldSpec[], message: Message): JsonObject {
  const object: JsonObject = {};
  for (const spec of schema) {
    const value = message[spec.name];
    if (value === undefined) continue;
    if (spec.type === "records")
      object[spec.name] = recordsOf(value).map((record) => toObject(spec.of!, record));
    else if (spec.type === "bytes" || spec.type === "optBytes") object[spec.name] = toBase64(asBytes(value));
    else if (typeof value === "bigint") object[spec.name] = value.toString();
    // JSON has no NaN or Infinity; send them as text so the server can refuse them by name.
    else if (typeof value === "number" && !Number.isFinite(value)) object[spec.name] = String(value);
    else object[spec.name] = value as string | number | boolean;
  }
  return object;
}

function fromObject(schema: readonly FieldSpec[], parsed: unknown): Message {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw badBody("json", "expected a JSON object");
  }
  const object = parsed as Record<string, unknown>;
  const message: Message = {};
  for (const spec of schema) {
    let value = object[spec.name];
    if (spec.type === "records") {
      if (!Array.isArray(value)) throw badBody("json", `field "${spec.name}" is not a list`);
      message[spec.name] = value.map((record: unknown) => fromObject(spec.of!, record));
      continue;
    }
    if ((spec.type === "bytes" || spec.type === "optBytes") && typeof value === "string") {
      value = fromBase64(value, spec.name);
    }
    message[spec.name] = coerce("json", spec, value);
  }
  return message;
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

export function fromBase64(text: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    throw badBody("json", `field "${field}" is not valid base64`);
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

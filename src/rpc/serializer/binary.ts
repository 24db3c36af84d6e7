import { decodeKeyRange } from "../../text.ts";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody, recordsOf } from "./fields.ts";
import type { Serializer } from "./types.ts";

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const noBytes = new Uint8Array(0);
const emptyMessage: Message = Object.freeze({});

/**
 * The default serializer: fields in schema order, little-endian, no names and no tags.
 * str/bytes: u32 length + bytes; opt*: u8 presence + value; num: f64; bool: u8; u64: u64;
 * records: u32 count + each record's fields in its schema's order.
 */
export class BinarySerializer implements Serializer {
  readonly name = "binary";
  readonly id = serializerIds.binary;

  write(schema: readonly FieldSpec[], message: Message, out: ByteWriter): void {
    for (const spec of schema) {
      const value = message[spec.name];
      switch (spec.type) {
        case "str":
          out.lengthPrefixedUtf8(value as string);
          break;
        case "optStr":
          if (value === undefined) out.u8(0);
          else {
            out.u8(1);
            out.lengthPrefixedUtf8(value as string);
          }
          break;
        case "bytes":
          writeBytes(out, value as Uint8Array | string);
          break;
        case "optBytes":
          if (value === undefined) out.u8(0);
          else {
            out.u8(1);
            writeBytes(out, value as Uint8Array | string);
          }
          break;
        case "num":
          out.f64(value as number);
          break;
        case "bool":
          out.u8(value ? 1 : 0);
          break;
        case "u64":
          out.u64(value as bigint);
          break;
        case "optU64":
          if (value === undefined) out.u8(0);
          else {
            out.u8(1);
            out.u64(value as bigint);
          }
          break;
        case "records": {
          const list = recordsOf(value);
          out.u32(list.length);
          for (const record of list) this.write(spec.of!, record, out);
          break;
        }
      }
    }
  }

  read(schema: readonly FieldSpec[], body: Uint8Array): Message {
    return this.decode(schema, body, 0, body.length);
  }

  /**
   * read() of the body src[start, end), with no view made of it. A body with no fields to
   * an empty schema reads as one shared frozen message (a caller must not add to it).
   */
  readAt(schema: readonly FieldSpec[], src: Uint8Array, start: number, end: number): Message {
    if (schema.length === 0 && start === end) return emptyMessage;
    return this.decode(schema, src, start, end);
  }

  /** One reader for every call: reads do not nest, and it holds no body between them. */
  private readonly reader = new FieldReader();

  private decode(schema: readonly FieldSpec[], src: Uint8Array, start: number, end: number): Message {
    const reader = this.reader;
    reader.body = src;
    reader.pos = start;
    reader.end = end;
    try {
      const message = reader.fields(schema);
      if (reader.pos !== end) throw badBody("binary", `${end - reader.pos} unexpected trailing bytes`);
      return message;
    } finally {
      reader.body = noBytes;
    }
  }
}

/** Scratch bytes for f64 and u64 fields: read off any array without a DataView over its buffer. */
const scratchBytes = new Uint8Array(8);
const scratchView = new DataView(scratchBytes.buffer);

/**
 * Reads a body's fields from its bytes, with no DataView over them (a small array's
 * `.buffer` is costly in JSC) and nothing allocated per field but its value.
 */
class FieldReader {
  body: Uint8Array = noBytes;
  pos = 0;
  /** Where the body ends in `body`. */
  end = 0;

  private need(bytes: number, name: string): void {
    if (this.pos + bytes > this.end) throw badBody("binary", `field "${name}" is truncated`);
  }

  private u32(): number {
    const b = this.body;
    const at = this.pos;
    this.pos = at + 4;
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  }

  private scratch8(): DataView {
    const b = this.body;
    const at = this.pos;
    for (let i = 0; i < 8; i++) scratchBytes[i] = b[at + i]!;
    this.pos = at + 8;
    return scratchView;
  }

  /** One message of `schema` from `pos` on. */
  fields(schema: readonly FieldSpec[]): Message {
    const body = this.body;
    const message: Message = {};
    for (const spec of schema) {
      let type = spec.type;
      if (type === "optStr" || type === "optBytes" || type === "optU64") {
        this.need(1, spec.name);
        if (body[this.pos++] === 0) {
          message[spec.name] = undefined;
          continue;
        }
        type = type === "optStr" ? "str" : type === "optBytes" ? "bytes" : "u64";
      }
      switch (type) {
        case "str":
        case "bytes": {
          this.need(4, spec.name);
          const length = this.u32();
          this.need(length, spec.name);
          const start = this.pos;
          const end = start + length;
          if (type === "bytes") message[spec.name] = body.slice(start, end);
          else {
            try {
              message[spec.name] = decodeKeyRange(utf8Decoder, body, start, end);
            } catch {
              throw badBody("binary", `field "${spec.name}" is not valid UTF-8`);
            }
          }
          this.pos = end;
          break;
        }
        case "num":
          this.need(8, spec.name);
          message[spec.name] = this.scratch8().getFloat64(0, true);
          break;
        case "bool":
          this.need(1, spec.name);
          message[spec.name] = body[this.pos++] !== 0;
          break;
        case "u64":
          this.need(8, spec.name);
          message[spec.name] = this.scratch8().getBigUint64(0, true);
          break;
        case "records": {
          this.need(4, spec.name);
          const count = this.u32();
          // Grows only as records are actually read, so a forged count cannot allocate.
          const list: Message[] = [];
          for (let i = 0; i < count; i++) {
            if (this.pos >= this.end && spec.of!.length > 0)
              throw badBody("binary", `field "${spec.name}" is truncated`);
            list.push(this.fields(spec.of!));
          }
          message[spec.name] = list;
          break;
        }
      }
    }
    return message;
  }
}

function writeBytes(out: ByteWriter, value: Uint8Array | string): void {
  if (typeof value === "string") {
    out.lengthPrefixedUtf8(value);
    return;
  }
  const bytes = asBytes(value);
  out.u32(bytes.length);
  out.bytes(bytes);
}

import { decodeRange } from "../../text.ts";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody, recordsOf } from "./fields.ts";
import type { Serializer } from "./types.ts";

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

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
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const [message, pos] = readFields(schema, body, view, 0);
    if (pos !== body.length) throw badBody("binary", `${body.length - pos} unexpected trailing bytes`);
    return message;
  }
}

/** Reads one message of `schema` starting at `start`; returns it and the position after it. */
function readFields(
  schema: readonly FieldSpec[],
  body: Uint8Array,
  view: DataView,
  start: number,
): [Message, number] {
  {
    const message: Message = {};
    let pos = start;
    const need = (bytes: number, name: string): void => {
      if (pos + bytes > body.length) throw badBody("binary", `field "${name}" is truncated`);
    };
    for (const spec of schema) {
      let type = spec.type;
      if (type === "optStr" || type === "optBytes" || type === "optU64") {
        need(1, spec.name);
        if (body[pos++] === 0) {
          message[spec.name] = undefined;
          continue;
        }
        type = type === "optStr" ? "str" : type === "optBytes" ? "bytes" : "u64";
      }
      switch (type) {
        case "str":
        case "bytes": {
          need(4, spec.name);
          const length = view.getUint32(pos, true);
          pos += 4;
          need(length, spec.name);
          const end = pos + length;
          if (type === "bytes") message[spec.name] = body.slice(pos, end);
          else {
            try {
              message[spec.name] = decodeRange(utf8Decoder, body, pos, end);
            } catch {
              throw badBody("binary", `field "${spec.name}" is not valid UTF-8`);
            }
          }
          pos = end;
          break;
        }
        case "num":
          need(8, spec.name);
          message[spec.name] = view.getFloat64(pos, true);
          pos += 8;
          break;
        case "bool":
          need(1, spec.name);
          message[spec.name] = body[pos++] !== 0;
          break;
        case "u64":
          need(8, spec.name);
          message[spec.name] = view.getBigUint64(pos, true);
          pos += 8;
          break;
        case "records": {
          need(4, spec.name);
          const count = view.getUint32(pos, true);
          pos += 4;
          // Grows only as records are actually read, so a forged count cannot allocate.
          const list: Message[] = [];
          for (let i = 0; i < count; i++) {
            if (pos >= body.length && spec.of!.length > 0)
              throw badBody("binary", `field "${spec.name}" is truncated`);
            const [record, next] = readFields(spec.of!, body, view, pos);
            list.push(record);
            pos = next;
          }
          message[spec.name] = list;
          break;
        }
      }
    }
    return [message, pos];
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

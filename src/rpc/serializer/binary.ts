import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody } from "./fields.ts";
import type { Serializer } from "./types.ts";

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * The default serializer: fields in schema order, little-endian, no names and no tags.
 * str/bytes: u32 length + bytes; opt*: u8 presence + value; num: f64; bool: u8; u64: u64.
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
      }
    }
  }

  read(schema: readonly FieldSpec[], body: Uint8Array): Message {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const message: Message = {};
    let pos = 0;
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
          const slice = body.subarray(pos, pos + length);
          pos += length;
          if (type === "bytes") message[spec.name] = slice.slice();
          else {
            try {
              message[spec.name] = utf8Decoder.decode(slice);
            } catch {
              throw badBody("binary", `field "${spec.name}" is not valid UTF-8`);
            }
          }
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
      }
    }
    if (pos !== body.length) throw badBody("binary", `${body.length - pos} unexpected trailing bytes`);
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

import { Packr } from "msgpackr";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type FieldValue, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody, coerce, recordsOf } from "./fields.ts";
import type { Serializer } from "./types.ts";

/** msgpackr: a message is an array of its fields in schema order; bigints are uint64. */
export class MsgpackSerializer implements Serializer {
  readonly name = "msgpack";
  readonly id = serializerIds.msgpack;
  private readonly packr = new Packr({
    useRecords: false,
    int64AsType: "bigint",
    copyBuffers: true,
    mapsAsObjects: true,
  });

  write(schema: readonly FieldSpec[], message: Message, out: ByteWriter): void {
    out.bytes(this.packr.pack(toArrays(schema, message)));
  }

  read(schema: readonly FieldSpec[], body: Uint8Array): Message {
    let decoded: unknown;
    try {
      decoded = this.packr.unpack(body);
    } catch (error) {
      throw badBody("msgpack", error instanceof Error ? error.message : String(error));
    }
    return fromArrays(schema, decoded);
  }
}

type Packed = FieldValue | null | Packed[];

/** A message as the array of its fields in schema order; records become arrays of such arrays. */
function toArrays(schema: readonly FieldSpec[], message: Message): Packed[] {
  // Absent optional fields travel as nil so the array keeps its shape.
  const fields: Packed[] = new Array(schema.length);
  for (let i = 0; i < schema.length; i++) {
    const spec = schema[i]!;
    const value = message[spec.name];
    if (value === undefined) fields[i] = null;
    else if (spec.type === "records")
      fields[i] = recordsOf(value).map((record) => toArrays(spec.of!, record));
    else fields[i] = spec.type === "bytes" || spec.type === "optBytes" ? asBytes(value) : value;
  }
  return fields;
}

function fromArrays(schema: readonly FieldSpec[], decoded: unknown): Message {
  if (!Array.isArray(decoded) || decoded.length !== schema.length) {
    throw badBody("msgpack", `expected an array of ${schema.length} fields`);
  }
  const message: Message = {};
  for (let i = 0; i < schema.length; i++) {
    const spec = schema[i]!;
    const value: unknown = decoded[i];
    if (spec.type === "records") {
      if (!Array.isArray(value)) throw badBody("msgpack", `field "${spec.name}" is not a list`);
      message[spec.name] = value.map((record: unknown) => fromArrays(spec.of!, record));
    } else {
      message[spec.name] = coerce("msgpack", spec, value);
    }
  }
  return message;
}

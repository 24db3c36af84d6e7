import { Packr } from "msgpackr";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import { type FieldSpec, type FieldValue, type Message, serializerIds } from "../protocol/types.ts";
import { asBytes, badBody, coerce } from "./fields.ts";
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
    // Absent optional fields travel as nil so the array keeps its shape.
    const fields: (FieldValue | null)[] = new Array(schema.length);
    for (let i = 0; i < schema.length; i++) {
      const spec = schema[i]!;
      const value = message[spec.name];
      if (value === undefined) fields[i] = null;
      else fields[i] = spec.type === "bytes" || spec.type === "optBytes" ? asBytes(value) : value;
    }
    out.bytes(this.packr.pack(fields));
  }

  read(schema: readonly FieldSpec[], body: Uint8Array): Message {
    let decoded: unknown;
    try {
      decoded = this.packr.unpack(body);
    } catch (error) {
      throw badBody("msgpack", error instanceof Error ? error.message : String(error));
    }
    if (!Array.isArray(decoded) || decoded.length !== schema.length) {
      throw badBody("msgpack", `expected an array of ${schema.length} fields`);
    }
    const message: Message = {};
    for (let i = 0; i < schema.length; i++) {
      const spec = schema[i]!;
      message[spec.name] = coerce("msgpack", spec, decoded[i]);
    }
    return message;
  }
}

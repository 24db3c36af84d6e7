import type { ByteWriter } from "../protocol/byte-writer.ts";
import type { FieldSpec, Message, SerializerName } from "../protocol/types.ts";

/**
 * Encodes and decodes message bodies following a schema (protocol/types.ts). Decoding
 * copies everything it returns, because the body is a view into a reused receive buffer,
 * and throws DkvError BAD_FRAME on a body that does not match the schema.
 */
export interface Serializer {
  readonly name: SerializerName;
  /** The id carried in every frame header. */
  readonly id: number;
  write(schema: readonly FieldSpec[], message: Message, out: ByteWriter): void;
  read(schema: readonly FieldSpec[], body: Uint8Array): Message;
  /**
   * read() of the body src[start, end) without a view of it (a hot path's saving); the
   * message it returns for an empty schema may be shared and frozen. Optional.
   */
  readAt?(schema: readonly FieldSpec[], src: Uint8Array, start: number, end: number): Message;
}

import { describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { responseSchemas } from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/binary.ts";

const binary = new BinarySerializer();
const getSchema = responseSchemas.get;

/** A get reply's body between other bytes, as a socket chunk holds several frames. */
function embedded(value: Uint8Array | undefined): { src: Uint8Array; start: number; end: number } {
  const out = new ByteWriter(16);
  out.bytes(Uint8Array.of(9, 9, 9));
  const start = out.length;
  binary.write(getSchema, { value, version: 3, createRevision: 1, modRevision: 7 }, out);
  const end = out.length;
  out.bytes(Uint8Array.of(0xff, 0, 0, 0, 0xff)); // what follows: not part of the body
  return { src: out.written().slice(), start, end };
}

describe("BinarySerializer.readAt", () => {
  test("reads a body in the middle of a chunk as read() reads the same bytes on their own", () => {
    const value = Uint8Array.from({ length: 200 }, (_, i) => i);
    const { src, start, end } = embedded(value);
    const at = binary.readAt(getSchema, src, start, end);
    expect(at).toEqual(binary.read(getSchema, src.slice(start, end)));
    expect(at.value).toEqual(value);
    expect(at.modRevision).toBe(7);
    // The value is a copy: the chunk may be reused once the call returns.
    src.fill(0);
    expect(at.value).toEqual(value);
  });

  test("a field that runs past the body's end is truncated, even with bytes after it in the chunk", () => {
    const { src, start, end } = embedded(new Uint8Array(40));
    expect(() => binary.readAt(getSchema, src, start, end - 1)).toThrow(DkvError);
    expect(() => binary.readAt(getSchema, src, start, end - 1)).toThrow(/truncated/);
    expect(() => binary.readAt(getSchema, src, start, end + 1)).toThrow(/trailing/);
  });

  test("an empty body of an empty schema reads as one shared frozen message; read() still makes its own", () => {
    const chunk = Uint8Array.of(1, 2, 3);
    const a = binary.readAt([], chunk, 1, 1);
    expect(a).toEqual({});
    expect(Object.isFrozen(a)).toBe(true);
    expect(binary.readAt([], chunk, 2, 2)).toBe(a);
    const own = binary.read([], new Uint8Array(0));
    expect(own).not.toBe(a);
    expect(Object.isFrozen(own)).toBe(false);
  });
});

describe("ByteWriter.lengthPrefixedUtf8", () => {
  const utf8 = new TextDecoder();
  const cases = [
    "",
    "k",
    "__dkv_perf/abcd1234/set/999",
    "ascii then ключ",
    "é",
    "x".repeat(64),
    `${"x".repeat(63)}é`,
    "🔑".repeat(40),
    "y".repeat(500),
  ];
  for (const text of cases) {
    test(`writes ${JSON.stringify(text.slice(0, 24))}${text.length > 24 ? "…" : ""} (${text.length} code units) as its UTF-8 with a byte length`, () => {
      const out = new ByteWriter(8);
      out.u8(0xaa);
      out.lengthPrefixedUtf8(text);
      out.u8(0xbb);
      const bytes = out.written();
      const expected = new TextEncoder().encode(text);
      const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1, true);
      expect(length).toBe(expected.length);
      expect(utf8.decode(bytes.subarray(5, 5 + length))).toBe(text);
      expect(bytes[5 + length]).toBe(0xbb);
      expect(bytes.length).toBe(1 + 4 + expected.length + 1);
    });
  }
});

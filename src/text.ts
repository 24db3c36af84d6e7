/** Short ranges are copied into a scratch buffer to be decoded; longer ones through a subarray. */
const SCRATCH_BYTES = 128;
const scratch = new ArrayBuffer(SCRATCH_BYTES);
const scratchBytes = new Uint8Array(scratch);

/**
 * `decoder.decode(bytes.subarray(start, end))` for the keys parsed per request, without
 * the subarray: a subarray of a small array makes JSC move that array's bytes out of its
 * heap first, which costs more than copying a key into a scratch buffer whose ArrayBuffer
 * exists already. Throws what the decoder throws (a fatal one: TypeError on bad UTF-8).
 */
export function decodeRange(decoder: TextDecoder, bytes: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length > SCRATCH_BYTES) return decoder.decode(bytes.subarray(start, end));
  for (let i = 0; i < length; i++) scratchBytes[i] = bytes[start + i]!;
  return decoder.decode(new Uint8Array(scratch, 0, length));
}

/**
 * Bun's native ASCII decoder of a byte range (`Buffer.prototype.asciiSlice`, untyped): it
 * works on any Uint8Array and makes the string alone, no view of the bytes.
 */
const asciiSlice = (
  Buffer.prototype as unknown as { asciiSlice?: (this: Uint8Array, start: number, end: number) => string }
).asciiSlice;

/**
 * decodeRange for a key: an all-ASCII range (the common key) becomes its string with no
 * array made on the way and ~4× faster; any other range goes through `decoder` (a fatal
 * one throws on bad UTF-8, as decodeRange does). ASCII bytes decode alike either way.
 */
export function decodeKeyRange(decoder: TextDecoder, bytes: Uint8Array, start: number, end: number): string {
  if (asciiSlice === undefined) return decodeRange(decoder, bytes, start, end);
  for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return decodeRange(decoder, bytes, start, end);
  return asciiSlice.call(bytes, start, end);
}

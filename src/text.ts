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

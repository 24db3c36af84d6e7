/** Short keys are decoded by hand below this many bytes; longer ones by TextDecoder. */
const ASCII_FAST_BYTES_MAX = 128;

/**
 * `bytes[start, end)` as a string when every byte is ASCII (then UTF-8 and Latin-1 agree)
 * and the range is short; undefined otherwise (decode it with a TextDecoder). For keys
 * parsed per request: a TextDecoder needs a subarray, and a subarray of a small array
 * makes JSC move that array's bytes out of its heap first.
 */
export function shortAscii(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (end - start > ASCII_FAST_BYTES_MAX) return undefined;
  let text = "";
  for (let i = start; i < end; i++) {
    const code = bytes[i]!;
    if (code >= 0x80) return undefined;
    text += String.fromCharCode(code);
  }
  return text;
}

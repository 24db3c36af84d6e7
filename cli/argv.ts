import { DkvError } from "../src/errors.ts";

/**
 * Bun decodes the process's arguments as UTF-8 with U+FFFD for invalid bytes, so
 * `dkv kv set $'\xff' a` and `dkv kv set $'\xfe' b` would both write the key "\uFFFD".
 * An argument holding U+FFFD is checked against its raw bytes (Linux: /proc/self/cmdline):
 * invalid UTF-8 is a usage error; a real U+FFFD (bytes EF BF BD) is fine. Where the raw
 * bytes cannot be read (no /proc) the decoded argument is used as it is (README).
 */
const REPLACEMENT = "\uFFFD";
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The process's raw arguments from /proc/self/cmdline (NUL-separated), or undefined without /proc. */
export function rawProcessArguments(): Uint8Array[] | undefined {
  const { readFileSync } = require("node:fs") as typeof import("node:fs");
  let bytes: Uint8Array;
  try {
    bytes = readFileSync("/proc/self/cmdline");
  } catch {
    return undefined; // no /proc here (macOS, a sandbox): the documented limitation
  }
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0) {
      parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < bytes.length) parts.push(bytes.subarray(start));
  return parts;
}

function escapeBytes(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) {
    text +=
      byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return text;
}

/**
 * Throws a USAGE error naming the first of `args` (the arguments after the program) that
 * was not valid UTF-8 on the command line. `raw` is every argument of the process as
 * bytes, its tail matching `args`; `undefined` (unknown) checks nothing.
 */
export function checkArgumentsUtf8(args: readonly string[], raw: () => Uint8Array[] | undefined): void {
  if (!args.some((arg) => arg.includes(REPLACEMENT))) return;
  const all = raw();
  if (all === undefined || all.length < args.length) return;
  const offset = all.length - args.length;
  for (const [index, arg] of args.entries()) {
    if (!arg.includes(REPLACEMENT)) continue;
    const bytes = all[offset + index]!;
    try {
      strictUtf8.decode(bytes);
    } catch {
      throw new DkvError(
        "USAGE",
        `argument ${index + 1} ("${escapeBytes(bytes)}") is not valid UTF-8: keys, values and flags on the command line are text. ` +
          "For a value of raw bytes, give '-' and pass the bytes on stdin (dkv kv set KEY - < FILE) or give them as --base64 text.",
      );
    }
  }
}

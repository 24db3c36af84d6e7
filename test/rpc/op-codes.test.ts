import { describe, expect, test } from "bun:test";
import { authenticateOpCode, streamOpCodes, wireOpCodes } from "../../src/rpc/protocol/types.ts";

describe("wire op codes", () => {
  test("every op, streamed op and the token frame has a code of its own", () => {
    const codes = [...Object.values(wireOpCodes), ...Object.values(streamOpCodes), authenticateOpCode];
    // Two features that picked the same code would dispatch one's requests to the other.
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(Number.isInteger(code) && code > 0 && code <= 0xffff).toBe(true);
    expect(streamOpCodes.watch).toBe(51);
    expect(streamOpCodes.watchCancel).toBe(52);
  });
});

import { describe, expect, test } from "bun:test";
import { type Command, decodeCommand, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { RequestTable, resolveDedupOptions } from "../../src/store/replicated/request-table.ts";
import { shortAscii } from "../../src/text.ts";

const clientId = (fill: number) => new Uint8Array(16).fill(fill);

function roundTrip(command: Command): Command {
  return decodeCommand(encodeCommand(command));
}

describe("dstore command codec", () => {
  test("ASCII, non-ASCII and long keys survive encode and decode with their values and origin", () => {
    const value = new Uint8Array([0, 1, 2, 255]);
    for (const key of ["k", "ключ/é", "😀 emoji", "a".repeat(129), `${"x".repeat(127)}é`]) {
      const decoded = roundTrip({
        op: Op.SetE,
        key,
        value,
        expireInMs: 1500,
        deleteInMs: 2 ** 40,
        origin: { clientId: clientId(9), requestId: 2 ** 50 + 3 },
      });
      expect(decoded.key).toBe(key);
      expect([...decoded.value]).toEqual([...value]);
      expect(decoded.expireInMs).toBe(1500);
      expect(decoded.deleteInMs).toBe(2 ** 40);
      expect([...decoded.origin!.clientId]).toEqual([...clientId(9)]);
      expect(decoded.origin!.requestId).toBe(2 ** 50 + 3);
    }
  });

  test("a key that is not UTF-8 is refused as BAD_REQUEST", () => {
    const data = encodeCommand({
      op: Op.Set,
      key: "ab",
      value: new Uint8Array(0),
      expireInMs: 0,
      deleteInMs: 0,
      origin: undefined,
    });
    data[28] = 0xff;
    expect(() => decodeCommand(data)).toThrow(/not valid UTF-8/);
  });

  test("shortAscii leaves non-ASCII and long ranges to the decoder", () => {
    const bytes = new TextEncoder().encode("abc\u00e9");
    expect(shortAscii(bytes, 0, 3)).toBe("abc");
    expect(shortAscii(bytes, 0, bytes.length)).toBeUndefined();
    expect(shortAscii(new Uint8Array(129).fill(0x61), 0, 129)).toBeUndefined();
  });
});

describe("RequestTable client keys", () => {
  test("alternating clients and equal ids in different arrays find their own entries", () => {
    const table = new RequestTable(resolveDedupOptions());
    const result = new Uint8Array([1]);
    table.remember(clientId(1), 1, result, 0);
    table.remember(clientId(2), 1, new Uint8Array(0), 0);
    const mutable = clientId(1);
    expect(table.get(mutable, 1)).toEqual(result);
    // The same array, changed in place, is another client.
    mutable.fill(2);
    expect(table.get(mutable, 1)).toEqual(new Uint8Array(0));
    mutable.fill(3);
    expect(table.get(mutable, 1)).toBeUndefined();
    expect(table.get(clientId(1), 1)).toEqual(result);
  });
});

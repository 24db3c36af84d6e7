import { describe, expect, test } from "bun:test";
import { type Command, decodeCommand, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { RequestTable } from "../../src/store/replicated/request-table.ts";
import { resolveDedupOptions } from "../../src/store/replicated/request-table-options.ts";
import { decodeRange } from "../../src/text.ts";

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

  test("decodeRange decodes short and long ranges alike and throws on bad UTF-8", () => {
    const fatal = new TextDecoder("utf-8", { fatal: true });
    const text = `é${"x".repeat(200)}`;
    const bytes = new TextEncoder().encode(`ab${text}`);
    expect(decodeRange(fatal, bytes, 2, 4)).toBe("é");
    expect(decodeRange(fatal, bytes, 2, bytes.length)).toBe(text);
    expect(() => decodeRange(fatal, bytes, 2, 3)).toThrow();
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

import { afterAll, describe, expect, test } from "bun:test";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { responseSchemas } from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/binary.ts";
import { type Stack, serializers, startStack, storeShard, transports } from "./harness.ts";

// review25: attacks on the client's per-request allocation cuts (64fb8ff, 0ab4177).

describe("review25 ByteWriter strings", () => {
  const encoder = new TextEncoder();
  const cases = [
    "",
    "a",
    "a".repeat(63),
    "a".repeat(64),
    "a".repeat(65),
    "\u007f".repeat(64),
    `${"a".repeat(63)}é`,
    `${"a".repeat(10)}\u0080`,
    "\ud800", // lone high surrogate
    "a\udc00b", // lone low surrogate
    "😀".repeat(32), // 64 code units, all surrogate pairs
    `k${"\u0000".repeat(5)}`,
    "日本語のキー",
  ];
  for (const s of cases) {
    test(`lengthPrefixedUtf8 writes what encodeInto would: ${JSON.stringify(s).slice(0, 30)}`, () => {
      const out = new ByteWriter(4); // grows on the way
      out.u8(0xee);
      out.lengthPrefixedUtf8(s);
      out.u8(0xef);
      const expected = encoder.encode(s);
      const written = out.written();
      expect(written[0]).toBe(0xee);
      expect(new DataView(written.buffer, written.byteOffset).getUint32(1, true)).toBe(expected.length);
      expect(written.slice(5, 5 + expected.length)).toEqual(expected);
      expect(written[5 + expected.length]).toBe(0xef);
      expect(written.length).toBe(6 + expected.length);
    });
  }
  test("an ASCII try that fails leaves no stale byte past the real UTF-8 (reused buffer)", () => {
    const out = new ByteWriter(256);
    out.lengthPrefixedUtf8("z".repeat(64));
    out.reset();
    // 63 ASCII then one 2-byte char: the ASCII copy wrote 63 bytes then gave up.
    const s = `${"q".repeat(63)}ß`;
    out.lengthPrefixedUtf8(s);
    expect(out.written().slice(4)).toEqual(encoder.encode(s));
  });
});

describe("review25 BinarySerializer reader reuse", () => {
  const binary = new BinarySerializer();
  test("a read that throws leaves the shared reader fit for the next read", () => {
    const out = new ByteWriter();
    binary.write(
      responseSchemas.get,
      { value: Uint8Array.of(1, 2, 3), version: 1, createRevision: 1, modRevision: 2 },
      out,
    );
    const good = out.written().slice();
    expect(() => binary.readAt(responseSchemas.get, good, 0, good.length - 1)).toThrow();
    expect(() => binary.read(responseSchemas.list, Uint8Array.of(5, 0, 0, 0))).toThrow();
    expect(binary.read(responseSchemas.get, good).value).toEqual(Uint8Array.of(1, 2, 3));
    const padded = new Uint8Array(good.length + 10);
    padded.set(good, 5);
    expect(binary.readAt(responseSchemas.get, padded, 5, 5 + good.length).modRevision).toBe(2);
  });
  test("readAt stops at end: a length reaching past it is truncated even if src goes on", () => {
    const out = new ByteWriter();
    binary.write(
      responseSchemas.list,
      {
        items: [{ key: "k", value: Uint8Array.of(7), version: 1, createRevision: 1, modRevision: 1 }],
        more: false,
        next: undefined,
      },
      out,
    );
    const body = out.written().slice();
    const src = new Uint8Array(body.length + 64).fill(1);
    src.set(body, 0);
    for (let cut = 0; cut < body.length; cut++)
      expect(() => binary.readAt(responseSchemas.list, src, 0, cut)).toThrow();
    expect(binary.readAt(responseSchemas.list, src, 0, body.length).items).toHaveLength(1);
  });
});

describe("review25 client replies over a real connection", () => {
  const stacks: Stack[] = [];
  afterAll(async () => {
    for (const s of stacks) await s.close();
  });

  for (const transport of transports) {
    for (const serializer of serializers) {
      test(`${transport}/${serializer}: values, list pages and txn results own their bytes; call() results are plain objects`, async () => {
        const stack = await startStack(transport, serializer);
        stacks.push(stack);
        const store = stack.client.store(storeShard);
        const n = 200;
        const valueAt = (i: number) =>
          Uint8Array.from({ length: 16 + (i % 50) }, (_, j) => (i * 31 + j) & 0xff);
        await Promise.all(Array.from({ length: n }, (_, i) => store.set(`k${i}`, valueAt(i))));
        // Pipelined: many replies arrive in one chunk.
        const gets = await Promise.all(Array.from({ length: n }, (_, i) => store.get(`k${i}`)));
        const entries = await Promise.all(Array.from({ length: 20 }, (_, i) => store.getEntry(`k${i}`)));
        const page = await store.list({ prefix: "k", limit: 50 });
        const txn = await store.txn({
          compare: [],
          success: [
            { op: "get", key: "k1" },
            { op: "get", key: "k2" },
          ],
          failure: [],
        });
        // More traffic through the same connection and buffers.
        await Promise.all(
          Array.from({ length: n }, (_, i) => store.set(`k${i}`, new Uint8Array(66).fill(0xab))),
        );
        await Promise.all(Array.from({ length: n }, (_, i) => store.get(`k${i}`)));
        for (let i = 0; i < n; i++) expect(gets[i]).toEqual(valueAt(i));
        for (let i = 0; i < 20; i++) expect(entries[i]!.value).toEqual(valueAt(i));
        for (const item of page.items) expect(item.value).toEqual(valueAt(Number(item.key.slice(1))));
        const results = txn.results as { value?: Uint8Array }[];
        expect(results[0]!.value).toEqual(valueAt(1));
        expect(results[1]!.value).toEqual(valueAt(2));
        // A caller of the public call() gets a response of its own, whatever the serializer.
        const a = (await stack.client.call(storeShard, "set", { key: "x", value: "1" })) as Record<
          string,
          unknown
        >;
        const b = (await stack.client.call(storeShard, "delete", { key: "x" })) as Record<string, unknown>;
        expect(a).not.toBe(b);
        a.note = "mine";
        expect(a.note).toBe("mine");
        expect(b).toEqual({});
        await stack.close();
        stacks.splice(stacks.indexOf(stack), 1);
      });
    }
  }
});

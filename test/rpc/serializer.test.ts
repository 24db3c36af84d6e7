import { describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import {
  type Message,
  type OpName,
  opNames,
  type Requests,
  type Responses,
  requestSchemas,
  responseSchemas,
} from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { serializers } from "./harness.ts";

const utf8 = new TextEncoder();
const oneMiB = Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31) & 0xff);
const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
const keys = ["k", "ключ-🔑-鍵", "", "a".repeat(10_000)];
const values: Uint8Array[] = [new Uint8Array(0), allBytes, oneMiB];
const tokens = [0n, 1n, 2n ** 53n + 1n, 1_700_000_000_000_000_000n, 2n ** 64n - 1n];

/** Sample requests of every op, covering the awkward values. */
function requestSamples(op: OpName): Requests[OpName][] {
  const times = [0, 1, 86_400_000, 2 ** 52];
  const samples: Requests[OpName][] = [];
  for (const key of keys) {
    const value = values[samples.length % values.length]!;
    const t = times[samples.length % times.length]!;
    switch (op) {
      case "set":
        samples.push({ key, value });
        break;
      case "setE":
      case "setEIfUnset":
      case "claim":
        samples.push({ key, value, expireInMs: t, deleteInMs: t * 2 });
        break;
      case "get":
      case "has":
      case "expire":
      case "delete":
        samples.push({ key });
        break;
      case "info":
        samples.push({});
        break;
      case "deleteIfEquals":
        samples.push({ key, expected: value });
        break;
      case "renewIfEquals":
        samples.push({ key, expected: value, expireInMs: t, deleteInMs: 0 });
        break;
      case "acquire":
        samples.push({ key, ttlMs: t, waitMs: 250 });
        break;
      case "release":
        samples.push({ key, ownerId: "0123456789abcdef0123456789abcdef" });
        break;
      case "refresh":
        samples.push({ key, ownerId: "ff".repeat(16), ttlMs: t });
        break;
      case "watchLost":
        samples.push({ key, ownerId: "ff".repeat(16), waitMs: t });
        break;
      case "list":
        samples.push({ prefix: key, from: undefined, to: undefined, after: key, limit: t, keysOnly: false });
        samples.push({ prefix: undefined, from: "", to: key, after: undefined, limit: 0, keysOnly: true });
        break;
      case "count":
        samples.push({ prefix: undefined, from: key, to: undefined });
        break;
      case "txn":
        samples.push({
          compare: [
            { key, target: "value", op: "==", value, number: 0 },
            { key, target: "version", op: ">", value: undefined, number: 2 ** 53 - 1 },
          ],
          success: [
            { op: "set", key, value, expireInMs: 0, deleteInMs: 0 },
            { op: "get", key, value: undefined, expireInMs: 0, deleteInMs: 0 },
          ],
          failure: [],
        });
        break;
    }
  }
  return samples;
}

function responseSamples(op: OpName): Responses[OpName][] {
  switch (op) {
    case "set":
    case "setE":
    case "expire":
    case "delete":
      return [{}];
    case "setEIfUnset":
      return [{ written: true }, { written: false }];
    case "get":
      return [
        { value: undefined, version: 0, createRevision: 0, modRevision: 0 },
        ...values.map((value, i) => ({
          value,
          version: i + 1,
          createRevision: 2 ** 53 - 1,
          modRevision: 2 ** 53 - 1,
        })),
      ];
    case "has":
      return [{ found: true }, { found: false }];
    case "info":
      return [{ kind: "lstore", keys: 1_000_000, keysWithDeadline: 3, approxBytes: 2 ** 40, shards: 64 }];
    case "claim":
      return [{ written: false, revision: 0n }, ...tokens.map((revision) => ({ written: true, revision }))];
    case "deleteIfEquals":
    case "renewIfEquals":
      return [{ ok: true }, { ok: false }];
    case "acquire":
      return [
        { acquired: false, ownerId: undefined, fencingToken: undefined },
        ...tokens.map((fencingToken) => ({ acquired: true, ownerId: "ab".repeat(16), fencingToken })),
      ];
    case "release":
      return [{ released: true }, { released: false }];
    case "refresh":
      return [{ refreshed: true }, { refreshed: false }];
    case "watchLost":
      return ["released", "expired", "lost", "held"].map((reason) => ({ reason }));
    case "list":
      return [
        { items: [], more: false, next: undefined },
        {
          items: keys.map((key, i) => ({
            key,
            value: i % 2 === 0 ? values[i % values.length] : undefined,
            version: i + 1,
            createRevision: i,
            modRevision: 2 ** 53 - 1,
          })),
          more: true,
          next: keys[keys.length - 1],
        },
      ];
    case "count":
      return [{ count: 0 }, { count: 1_000_000 }];
    case "txn":
      return [
        { succeeded: false, revision: 0, results: [] },
        {
          succeeded: true,
          revision: 2 ** 53 - 1,
          results: keys.map((key, i) => ({
            op: i % 2 === 0 ? "get" : "set",
            key,
            found: i % 2 === 0,
            value: i % 2 === 0 ? values[i % values.length] : undefined,
            version: i,
            createRevision: i,
            modRevision: i,
          })),
        },
      ];
  }
}

function roundTrip(
  name: (typeof serializers)[number],
  schema: Parameters<ReturnType<typeof createSerializer>["write"]>[0],
  message: Message,
): Message {
  const serializer = createSerializer(name);
  const out = new ByteWriter(64);
  out.u8(0xee); // a prefix, so decoding from a non-zero offset is exercised
  serializer.write(schema, message, out);
  const copy = out.written().slice();
  const decoded = serializer.read(schema, copy.subarray(1));
  copy.fill(0); // decoded values must not alias the receive buffer
  return decoded;
}

/** Messages as decoded: string values arrive as bytes, absent optionals as undefined. */
function normalised(schema: readonly { name: string; type: string }[], message: Message): Message {
  const result: Message = {};
  for (const spec of schema) {
    const value = message[spec.name];
    result[spec.name] = typeof value === "string" && spec.type.endsWith("ytes") ? utf8.encode(value) : value;
  }
  return result;
}

for (const name of serializers) {
  describe(`${name} serializer`, () => {
    for (const op of opNames) {
      test(`round-trips every ${op} request and response`, () => {
        for (const request of requestSamples(op)) {
          const message = request as unknown as Message;
          expect(roundTrip(name, requestSchemas[op], message)).toEqual(
            normalised(requestSchemas[op], message),
          );
        }
        for (const response of responseSamples(op)) {
          const message = response as unknown as Message;
          expect(roundTrip(name, responseSchemas[op], message)).toEqual(
            normalised(responseSchemas[op], message),
          );
        }
      });
    }

    test("a string value is sent as its UTF-8 bytes", () => {
      const decoded = roundTrip(name, requestSchemas.set, { key: "k", value: "héllo ✓" });
      expect(decoded.value).toEqual(utf8.encode("héllo ✓"));
    });

    test("fencing tokens keep every bit, beyond 2^53", () => {
      const revision = 2n ** 64n - 3n;
      expect(roundTrip(name, responseSchemas.claim, { written: true, revision }).revision).toBe(revision);
    });

    test("a truncated or garbage body is refused with BAD_FRAME", () => {
      const serializer = createSerializer(name);
      const out = new ByteWriter();
      serializer.write(requestSchemas.set, { key: "key", value: allBytes }, out);
      const bytes = out.written().slice();
      for (const broken of [
        bytes.subarray(0, bytes.length - 1),
        new Uint8Array([0xc1, 0xff, 0x00]),
        new Uint8Array(0),
      ]) {
        let caught: unknown;
        try {
          serializer.read(requestSchemas.set, broken);
        } catch (error) {
          caught = error;
        }
        expect(caught).toBeInstanceOf(DkvError);
        expect((caught as DkvError).code).toBe("BAD_FRAME");
      }
    });
  });
}

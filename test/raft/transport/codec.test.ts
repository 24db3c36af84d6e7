import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type Entry, EntryKind, type Message, MessageType } from "../../../src/raft/core/types.ts";
import {
  finishFrame,
  PayloadReader,
  StringCache,
  transportProtocolVersion,
} from "../../../src/raft/transport/codec.ts";
import {
  ByteQueue,
  type DecodedFrame,
  decodeFramePayload,
  encodeHandshake,
  encodeHostFrame,
  encodeRaftFrame,
  FrameKind,
  FrameSplitter,
  frameHeaderBytes,
  WireError,
} from "../../../src/raft/transport/index.ts";

const safeNat = fc.oneof(
  fc.nat({ max: 300 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  // 2 ** 28 - 1 and 2 ** 28: the last varint of the int32 path and the first of the long one.
  fc.constantFrom(
    0,
    127,
    128,
    16383,
    16384,
    2 ** 28 - 1,
    2 ** 28,
    2 ** 31,
    2 ** 32,
    2 ** 35 - 1,
    Number.MAX_SAFE_INTEGER,
  ),
);
const nodeId = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 60 }));
const bytes = fc.uint8Array({ maxLength: 300 });

const entry: fc.Arbitrary<Entry> = fc.record({
  term: safeNat,
  index: safeNat,
  kind: fc.constantFrom(EntryKind.Normal, EntryKind.ConfChange, EntryKind.Noop),
  timeMs: safeNat,
  data: bytes,
});

const message: fc.Arbitrary<Message> = fc
  .record(
    {
      type: fc.constantFrom(...Object.values(MessageType)),
      from: nodeId,
      to: nodeId,
      term: safeNat,
      logTerm: safeNat,
      index: safeNat,
      entries: fc.array(entry, { maxLength: 5 }),
      commit: safeNat,
      reject: fc.boolean(),
      rejectHint: safeNat,
      rejectHintTerm: safeNat,
      snapshot: fc.record({
        meta: fc.record({
          index: safeNat,
          term: safeNat,
          timeMs: safeNat,
          conf: fc.record({
            voters: fc.array(nodeId, { maxLength: 5 }),
            learners: fc.array(nodeId, { maxLength: 3 }),
          }),
        }),
        data: bytes,
      }),
      context: fc.string({ maxLength: 80 }),
      timeMs: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    },
    {
      requiredKeys: [
        "type",
        "from",
        "to",
        "term",
        "logTerm",
        "index",
        "entries",
        "commit",
        "reject",
        "rejectHint",
        "rejectHintTerm",
      ],
    },
  )
  .map((m) => m as Message);

/** Feeds `stream` to a splitter in the given chunk sizes; returns the decoded frames. */
function split(stream: Uint8Array, chunkSizes: number[], maxPayloadBytes = 1 << 20): DecodedFrame[] {
  const frames: DecodedFrame[] = [];
  // As an inbound connection decodes: member ids through its string cache.
  const strings = new StringCache();
  const splitter = new FrameSplitter(maxPayloadBytes, (payload, start, end) => {
    frames.push(decodeFramePayload(payload, start, end, strings));
    return null;
  });
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const size = Math.max(1, chunkSizes.length === 0 ? stream.length : chunkSizes[i % chunkSizes.length]!);
    // A copy per chunk, as a socket would hand over fresh buffers.
    expect(splitter.push(stream.slice(at, at + size))).toBeNull();
    at += size;
  }
  expect(splitter.bufferedBytes).toBe(0);
  return frames;
}

describe("message codec", () => {
  test("raft frames round-trip through any chunking of the stream", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ groupId: safeNat, message }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 8 }),
        (sends, chunkSizes) => {
          const out = new ByteQueue(64); // small, so encoding exercises growth
          for (const { groupId, message: m } of sends) finishFrame(out, encodeRaftFrame(out, groupId, m));
          const frames = split(out.pending().slice(), chunkSizes);
          expect(frames).toEqual(
            sends.map(({ groupId, message: m }) => ({ kind: FrameKind.Raft, groupId, message: m })),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a heartbeat is compact", () => {
    const out = new ByteQueue();
    const m: Message = {
      type: MessageType.Heartbeat,
      from: "n1",
      to: "n2",
      term: 7,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 1234,
      reject: false,
      rejectHint: 0,
      rejectHintTerm: 0,
      context: "r1",
    };
    finishFrame(out, encodeRaftFrame(out, 3, m));
    expect(out.pendingBytes).toBeLessThanOrEqual(frameHeaderBytes + 24);
  });

  test("handshake and host frames round-trip", () => {
    const out = new ByteQueue();
    encodeHandshake(out, { clusterId: "c", from: "a", to: "b" });
    const payload = new Uint8Array([1, 2, 3, 0, 255]);
    finishFrame(out, encodeHostFrame(out, payload));
    const frames = split(out.pending().slice(), [3]);
    expect(frames).toEqual([
      {
        kind: FrameKind.Handshake,
        handshake: { version: transportProtocolVersion, clusterId: "c", from: "a", to: "b" },
      },
      { kind: FrameKind.Host, payload },
    ]);
  });

  test("a negative or fractional number is refused at encoding (a programmer error)", () => {
    const out = new ByteQueue();
    const m: Message = {
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: -1,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      rejectHintTerm: 0,
    };
    expect(() => encodeRaftFrame(out, 0, m)).toThrow(RangeError);
    expect(() => encodeRaftFrame(out, 0, { ...m, term: 1.5 })).toThrow(RangeError);
    expect(() => encodeRaftFrame(out, 0, { ...m, term: 2 ** 28 + 0.5 })).toThrow(RangeError);
    expect(() => encodeRaftFrame(out, 0, { ...m, term: 2 ** 53 })).toThrow(RangeError);
    expect(() => encodeRaftFrame(out, 0, { ...m, term: Number.NaN })).toThrow(RangeError);
  });
});

describe("garbage rejection", () => {
  test("random payloads decode or raise WireError, never anything else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (payload) => {
        try {
          decodeFramePayload(payload);
        } catch (error) {
          expect(error).toBeInstanceOf(WireError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("every truncation of a valid payload raises WireError", () => {
    const out = new ByteQueue();
    const m: Message = {
      type: MessageType.Append,
      from: "leader",
      to: "follower",
      term: 5,
      logTerm: 4,
      index: 100,
      entries: [
        { term: 5, index: 101, kind: EntryKind.Normal, timeMs: 1_700_000_000_000, data: new Uint8Array(10) },
      ],
      commit: 99,
      reject: false,
      rejectHint: 0,
      rejectHintTerm: 0,
      context: "x",
    };
    finishFrame(out, encodeRaftFrame(out, 1, m));
    const payload = out.pending().slice(frameHeaderBytes);
    for (let n = 1; n < payload.length; n++) {
      expect(() => decodeFramePayload(payload.subarray(0, n))).toThrow(WireError);
    }
  });

  test("a forged entry count is refused before any allocation", () => {
    // kind Raft, group 0, Append, no flags, two empty ids, six zero numbers, then count 2^40.
    const payload = new Uint8Array([FrameKind.Raft, 0, MessageType.Append, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const count = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    const forged = new Uint8Array([...payload, ...count]);
    expect(() => decodeFramePayload(forged)).toThrow(/exceeds the payload/);
  });

  test("random byte streams never throw from the splitter: each is refused or still incomplete", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 400 }),
        fc.integer({ min: 1, max: 50 }),
        (stream, size) => {
          let failure: string | null = null;
          const splitter = new FrameSplitter(1024, (payload, start, end) => {
            try {
              decodeFramePayload(payload, start, end);
              return null;
            } catch (error) {
              return String(error);
            }
          });
          for (let at = 0; at < stream.length && failure === null; at += size) {
            failure = splitter.push(stream.subarray(at, at + size));
          }
          expect(failure === null ? splitter.bufferedBytes : 0).toBeLessThanOrEqual(1024 + frameHeaderBytes);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("an oversized length, an empty frame and a bad checksum are refused with a reason", () => {
    const oversized = new Uint8Array(frameHeaderBytes);
    new DataView(oversized.buffer).setUint32(0, 1025, true);
    expect(new FrameSplitter(1024, () => null).push(oversized)).toMatch(
      /exceeds this member.s node frame cap/,
    );

    expect(new FrameSplitter(1024, () => null).push(new Uint8Array(frameHeaderBytes))).toMatch(
      /empty payload/,
    );

    const out = new ByteQueue();
    finishFrame(out, encodeHostFrame(out, new Uint8Array([1, 2, 3])));
    const corrupted = out.pending().slice();
    corrupted[corrupted.length - 1]! ^= 1;
    const splitter = new FrameSplitter(1024, () => null);
    expect(splitter.push(corrupted)).toMatch(/checksum/);
    // A refused stream stays refused.
    expect(splitter.push(new Uint8Array(1))).toMatch(/checksum/);
  });
});

describe("byte queue", () => {
  test("partial consumption, compaction and growth keep the bytes in order", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(fc.record({ push: fc.uint8Array({ maxLength: 100 }) }), fc.record({ take: fc.nat(150) })),
          {
            maxLength: 60,
          },
        ),
        (ops) => {
          const queue = new ByteQueue(32);
          const model: number[] = [];
          for (const op of ops) {
            if ("push" in op) {
              queue.bytes(op.push);
              model.push(...op.push);
            } else {
              const n = Math.min(op.take, queue.pendingBytes);
              expect([...queue.pending().subarray(0, n)]).toEqual(model.splice(0, n));
              queue.consume(n);
            }
            expect([...queue.pending()]).toEqual(model);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a mark survives growth and rolls an append back", () => {
    const queue = new ByteQueue(16);
    queue.bytes(new Uint8Array([1, 2, 3, 4]));
    queue.consume(2);
    const mark = queue.mark();
    queue.bytes(new Uint8Array(1000));
    queue.truncateTo(mark);
    expect([...queue.pending()]).toEqual([3, 4]);
  });
});

describe("short strings", () => {
  const utf8 = new TextEncoder();

  test("a string cache hands back each string as decoded, through more distinct values than it keeps", () => {
    const cache = new StringCache();
    const names = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? `node-${i}` : `nöde-${i % 7}`));
    // Twice over, interleaved: hits, misses, replaced entries, equal lengths with other bytes.
    for (let round = 0; round < 2; round++) {
      for (const name of [...names, ...names.slice(0, 3)]) {
        const bytes = utf8.encode(`xx${name}yy`);
        expect(cache.decode(bytes, 2, bytes.length - 2)).toBe(name);
      }
    }
  });

  test("invalid UTF-8 is refused with the cache as without it, and is not remembered", () => {
    const cache = new StringCache();
    const bad = new Uint8Array([2, 0xc3, 0x28]);
    for (let i = 0; i < 2; i++)
      expect(() => new PayloadReader(bad, 0, bad.length, cache).utf8()).toThrow(WireError);
    const good = new Uint8Array([2, 0xc3, 0xa9]);
    expect(new PayloadReader(good, 0, good.length, cache).utf8()).toBe("é");
  });

  test("the queue writes ASCII and other strings as the UTF-8 encoder does", () => {
    for (const s of ["", "n1", "node-1", "x".repeat(127), "é", "a\u{1F600}b", `${"ab".repeat(30)}é`]) {
      const out = new ByteQueue(4);
      out.utf8(s);
      const encoded = utf8.encode(s);
      const expected = new ByteQueue(4);
      expected.lengthPrefixedBytes(encoded);
      expect(out.pending()).toEqual(expected.pending());
    }
  });
});

import { describe, expect, test } from "bun:test";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { parseEndpoint } from "../../src/rpc/protocol/endpoint.ts";
import {
  beginFrame,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  headerBytes,
} from "../../src/rpc/protocol/frame.ts";

function frame(requestId: number, body: Uint8Array): Uint8Array {
  const out = new ByteWriter(64);
  const start = beginFrame(out);
  out.bytes(body);
  finishFrame(out, start, {
    serializer: 1,
    flags: 0,
    requestId,
    shard: 7,
    op: 4,
    clientIdHigh: 0xdeadbeef,
    clientIdLow: 42,
  });
  return out.written().slice();
}

function collector(maxBodyBytes = 1024) {
  const frames: { header: FrameHeader; body: Uint8Array }[] = [];
  const oversized: FrameHeader[] = [];
  const corrupt: string[] = [];
  const decoder = new FrameDecoder(maxBodyBytes, {
    onFrame: (header, body) => frames.push({ header, body: body.slice() }),
    onOversized: (header) => oversized.push(header),
    onCorrupt: (reason) => corrupt.push(reason),
  });
  return { decoder, frames, oversized, corrupt };
}

const body = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * seed) & 0xff);

describe("FrameDecoder", () => {
  test("a frame carries its header fields and body intact", () => {
    const { decoder, frames } = collector();
    decoder.push(frame(9, body(5)));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.header).toMatchObject({
      requestId: 9,
      shard: 7,
      op: 4,
      clientIdHigh: 0xdeadbeef,
      clientIdLow: 42,
    });
    expect(frames[0]!.body).toEqual(body(5));
  });

  test("a frame split at every possible byte boundary is reassembled", () => {
    const bytes = frame(1, body(100, 3));
    for (let cut = 1; cut < bytes.length; cut++) {
      const { decoder, frames } = collector();
      decoder.push(bytes.subarray(0, cut));
      expect(frames).toHaveLength(0);
      decoder.push(bytes.subarray(cut));
      expect(frames).toHaveLength(1);
      expect(frames[0]!.body).toEqual(body(100, 3));
    }
  });

  test("a frame fed one byte at a time is reassembled", () => {
    const bytes = frame(1, body(300, 7));
    const { decoder, frames } = collector();
    for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.body).toEqual(body(300, 7));
    expect(decoder.bufferedBytes).toBe(0);
  });

  test("many frames in one chunk, ending in a partial one, come out in order", () => {
    const parts = Array.from({ length: 50 }, (_, i) => frame(i + 1, body(i, i + 1)));
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    const { decoder, frames } = collector();
    decoder.push(all.subarray(0, all.length - 3));
    expect(frames).toHaveLength(49);
    decoder.push(all.subarray(all.length - 3));
    expect(frames.map((f) => f.header.requestId)).toEqual(parts.map((_, i) => i + 1));
    expect(frames[49]!.body).toEqual(body(49, 50));
  });

  test("an empty body is a complete frame", () => {
    const { decoder, frames } = collector();
    decoder.push(frame(3, new Uint8Array(0)));
    expect(frames[0]!.body.length).toBe(0);
  });

  test("an oversized frame is reported, its body skipped, and the next frame still parsed", () => {
    const { decoder, frames, oversized } = collector(100);
    const big = frame(1, body(500));
    decoder.push(big.subarray(0, 200));
    decoder.push(big.subarray(200));
    decoder.push(frame(2, body(10)));
    expect(oversized.map((h) => [h.requestId, h.bodyLength])).toEqual([[1, 500]]);
    expect(frames.map((f) => f.header.requestId)).toEqual([2]);
  });

  test("a header announcing 4 GiB is refused without allocating for it", () => {
    const { decoder, oversized } = collector();
    const header = frame(1, new Uint8Array(0));
    new DataView(header.buffer).setUint32(4, 0xffffffff, true);
    decoder.push(header);
    expect(oversized[0]!.bodyLength).toBe(0xffffffff);
    expect(decoder.bufferedBytes).toBe(0);
  });

  test("garbage is reported as corrupt and stops the decoder", () => {
    const { decoder, frames, corrupt } = collector();
    expect(decoder.push(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))).toBe(false);
    expect(corrupt[0]).toContain("bad magic");
    expect(decoder.push(frame(1, body(1)))).toBe(false);
    expect(frames).toHaveLength(0);
  });

  test("an unsupported version is reported as corrupt", () => {
    const { decoder, corrupt } = collector();
    const bytes = frame(1, body(1));
    bytes[1] = 99;
    decoder.push(bytes);
    expect(corrupt[0]).toContain("version 99");
  });

  test("a large frame in many chunks is reassembled, its buffer never past the frame's size", () => {
    const payload = body(1024 * 1024, 5);
    const bytes = frame(1, payload);
    const { decoder, frames } = collector(2 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 1000) {
      decoder.push(bytes.subarray(i, i + 1000));
      expect(decoder.capacityBytes).toBeLessThanOrEqual(bytes.length);
    }
    expect(frames).toHaveLength(1);
    expect(frames[0]!.body).toEqual(payload);
    expect(headerBytes).toBe(28);
  });

  test("a header claiming a large body gets memory only as the body arrives", () => {
    // A hostile client's 28-byte header must not make the server allocate the claimed size.
    const payload = body(8 * 1024 * 1024, 3);
    const bytes = frame(1, payload);
    const { decoder, frames } = collector(16 * 1024 * 1024);
    decoder.push(bytes.subarray(0, headerBytes + 100));
    expect(decoder.capacityBytes).toBeLessThanOrEqual(64 * 1024);
    let sent = headerBytes + 100;
    for (; sent < bytes.length / 4; sent += 64 * 1024) decoder.push(bytes.subarray(sent, sent + 64 * 1024));
    // Doubling: at most twice what has arrived.
    expect(decoder.capacityBytes).toBeLessThanOrEqual(2 * sent);
    decoder.push(bytes.subarray(sent));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.body).toEqual(payload);
  });
});

describe("endpoints", () => {
  test('":port" (the Go dKV form) listens on every interface and dials this machine', () => {
    expect(parseEndpoint("tcp", ":8081", "listen")).toEqual({
      kind: "inet",
      hostname: "0.0.0.0",
      port: 8081,
    });
    expect(parseEndpoint("tcp", ":8081")).toEqual({ kind: "inet", hostname: "127.0.0.1", port: 8081 });
    expect(parseEndpoint("http", "http://[::1]:80/")).toEqual({ kind: "inet", hostname: "::1", port: 80 });
  });

  test("a missing port or a port out of range is a usage error", () => {
    for (const bad of ["localhost", "host:99999", "host:x"]) {
      expect(() => parseEndpoint("tcp", bad)).toThrow(/invalid endpoint/);
    }
  });
});

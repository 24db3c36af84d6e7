/**
 * The server's request path without an object per request: the frame decoder hands the
 * socket connection one header object, refilled per frame, and the body's place in the
 * chunk (FrameSink.onFrameAt); a set on a dstore shard goes from there into the store, and
 * the dispatcher reuses each ServerCall once its outcome is delivered. Nothing may see a
 * later frame's header or another request's call: a reply always names its own request,
 * whatever came through the decoder or the dispatcher since.
 */
import { describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import {
  beginFrame,
  copyHeader,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
} from "../../src/rpc/protocol/frame.ts";
import { type Message, opCodes, requestSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { defaultDedupLimits } from "../../src/rpc/server/dedup-cache.ts";
import { type OriginWrites, RequestDispatcher, silentLogger } from "../../src/rpc/server/dispatcher.ts";
import type { RequestOrigin, WriteReceiver } from "../../src/store/replicated/command.ts";
import type { IStore } from "../../src/store/types.ts";

const serializer = createSerializer("binary");
const SHARD = 5;

function frame(requestId: number, body: Uint8Array): Uint8Array {
  const out = new ByteWriter(64);
  const start = beginFrame(out);
  out.bytes(body);
  finishFrame(out, start, {
    serializer: serializer.id,
    flags: 0,
    requestId,
    shard: SHARD,
    op: opCodes.set,
    clientIdHigh: 0xabc,
    clientIdLow: requestId * 3,
  });
  return out.written().slice();
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

function setBody(key: string, value: Uint8Array): Uint8Array {
  const out = new ByteWriter(64);
  serializer.write(requestSchemas.set, { key, value }, out);
  return out.written().slice();
}

describe("FrameDecoder.onFrameAt", () => {
  test("one header object, refilled per frame; the body's bounds in the chunk; onFrame is not called", () => {
    const parts = Array.from({ length: 20 }, (_, i) =>
      frame(
        i + 1,
        Uint8Array.from({ length: i }, () => i),
      ),
    );
    const all = concat(parts);
    const seen: { header: FrameHeader; same: FrameHeader; body: Uint8Array }[] = [];
    let onFrameCalls = 0;
    const decoder = new FrameDecoder(1024, {
      onFrame: () => onFrameCalls++,
      onFrameAt: (header, src, start, end) =>
        seen.push({ header: copyHeader(header), same: header, body: src.slice(start, end) }),
      onOversized: () => undefined,
      onCorrupt: () => undefined,
    });
    // Split inside a frame, so the last ones come from the decoder's own buffer.
    decoder.push(all.subarray(0, all.length - 7));
    decoder.push(all.subarray(all.length - 7));
    expect(onFrameCalls).toBe(0);
    expect(seen.map((s) => s.header.requestId)).toEqual(parts.map((_, i) => i + 1));
    expect(seen.map((s) => s.header.clientIdLow)).toEqual(parts.map((_, i) => (i + 1) * 3));
    for (const [i, s] of seen.entries()) {
      expect(s.body).toEqual(Uint8Array.from({ length: i }, () => i));
      expect(s.header.bodyLength).toBe(i);
      expect(s.header).toMatchObject({
        serializer: serializer.id,
        shard: SHARD,
        op: opCodes.set,
        clientIdHigh: 0xabc,
      });
    }
    expect(new Set(seen.map((s) => s.same)).size).toBe(1);
  });

  test("an oversized frame's header is the sink's to keep (a copy, not the refilled one)", () => {
    const oversized: FrameHeader[] = [];
    const ids: number[] = [];
    const decoder = new FrameDecoder(10, {
      onFrame: () => undefined,
      onFrameAt: (header) => ids.push(header.requestId),
      onOversized: (header) => oversized.push(header),
      onCorrupt: () => undefined,
    });
    decoder.push(concat([frame(1, new Uint8Array(50)), frame(2, new Uint8Array(3))]));
    expect(ids).toEqual([2]);
    expect(oversized.map((h) => [h.requestId, h.bodyLength])).toEqual([[1, 50]]);
  });
});

interface Delivery {
  header: FrameHeader;
  response: Message | undefined;
  error: DkvError | undefined;
}

/** A dstore's writes that answer when the test says (each receiver kept until then). */
class HeldWrites implements OriginWrites {
  readonly held: { key: string; value: Uint8Array; requestId: number; receiver: WriteReceiver }[] = [];
  setTo(): void {
    throw new Error("not used: every set here takes the frame's bytes");
  }
  deleteTo(): void {
    throw new Error("not used");
  }
  takesSetBytes(): boolean {
    return true;
  }
  setBytesTo(
    src: Uint8Array,
    keyStart: number,
    keyBytes: number,
    valueStart: number,
    valueBytes: number,
    origin: RequestOrigin,
    receiver: WriteReceiver,
  ): void {
    const key = new TextDecoder().decode(src.subarray(keyStart, keyStart + keyBytes));
    const value = src.slice(valueStart, valueStart + valueBytes);
    this.held.push({ key, value, requestId: origin.requestId, receiver });
  }
}

function dispatcherWith(writes: HeldWrites, requestTimeoutMs: number): RequestDispatcher {
  return new RequestDispatcher({
    shards: new Map([
      [
        SHARD,
        {
          kind: "store",
          store: {} as IStore,
          forOrigin: () => {
            throw new Error("not used");
          },
          originWrites: writes,
        },
      ],
    ]),
    serializer,
    requestTimeoutMs,
    dedup: defaultDedupLimits,
    logger: silentLogger,
  });
}

/** Dispatches `frames` through a decoder with a borrowed header, as a connection does. */
function connection(dispatcher: RequestDispatcher) {
  const delivered: Delivery[] = [];
  const target = {
    // The header given may be reused after the call: copy what is checked later.
    deliver: (header: FrameHeader, response: Message | undefined, error: DkvError | undefined) =>
      delivered.push({ header: copyHeader(header), response, error }),
  };
  const decoder = new FrameDecoder(1024, {
    onFrame: () => {
      throw new Error("the connection's decoder borrows its header");
    },
    onFrameAt: (header, src, start, end) => dispatcher.dispatchFrameAt(header, src, start, end, target),
    onOversized: () => undefined,
    onCorrupt: () => undefined,
  });
  return { delivered, push: (chunk: Uint8Array) => decoder.push(chunk) };
}

describe("sets through a borrowed header and reused calls", () => {
  test("each reply names its own request, whatever frames came since and whichever call served it", () => {
    const writes = new HeldWrites();
    const dispatcher = dispatcherWith(writes, 5_000);
    const { delivered, push } = connection(dispatcher);
    const enc = new TextEncoder();
    for (let round = 0; round < 3; round++) {
      // 10 sets in one chunk, answered out of order once all were read.
      const base = round * 10;
      push(
        concat(
          Array.from({ length: 10 }, (_, i) =>
            frame(base + i + 1, setBody(`k${base + i}`, enc.encode(`v${base + i}`))),
          ),
        ),
      );
      expect(writes.held.map((h) => h.key)).toEqual(Array.from({ length: 10 }, (_, i) => `k${base + i}`));
      expect(writes.held.map((h) => h.requestId)).toEqual(Array.from({ length: 10 }, (_, i) => base + i + 1));
      const order = [3, 0, 9, 5, 1, 8, 2, 7, 4, 6];
      for (const i of order) writes.held[i]!.receiver.writeDone(undefined, new Uint8Array(0));
      const replies = delivered.splice(0);
      expect(replies.map((d) => d.header.requestId)).toEqual(order.map((i) => base + i + 1));
      expect(replies.map((d) => d.header.clientIdLow)).toEqual(order.map((i) => (base + i + 1) * 3));
      for (const reply of replies) {
        expect(reply.error).toBeUndefined();
        expect(reply.header).toMatchObject({ shard: SHARD, op: opCodes.set, clientIdHigh: 0xabc });
      }
      writes.held.length = 0;
    }
    expect(dispatcher.inflight).toBe(0);
  });

  test("a call that timed out is answered once; its late outcome reaches nobody, and the call then serves the next request", async () => {
    const writes = new HeldWrites();
    const dispatcher = dispatcherWith(writes, 30);
    const { delivered, push } = connection(dispatcher);
    const value = new TextEncoder().encode("v");
    push(frame(1, setBody("a", value)));
    await Bun.sleep(120);
    expect(delivered.map((d) => [d.header.requestId, d.error?.code])).toEqual([[1, "TIMEOUT"]]);
    // Another request while the first is still held by the store: a call of its own.
    push(frame(2, setBody("b", value)));
    const [first, second] = writes.held;
    first!.receiver.writeDone(undefined, new Uint8Array(0));
    expect(delivered).toHaveLength(1);
    expect(dispatcher.inflight).toBe(1);
    // The first call is free now: the next request may get it, and its reply is its own.
    push(frame(3, setBody("c", value)));
    writes.held[2]!.receiver.writeDone(undefined, new Uint8Array(0));
    second!.receiver.writeDone(undefined, new Uint8Array(0));
    expect(delivered.map((d) => [d.header.requestId, d.error?.code])).toEqual([
      [1, "TIMEOUT"],
      [3, undefined],
      [2, undefined],
    ]);
    expect(dispatcher.inflight).toBe(0);
  });

  test("a request the fast path does not take gets a header of its own: a replayed retry answered later names itself", async () => {
    const writes = new HeldWrites();
    // A shard that deduplicates in the server (no forOrigin): a retry in flight waits for
    // the first try's outcome, keeping its header until then.
    const deleted = Promise.withResolvers<void>();
    const plain = { delete: () => deleted.promise } as unknown as IStore;
    const dispatcher = new RequestDispatcher({
      shards: new Map([
        [
          SHARD,
          {
            kind: "store",
            store: {} as IStore,
            forOrigin: () => ({ kind: "store", store: {} as IStore }),
            originWrites: writes,
          },
        ],
        [6, { kind: "store", store: plain }],
      ]),
      serializer,
      requestTimeoutMs: 5_000,
      dedup: defaultDedupLimits,
      logger: silentLogger,
    });
    const { delivered, push } = connection(dispatcher);
    const deleteFrame = (() => {
      const out = new ByteWriter(64);
      const start = beginFrame(out);
      serializer.write(requestSchemas.delete, { key: "x" }, out);
      finishFrame(out, start, {
        serializer: serializer.id,
        flags: 0,
        requestId: 50,
        shard: 6,
        op: opCodes.delete,
        clientIdHigh: 1,
        clientIdLow: 2,
      });
      return out.written().slice();
    })();
    // The delete, its retry, then sets that refill the decoder's header, all in one chunk.
    push(
      concat([
        deleteFrame,
        deleteFrame,
        frame(51, setBody("k", new Uint8Array(1))),
        frame(52, setBody("k", new Uint8Array(1))),
      ]),
    );
    for (const held of writes.held) held.receiver.writeDone(undefined, new Uint8Array(0));
    deleted.resolve();
    await Bun.sleep(0);
    expect(delivered.map((d) => [d.header.requestId, d.header.shard, d.header.op])).toEqual([
      [51, SHARD, opCodes.set],
      [52, SHARD, opCodes.set],
      [50, 6, opCodes.delete],
      [50, 6, opCodes.delete],
    ]);
    expect(delivered.every((d) => d.error === undefined)).toBe(true);
  });
});

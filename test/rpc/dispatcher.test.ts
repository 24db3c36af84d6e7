import { describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import { type Message, opCodes, requestSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { defaultDedupLimits } from "../../src/rpc/server/dedup-cache.ts";
import { RequestDispatcher, type ShardHandler, silentLogger } from "../../src/rpc/server/dispatcher.ts";
import { LocalStore } from "../../src/store/local.ts";

const serializer = createSerializer("binary");
const shard = 100;

function setup() {
  const store = new LocalStore({ purgeIntervalMs: 0 });
  const shards = new Map<number, ShardHandler>([[shard, { kind: "store", store }]]);
  const dispatcher = new RequestDispatcher({
    shards,
    serializer,
    requestTimeoutMs: 5_000,
    dedup: defaultDedupLimits,
    logger: silentLogger,
  });
  const replies: { requestId: number; response: Message | undefined; error: DkvError | undefined }[] = [];
  const target = {
    deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined) {
      replies.push({ requestId: header.requestId, response, error });
    },
  };
  return { store, dispatcher, replies, target };
}

function frame(op: "set" | "get" | "delete" | "has", requestId: number, message: Message) {
  const out = new ByteWriter(256);
  serializer.write(requestSchemas[op], message, out);
  const header: FrameHeader = {
    serializer: serializer.id,
    flags: 0,
    bodyLength: out.length,
    requestId,
    shard,
    op: opCodes[op],
    clientIdHigh: 3,
    clientIdLow: 4,
  };
  return { header, body: out.buf.subarray(0, out.length) };
}

describe("RequestDispatcher on an lstore shard", () => {
  test("set, get, has and delete are answered before dispatchFrame returns (no promise per request)", async () => {
    const { store, dispatcher, replies, target } = setup();
    const value = new TextEncoder().encode("v1");
    const set = frame("set", 1, { key: "k", value });
    dispatcher.dispatchFrame(set.header, set.body, target);
    expect(replies).toEqual([{ requestId: 1, response: {}, error: undefined }]);
    // The request's bytes are not the stored value: the body may be reused by the next frame.
    set.body.fill(0);
    expect(new TextDecoder().decode(await store.get("k"))).toBe("v1");

    const get = frame("get", 2, { key: "k" });
    dispatcher.dispatchFrame(get.header, get.body, target);
    expect(replies).toHaveLength(2);
    expect(new TextDecoder().decode(replies[1]!.response!.value as Uint8Array)).toBe("v1");
    expect(replies[1]!.response!.version).toBe(1);

    const has = frame("has", 3, { key: "k" });
    dispatcher.dispatchFrame(has.header, has.body, target);
    expect(replies[2]!.response).toEqual({ found: true });

    const del = frame("delete", 4, { key: "k" });
    dispatcher.dispatchFrame(del.header, del.body, target);
    expect(replies[3]!.response).toEqual({});
    expect(await store.has("k")).toBe(false);
    expect(dispatcher.inflight).toBe(0);
  });

  test("a retried set (same client and request id) is answered from the cache, not applied again", async () => {
    const { store, dispatcher, replies, target } = setup();
    const first = frame("set", 7, { key: "k", value: new TextEncoder().encode("a") });
    dispatcher.dispatchFrame(first.header, first.body, target);
    // Someone else writes in between; the retry of request 7 must not overwrite it.
    await store.set("k", "b");
    const retry = frame("set", 7, { key: "k", value: new TextEncoder().encode("a") });
    dispatcher.dispatchFrame(retry.header, retry.body, target);
    expect(replies.map((r) => r.requestId)).toEqual([7, 7]);
    expect(replies[1]!.error).toBeUndefined();
    expect(new TextDecoder().decode(await store.get("k"))).toBe("b");
  });

  test("a refused set (key too large) is answered at once with the store's error and changes nothing", async () => {
    const { store, dispatcher, replies, target } = setup();
    const big = frame("set", 1, { key: "k".repeat(store.limits.maxKeyBytes + 1), value: new Uint8Array(1) });
    dispatcher.dispatchFrame(big.header, big.body, target);
    expect(replies[0]!.error?.code).toBe("TOO_LARGE");
    expect((await store.info()).keys).toBe(0);
  });
});

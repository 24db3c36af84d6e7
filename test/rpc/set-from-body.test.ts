/**
 * The dispatcher's set path for a dstore shard that takes the key and value straight from
 * the frame's body into the Raft command (OriginWrites.setBytesTo): no request object,
 * key string or value copy per write. The body is a view of a connection's buffer that is
 * reused for the next chunk, so nothing stored or logged may alias it; and every set the
 * path does not take as it is must be answered exactly as the general path answers it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import type { Entry } from "../../src/raft/core/types.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import { type Message, opCodes, requestSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { defaultDedupLimits } from "../../src/rpc/server/dedup-cache.ts";
import { type OriginWrites, RequestDispatcher, silentLogger } from "../../src/rpc/server/dispatcher.ts";
import { decodeCommand, type RequestOrigin, type WriteReceiver } from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import type { ValueInput } from "../../src/store/types.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { text } from "../support/assertions.ts";

const GROUP = 7;
const serializer = createSerializer("binary");
const limits = { maxKeyBytes: 64, maxValueBytes: 1024 };
let cluster: TestCluster | undefined;

/** Keeps the bytes of every entry it applies, as apply saw them. */
class RecordingStateMachine extends DStoreStateMachine {
  readonly applied: Uint8Array[] = [];
  override apply(entry: Entry): Uint8Array {
    this.applied.push(entry.data);
    return super.apply(entry);
  }
}

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** The DStore's writes, counted by the way they came. */
class CountingWrites implements OriginWrites {
  setToCalls = 0;
  setBytesToCalls = 0;
  constructor(private readonly store: DStore) {}
  setTo(key: string, value: ValueInput, origin: RequestOrigin, receiver: WriteReceiver): void {
    this.setToCalls++;
    this.store.setTo(key, value, origin, receiver);
  }
  deleteTo(key: string, origin: RequestOrigin, receiver: WriteReceiver): void {
    this.store.deleteTo(key, origin, receiver);
  }
  takesSetBytes(src: Uint8Array, keyStart: number, keyBytes: number, valueBytes: number): boolean {
    return this.store.takesSetBytes(src, keyStart, keyBytes, valueBytes);
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
    this.setBytesToCalls++;
    this.store.setBytesTo(src, keyStart, keyBytes, valueStart, valueBytes, origin, receiver);
  }
}

interface Reply {
  response: Message | undefined;
  error: DkvError | undefined;
}

async function start() {
  let machine: RecordingStateMachine | undefined;
  cluster = await TestCluster.start({
    size: 1,
    groups: [GROUP],
    stateMachine: () => {
      machine = new RecordingStateMachine();
      return machine;
    },
  });
  const leader = await cluster.waitForLeader(GROUP);
  const host = cluster.host(leader);
  const store = new DStore(host, GROUP, { timeoutMs: 3000, limits });
  const writes = new CountingWrites(store);
  const dispatcher = new RequestDispatcher({
    shards: new Map([
      [
        GROUP,
        {
          kind: "store",
          store,
          forOrigin: (origin: RequestOrigin) => ({ kind: "store", store: store.withOrigin(origin) }),
          originWrites: writes,
        },
      ],
    ]),
    serializer,
    requestTimeoutMs: 5_000,
    dedup: defaultDedupLimits,
    logger: silentLogger,
  });
  /** Dispatches a set frame's body; `after` runs as soon as dispatchFrame returns. */
  const send = (body: Uint8Array, requestId: number, clientIdLow = 0x1234, after?: () => void) => {
    const { promise, resolve } = Promise.withResolvers<Reply>();
    const header: FrameHeader = {
      serializer: serializer.id,
      flags: 0,
      bodyLength: body.length,
      requestId,
      shard: GROUP,
      op: opCodes.set,
      clientIdHigh: 0,
      clientIdLow,
    };
    dispatcher.dispatchFrame(header, body, {
      deliver: (_header, response, error) => resolve({ response, error }),
    });
    after?.();
    return promise;
  };
  return { machine: machine!, store, writes, send };
}

function setBody(key: string, value: Uint8Array): Uint8Array {
  const out = new ByteWriter(64);
  serializer.write(requestSchemas.set, { key, value }, out);
  return out.written().slice();
}

describe("a dstore set from the frame's body", () => {
  test("the stored value and the log entry are copies: overwriting the body after the call changes neither", async () => {
    const { machine, store, writes, send } = await start();
    const value = new Uint8Array(128).map((_, i) => i);
    // The body sits in a larger buffer, as a frame does in a socket chunk.
    const chunk = new Uint8Array(4096).fill(0x55);
    const body = setBody("key/1", value);
    chunk.set(body, 100);
    const view = chunk.subarray(100, 100 + body.length);
    const reply = await send(view, 1, 0x1234, () => chunk.fill(0xee));
    expect(reply.error).toBeUndefined();
    expect(writes.setBytesToCalls).toBe(1);
    expect(writes.setToCalls).toBe(0);
    expect(await store.get("key/1")).toEqual(value);
    // The Raft entry itself holds the original key and value.
    const command = decodeCommand(machine.applied.at(-1)!);
    expect(command.key).toBe("key/1");
    expect(command.value).toEqual(value);
    expect(command.origin?.requestId).toBe(1);
  });

  test("a retry of the same request id applies once, as through setTo", async () => {
    const { store, writes, send } = await start();
    expect((await send(setBody("k", new TextEncoder().encode("first")), 9)).error).toBeUndefined();
    expect((await send(setBody("k", new TextEncoder().encode("second")), 9)).error).toBeUndefined();
    expect(writes.setBytesToCalls).toBe(2);
    expect(text(await store.get("k"))).toBe("first");
  });

  test("what it does not take as it is goes the general way and is answered as before", async () => {
    const { store, writes, send } = await start();
    const small = new TextEncoder().encode("v");
    // A key that is not ASCII: stored, through setTo.
    expect((await send(setBody("ключ", small), 1)).error).toBeUndefined();
    expect(text(await store.get("ключ"))).toBe("v");
    expect(writes.setToCalls).toBe(1);
    // Over the key or value limit: refused as setTo refuses it, nothing stored.
    const longKey = "k".repeat(limits.maxKeyBytes + 1);
    expect((await send(setBody(longKey, small), 2)).error?.code).toBe("TOO_LARGE");
    const bigValue = new Uint8Array(limits.maxValueBytes + 1);
    expect((await send(setBody("big", bigValue), 3)).error?.code).toBe("TOO_LARGE");
    expect(await store.get("big")).toBeUndefined();
    // An empty key: BAD_REQUEST.
    expect((await send(setBody("", small), 4)).error?.code).toBe("BAD_REQUEST");
    // A trailing byte, a value length past the end, a short body: BAD_FRAME from the decoder.
    const body = setBody("t", small);
    const trailing = new Uint8Array(body.length + 1);
    trailing.set(body);
    expect((await send(trailing, 5)).error?.code).toBe("BAD_FRAME");
    const truncated = body.subarray(0, body.length - 1);
    expect((await send(truncated, 6)).error?.code).toBe("BAD_FRAME");
    expect((await send(new Uint8Array([1, 0, 0]), 7)).error?.code).toBe("BAD_FRAME");
    // Bad UTF-8 in the key: BAD_FRAME, as the serializer says.
    const badKey = setBody("ab", small);
    badKey[4] = 0xff;
    expect((await send(badKey, 8)).error?.code).toBe("BAD_FRAME");
    expect(await store.get("t")).toBeUndefined();
    expect(writes.setBytesToCalls).toBe(0);
    // An anonymous request (no client id) is not deduplicated: the store's own write.
    expect((await send(setBody("anon", small), 9, 0)).error).toBeUndefined();
    expect(text(await store.get("anon"))).toBe("v");
    expect(writes.setBytesToCalls).toBe(0);
    // A closed store: CLOSED, as before.
    await store.close();
    expect((await send(setBody("late", small), 10)).error?.code).toBe("CLOSED");
  });
});

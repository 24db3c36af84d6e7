import { expect, test } from "bun:test";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { parseEndpoint } from "../../src/rpc/protocol/endpoint.ts";
import { defaultMaxFrameBytes } from "../../src/rpc/protocol/frame.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { RequestDispatcher, type ShardHandler, silentLogger } from "../../src/rpc/server/dispatcher.ts";
import { type SocketServer, startSocketServer } from "../../src/rpc/server/socket-server.ts";
import type { EntryInfo, IStore } from "../../src/store/types.ts";

/**
 * A server connection with several requests in flight sends the replies that complete in
 * different tasks of one event-loop iteration (on a member: groups committing on acks
 * from two followers, a log write finishing) in one socket write, not one each.
 */
const utf8 = new TextEncoder();

/** A store whose reads answer after `delayMs` on a timer each: timers set in one turn fire in one iteration. */
function slowStore(delayMs: number): IStore {
  const getEntry = (key: string) =>
    new Promise<EntryInfo>((resolve) =>
      setTimeout(
        () => resolve({ key, value: utf8.encode(key), version: 1, createRevision: 1, modRevision: 1 }),
        delayMs,
      ),
    );
  return { getEntry } as unknown as IStore;
}

async function startServer(): Promise<SocketServer> {
  const serializer = createSerializer("binary");
  const shards = new Map<number, ShardHandler>([[1, { kind: "store", store: slowStore(20) }]]);
  const dispatcher = new RequestDispatcher({
    shards,
    serializer,
    requestTimeoutMs: 0,
    dedup: { entriesMax: 1000, ttlMs: 60_000 },
    logger: silentLogger,
  });
  return startSocketServer({
    endpoint: parseEndpoint("tcp", "127.0.0.1:0", "listen"),
    dispatcher,
    serializer,
    maxFrameBytes: defaultMaxFrameBytes,
    logger: silentLogger,
    limits: { maxConnections: 10, idleTimeoutMs: 0, handshakeTimeoutMs: 10_000 },
    watchersPerConnectionMax: 10,
  });
}

test("replies completing in separate tasks of one iteration leave a busy connection in one write", async () => {
  const server = await startServer();
  try {
    await using client = new RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
    });
    const store = client.store(1);
    expect(new TextDecoder().decode(await store.get("warm"))).toBe("warm");
    const before = server.socketWrites;
    // Sent together; each answered from its own timer, in its own task.
    const values = await Promise.all(["a", "b", "c", "d"].map((key) => store.get(key)));
    expect(values.map((v) => new TextDecoder().decode(v))).toEqual(["a", "b", "c", "d"]);
    expect(server.socketWrites - before).toBe(1);
  } finally {
    await server.stop(1000);
  }
});

test("the reply to a lone request is not held for company", async () => {
  const server = await startServer();
  try {
    await using client = new RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
    });
    const store = client.store(1);
    const before = server.socketWrites;
    for (const key of ["a", "b", "c"]) expect(new TextDecoder().decode(await store.get(key))).toBe(key);
    expect(server.socketWrites - before).toBe(3);
  } finally {
    await server.stop(1000);
  }
});

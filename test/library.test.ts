import { expect, test } from "bun:test";
import { readOptions } from "../src/config/parse.ts";
import { serveOptions } from "../src/config/schema.ts";
import * as dkv from "../src/index.ts";

test("the library surface exports the engine, stores, lock manager, RPC server and client, and a whole node", () => {
  const exported = [
    dkv.MapleDB,
    dkv.LocalStore,
    dkv.LockManager,
    dkv.DkvError,
    dkv.RpcClient,
    dkv.startRpcServer,
    dkv.startNode,
    dkv.resolveNodeOptions,
  ];
  for (const value of exported) expect(typeof value).toBe("function");
});

test("an embedded program uses a local store and a lock manager over RPC", async () => {
  const store = new dkv.LocalStore();
  const locks = new dkv.LockManager(new dkv.LocalStore());
  try {
    await using server = await dkv.startRpcServer({
      transport: "tcp",
      endpoint: "127.0.0.1:0",
      serializer: "binary",
      shards: new Map<number, dkv.ShardHandler>([
        [100, { kind: "store", store }],
        [200, { kind: "lock", locks, store }],
      ]),
    });
    await using client = new dkv.RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
    });
    await client.store(100).set("greeting", "hello");
    expect(new TextDecoder().decode(await store.get("greeting"))).toBe("hello");
    const lock = await client.locks(200).acquire("job", 10_000);
    expect(lock.acquired).toBe(true);
    expect(await client.locks(200).acquire("job", 10_000)).toEqual({ acquired: false });
    expect(await client.locks(200).release("job", lock.ownerId ?? "")).toBe(true);
  } finally {
    await store.close();
  }
});

test("an embedded program runs a whole node from the same options as dkv serve", async () => {
  await using node = await dkv.startNode(
    dkv.resolveNodeOptions({
      ...readOptions(serveOptions, {}),
      "transport-endpoint": "127.0.0.1:0",
    }),
  );
  await using client = new dkv.RpcClient({
    endpoints: [node.endpoint],
    transport: "tcp",
    serializer: "binary",
  });
  await client.store(100).set("k", "v");
  expect((await client.locks(200).acquire("job", 10_000)).acquired).toBe(true);
});

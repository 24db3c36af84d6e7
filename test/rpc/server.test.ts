import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { parseEndpoint } from "../../src/rpc/protocol/endpoint.ts";
import { FrameDecoder, type FrameHeader, flagError, readErrorBody } from "../../src/rpc/protocol/frame.ts";
import { type Message, type OpName, responseSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { startRpcServer } from "../../src/rpc/server/index.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { IStore } from "../../src/store/types.ts";
import { expectDkvError } from "../support/assertions.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { lockShard, type Stack, startStack, storeShard } from "./harness.ts";

const binary = createSerializer("binary");
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function stack(...args: Parameters<typeof startStack>): Promise<Stack> {
  const s = await startStack(...args);
  cleanups.push(s.close);
  return s;
}

interface Reply {
  header: FrameHeader;
  response?: Message;
  error?: DkvError;
}

/** A hand-driven connection that sends raw bytes and collects reply frames. */
async function rawConnection(endpoint: string) {
  const replies: Reply[] = [];
  let closed = false;
  let ops = new Map<number, OpName>();
  const decoder = new FrameDecoder(64 * 1024 * 1024, {
    onFrame: (header, body) => {
      if ((header.flags & flagError) !== 0) replies.push({ header, error: readErrorBody(body) });
      else replies.push({ header, response: binary.read(responseSchemas[ops.get(header.requestId)!], body) });
    },
    onOversized: () => {},
    onCorrupt: () => {},
  });
  const { hostname, port } = parseEndpoint("tcp", endpoint) as { hostname: string; port: number };
  const socket: Socket<undefined> = await Bun.connect({
    hostname,
    port,
    socket: {
      binaryType: "uint8array",
      data: (_s, chunk: Uint8Array) => void decoder.push(chunk),
      close: () => {
        closed = true;
      },
    },
  });
  const connection = {
    replies,
    get closed() {
      return closed;
    },
    write(bytes: Uint8Array) {
      expect(socket.write(bytes)).toBe(bytes.length);
    },
    send<K extends OpName>(op: K, message: unknown, requestId: number, header: Partial<FrameHeader> = {}) {
      ops = ops.set(requestId, op);
      connection.write(requestFrame(op, message as Message, requestId, header));
    },
    /** Waits (bounded) until `count` replies arrived or the socket closed. */
    async waitFor(count: number): Promise<Reply[]> {
      for (let i = 0; i < 500 && replies.length < count && !closed; i++) await Bun.sleep(2);
      return replies;
    },
    close: () => socket.end(),
  };
  return connection;
}

function requestFrame(op: OpName, message: Message, requestId: number, header: Partial<FrameHeader> = {}) {
  return encodeRequestFrame(op, message, { shard: storeShard, requestId, ...header });
}

async function stillServes(s: Stack): Promise<void> {
  await s.client.store(storeShard).set("health", "ok");
  expect(new TextDecoder().decode(await s.client.store(storeShard).get("health"))).toBe("ok");
}

describe("bad input never takes the server down", () => {
  test("random bytes close that connection; other clients are served", async () => {
    const s = await stack("tcp", "binary");
    for (let round = 0; round < 20; round++) {
      const raw = await rawConnection(s.server.endpoint);
      raw.write(crypto.getRandomValues(new Uint8Array(1 + round * 97)));
      await raw.waitFor(1);
      raw.close();
    }
    await stillServes(s);
  });

  test("a frame announcing 4 GiB gets TOO_LARGE with its request id", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    const frame = requestFrame("get", { key: "k" }, 77);
    new DataView(frame.buffer).setUint32(4, 0xffffffff, true);
    raw.write(frame);
    const [reply] = await raw.waitFor(1);
    expect(reply?.header.requestId).toBe(77);
    expect(reply?.error?.code).toBe("TOO_LARGE");
    raw.close();
    await stillServes(s);
  });

  test("a frame cut midway and then closed is forgotten", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    const frame = requestFrame("set", { key: "k", value: new Uint8Array(4096) }, 1);
    raw.write(frame.subarray(0, 1000));
    raw.close();
    await stillServes(s);
    expect(await s.store.has("k")).toBe(false);
  });

  test("500 connections opened and dropped leave the server answering", async () => {
    const s = await stack("tcp", "binary");
    const { hostname, port } = parseEndpoint("tcp", s.server.endpoint) as { hostname: string; port: number };
    const sockets = await Promise.all(
      Array.from({ length: 500 }, () => Bun.connect({ hostname, port, socket: { data() {} } })),
    );
    for (const [i, socket] of sockets.entries()) {
      if (i % 2 === 0) socket.write(requestFrame("get", { key: "k" }, i + 1).subarray(0, 10));
      socket.terminate();
    }
    await stillServes(s);
  });

  test("a frame bigger than the server's limit is refused and the connection keeps working", async () => {
    const s = await stack("tcp", "binary", {
      server: { maxFrameBytes: 1024 },
      client: { maxFrameBytes: 1024 * 1024 },
    });
    const store = s.client.store(storeShard);
    await expectDkvError(() => store.set("big", new Uint8Array(4096)), "TOO_LARGE");
    expect(await s.store.has("big")).toBe(false);
    await stillServes(s);
  });

  test("the client refuses an over-limit request before sending it", async () => {
    const s = await stack("tcp", "binary", { client: { maxFrameBytes: 1024 } });
    const error = await expectDkvError(
      () => s.client.store(storeShard).set("big", new Uint8Array(4096)),
      "TOO_LARGE",
    );
    expect(error.outcome).toBe("not-applied");
  });
});

describe("clear refusals", () => {
  test("an unknown shard is UNKNOWN_SHARD naming the served shards", async () => {
    const s = await stack("tcp", "binary");
    const error = await expectDkvError(() => s.client.store(999).get("k"), "UNKNOWN_SHARD");
    expect(error.message).toContain("100, 200");
  });

  test("an unknown op code is UNKNOWN_OPERATION", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    const frame = requestFrame("get", { key: "k" }, 5);
    new DataView(frame.buffer).setUint16(16, 999, true);
    raw.write(frame);
    const [reply] = await raw.waitFor(1);
    expect(reply?.error?.code).toBe("UNKNOWN_OPERATION");
    raw.close();
  });

  test("a lock operation on a store shard is UNKNOWN_OPERATION", async () => {
    const s = await stack("tcp", "binary");
    await expectDkvError(() => s.client.locks(storeShard).acquire("k", 1000), "UNKNOWN_OPERATION");
  });

  test("store operations on a lock shard are refused, so nobody bypasses the owner check", async () => {
    const s = await stack("tcp", "binary");
    const locks = s.client.locks(lockShard);
    const held = await locks.acquire("job", 60_000);
    expect(held.acquired).toBe(true);
    const store = s.client.store(lockShard);
    await expectDkvError(() => store.delete("job"), "UNKNOWN_OPERATION");
    await expectDkvError(() => store.set("job", "forged"), "UNKNOWN_OPERATION");
    await expectDkvError(() => store.get("job"), "UNKNOWN_OPERATION");
    expect(await locks.acquire("job", 60_000)).toEqual({ acquired: false });
    expect(await locks.release("job", held.ownerId!)).toBe(true);
    expect((await s.client.info(lockShard)).keys).toBe(0);
  });

  test("a client speaking another serializer gets SERIALIZER_MISMATCH it can read", async () => {
    const s = await stack("tcp", "binary");
    const client = new RpcClient({ transport: "tcp", serializer: "json", endpoints: [s.server.endpoint] });
    cleanups.push(() => client.close());
    const error = await expectDkvError(() => client.store(storeShard).get("k"), "SERIALIZER_MISMATCH");
    expect(error.message).toContain("--serializer binary");
  });

  test("GetDBInfo is reachable over RPC", async () => {
    const s = await stack("tcp", "binary");
    await s.client.store(storeShard).set("a", "1");
    const info = await s.client.info(storeShard);
    expect(info.kind).toBe("lstore");
    expect(info.keys).toBe(1);
  });
});

describe("retries are applied at most once", () => {
  test("a retried set with the same request id does not overwrite a later write", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    const client = { clientIdHigh: 1, clientIdLow: 2 };
    raw.send("set", { key: "k", value: "first" }, 10, client);
    raw.send("set", { key: "k", value: "second" }, 11, client);
    await raw.waitFor(2);
    raw.send("set", { key: "k", value: "first" }, 10, client);
    const replies = await raw.waitFor(3);
    expect(replies[2]?.header.requestId).toBe(10);
    expect(replies[2]?.error).toBeUndefined();
    expect(new TextDecoder().decode(await s.store.get("k"))).toBe("second");
    raw.close();
  });

  test("a retried acquire returns the original owner and token, even while the first is still waiting", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    const client = { clientIdHigh: 7, clientIdLow: 8, shard: lockShard };
    raw.send("acquire", { key: "lock", ttlMs: 0, waitMs: 0 }, 1, client);
    raw.send("acquire", { key: "lock", ttlMs: 0, waitMs: 0 }, 1, client);
    const replies = await raw.waitFor(2);
    expect(replies).toHaveLength(2);
    expect(replies[0]?.response?.acquired).toBe(true);
    expect(replies[1]?.response).toEqual(replies[0]!.response!);
    // Exactly one holder: a third party cannot take it.
    expect((await s.client.locks(lockShard).acquire("lock", 0)).acquired).toBe(false);
    raw.close();
  });

  test("a write without a client id is not deduplicated", async () => {
    const s = await stack("tcp", "binary");
    const raw = await rawConnection(s.server.endpoint);
    raw.send("setEIfUnset", { key: "k", value: "v", expireInMs: 0, deleteInMs: 0 }, 1);
    raw.send("delete", { key: "k" }, 2);
    raw.send("setEIfUnset", { key: "k", value: "v", expireInMs: 0, deleteInMs: 0 }, 1);
    const replies = await raw.waitFor(3);
    // Replies may come back in any order; both anonymous setEIfUnset calls wrote.
    expect(replies.filter((r) => r.header.requestId === 1).map((r) => r.response?.written)).toEqual([
      true,
      true,
    ]);
    raw.close();
  });
});

/** An IStore whose operations never answer, to provoke timeouts. */
function hangingStore(): IStore {
  const never = () => new Promise<never>(() => {});
  return {
    set: never,
    setE: never,
    setEIfUnset: never,
    expire: never,
    delete: never,
    get: never,
    has: never,
    info: never,
    claim: never,
    deleteIfEquals: never,
    renewIfEquals: never,
    getEntry: never,
    list: never,
    count: never,
    txn: never,
    watch: () => {
      throw new Error("not used: a hanging store has no changes to watch");
    },
    close: async () => {},
  };
}

describe("client failure handling", () => {
  test("a write with no reply times out as TIMEOUT with outcome unknown", async () => {
    const server = await startRpcServer({
      transport: "tcp",
      serializer: "binary",
      endpoint: "127.0.0.1:0",
      shards: new Map([[1, { kind: "store", store: hangingStore() }]]),
      drainTimeoutMs: 10,
    });
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [server.endpoint],
      timeoutMs: 100,
    });
    cleanups.push(
      () => server.stop(),
      () => client.close(),
    );
    const error = await expectDkvError(() => client.store(1).set("k", "v"), "TIMEOUT");
    expect(error.outcome).toBe("unknown");
  });

  test("the server answers requests it could not finish in --request-timeout with TIMEOUT, each once, and others still work", async () => {
    const working = new LocalStore({ db: new ModelKVDB(), purgeIntervalMs: 0 });
    const server = await startRpcServer({
      transport: "tcp",
      serializer: "binary",
      endpoint: "127.0.0.1:0",
      shards: new Map([
        [1, { kind: "store", store: hangingStore() }],
        [2, { kind: "store", store: working }],
      ]),
      requestTimeoutMs: 80,
      drainTimeoutMs: 10,
    });
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [server.endpoint],
      timeoutMs: 5_000,
      retryCount: 0,
    });
    cleanups.push(
      () => server.stop(),
      () => client.close(),
    );
    const startMs = performance.now();
    // Two waves: the second joins while the first waits, so each must time out on its own deadline.
    const first = Array.from({ length: 5 }, (_, i) =>
      client
        .store(1)
        .set(`a${i}`, "v")
        .catch((e: unknown) => e),
    );
    await client.store(2).set("x", "1");
    await Bun.sleep(30);
    const second = Array.from({ length: 5 }, (_, i) =>
      client
        .store(1)
        .set(`b${i}`, "v")
        .catch((e: unknown) => e),
    );
    for (const error of await Promise.all([...first, ...second])) {
      expect(DkvError.is(error, "TIMEOUT")).toBe(true);
      expect((error as DkvError).message).toContain("within 80 ms");
      expect((error as DkvError).outcome).toBe("unknown");
    }
    const elapsedMs = performance.now() - startMs;
    expect(elapsedMs).toBeGreaterThanOrEqual(100);
    expect(elapsedMs).toBeLessThan(4_000);
    expect(new TextDecoder().decode(await client.store(2).get("x"))).toBe("1");
  });

  test("a member's UNAVAILABLE is retried on another endpoint with the same request id", async () => {
    // Member A answers UNAVAILABLE with outcome unknown (its leader went away mid-forward);
    // member B has the write. The client retries on B and gets B's answer.
    const seen: string[] = [];
    const unavailable = hangingStore();
    unavailable.set = async (key: string) => {
      seen.push(`a:${key}`);
      throw new DkvError("UNAVAILABLE", "the leader went away; retry", { outcome: "unknown" });
    };
    const working = new LocalStore({ db: new ModelKVDB(), purgeIntervalMs: 0 });
    const servers = await Promise.all(
      [unavailable, working].map((store) =>
        startRpcServer({
          transport: "tcp",
          serializer: "binary",
          endpoint: "127.0.0.1:0",
          shards: new Map([[1, { kind: "store", store }]]),
          drainTimeoutMs: 10,
        }),
      ),
    );
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: servers.map((server) => server.endpoint),
      timeoutMs: 2000,
    });
    cleanups.push(
      async () => {
        for (const server of servers) await server.stop();
      },
      () => client.close(),
      () => working.close(),
    );
    await client.store(1).set("k", "v");
    expect(seen).toEqual(["a:k"]);
    expect(new TextDecoder().decode((await working.get("k"))!)).toBe("v");
    // With only the unavailable member, the error reaches the caller once retries run out.
    const lonely = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [servers[0]!.endpoint],
      timeoutMs: 2000,
    });
    cleanups.push(() => lonely.close());
    const error = await expectDkvError(() => lonely.store(1).set("j", "v"), "UNAVAILABLE");
    expect(error.outcome).toBe("unknown");
    // The member ran it once; its per-server request cache answered the retries.
    expect(seen.filter((key) => key === "a:j")).toEqual(["a:j"]);
  });

  test("a request never sent (nobody listening) fails as not-applied", async () => {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const endpoint = `127.0.0.1:${probe.port}`;
    probe.stop(true);
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [endpoint],
      timeoutMs: 2000,
    });
    cleanups.push(() => client.close());
    const error = await expectDkvError(() => client.store(1).set("k", "v"), "UNAVAILABLE");
    expect(error.outcome).toBe("not-applied");
  });

  test("the client reconnects after the server restarts on the same port", async () => {
    const s = await stack("tcp", "binary");
    const store = s.client.store(storeShard);
    await store.set("k", "v");
    const endpoint = s.server.endpoint;
    await s.server.stop();
    const restarted = await startRpcServer({
      transport: "tcp",
      serializer: "binary",
      endpoint,
      shards: s.shards,
    });
    cleanups.push(() => restarted.stop());
    expect(new TextDecoder().decode(await store.get("k"))).toBe("v");
  });

  test("stop() lets an in-flight request finish", async () => {
    const s = await stack("tcp", "binary");
    const locks = s.client.locks(lockShard);
    const holder = await locks.acquire("lock", 0);
    const waiting = locks.acquire("lock", 0, { waitMs: 5000 });
    await Bun.sleep(5);
    const stopping = s.server.stop();
    await s.locks.release("lock", holder.ownerId!);
    for (let i = 0; i < 10; i++) await s.clock.advance(20);
    expect((await waiting).acquired).toBe(true);
    await stopping;
  });

  test("many pipelined requests on one connection each get their own answer", async () => {
    const s = await stack("tcp", "binary");
    const store = s.client.store(storeShard);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => store.set(`k${i}`, `v${i}`)));
    const values = await Promise.all(Array.from({ length: 1000 }, (_, i) => store.get(`k${i}`)));
    expect(values.map((v) => new TextDecoder().decode(v))).toEqual(
      Array.from({ length: 1000 }, (_, i) => `v${i}`),
    );
  });

  test("requests are balanced round-robin across endpoints", async () => {
    const a = await stack("tcp", "binary");
    const b = await stack("tcp", "binary");
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [a.server.endpoint, b.server.endpoint],
    });
    cleanups.push(() => client.close());
    for (let i = 0; i < 10; i++) await client.store(storeShard).set(`k${i}`, "v");
    expect((await a.store.info()).keys).toBe(5);
    expect((await b.store.info()).keys).toBe(5);
  });
});

describe("http for humans", () => {
  test("the documented curl example works: set then get with JSON", async () => {
    const s = await stack("http", "binary");
    const base = `http://${s.server.endpoint}`;
    const set = await fetch(`${base}/v1/100/set`, { method: "POST", body: '{"key":"foo","value":"bar"}' });
    expect(await set.json()).toEqual({ ok: true });
    const get = await fetch(`${base}/v1/100/get`, { method: "POST", body: '{"key":"foo"}' });
    expect(await get.json()).toEqual({
      found: true,
      value: "bar",
      version: 1,
      createRevision: 1,
      modRevision: 1,
    });
    const missing = await fetch(`${base}/v1/100/get`, { method: "POST", body: '{"key":"nope"}' });
    expect(await missing.json()).toEqual({ found: false });
  });

  test("list over JSON: a prefix page with values as text", async () => {
    const s = await stack("http", "binary");
    const base = `http://${s.server.endpoint}`;
    for (const key of ["svc/b", "svc/a", "other"]) {
      await fetch(`${base}/v1/100/set`, { method: "POST", body: JSON.stringify({ key, value: key }) });
    }
    const page = await fetch(`${base}/v1/100/list`, { method: "POST", body: '{"prefix":"svc/","limit":1}' });
    expect(await page.json()).toEqual({
      items: [{ key: "svc/a", value: "svc/a", version: 1, createRevision: 2, modRevision: 2 }],
      more: true,
      next: "svc/a",
    });
    const count = await fetch(`${base}/v1/100/count`, { method: "POST", body: '{"prefix":"svc/"}' });
    expect(await count.json()).toEqual({ count: 2 });
  });

  test("locks over JSON return the token as a decimal string", async () => {
    const s = await stack("http", "binary");
    const response = await fetch(`http://${s.server.endpoint}/v1/200/acquire`, {
      method: "POST",
      body: '{"key":"job","ttlMs":30000}',
    });
    const body = (await response.json()) as { acquired: boolean; ownerId: string; fencingToken: string };
    expect(body.acquired).toBe(true);
    expect(body.fencingToken).toMatch(/^\d+$/);
  });

  test("errors come back as JSON with a status", async () => {
    const s = await stack("http", "binary");
    const response = await fetch(`http://${s.server.endpoint}/v1/9/get`, {
      method: "POST",
      body: '{"key":"k"}',
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe("UNKNOWN_SHARD");
    const bad = await fetch(`http://${s.server.endpoint}/v1/100/get`, { method: "POST", body: "not json" });
    expect(bad.status).toBe(400);
  });
});

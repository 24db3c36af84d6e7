import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import type { DkvError } from "../../src/errors.ts";
import { type CallOwner, ClientCall } from "../../src/rpc/client/call.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { SocketChannel } from "../../src/rpc/client/socket-channel.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { parseEndpoint } from "../../src/rpc/protocol/endpoint.ts";
import {
  beginFrame,
  defaultMaxFrameBytes,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagResponse,
} from "../../src/rpc/protocol/frame.ts";
import { type Message, wireRequestSchemas, wireResponseSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";

/**
 * The client writes the requests of one turn to a connection in one socket write (a
 * microtask flushes what the turn queued; on a connection with other calls in flight, the
 * end of the event-loop iteration), and batching must not blur calls: each settles once,
 * with its own reply or its own deadline.
 */
const binary = createSerializer("binary");

interface RawServer {
  endpoint: string;
  /** Request frames received, all connections. */
  frames: number;
  stop(): void;
}

let servers: RawServer[] = [];
afterEach(() => {
  for (const server of servers) server.stop();
  servers = [];
});

/** A tcp server on 127.0.0.1:0 answering every `set` at once, except sets of the key "silent". */
function startRawServer(): RawServer {
  const decoders = new Map<Socket<undefined>, FrameDecoder>();
  const state = { frames: 0 };
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        const out = new ByteWriter(4096);
        decoders.set(
          socket,
          new FrameDecoder(defaultMaxFrameBytes, {
            onFrame: (header: FrameHeader, body: Uint8Array) => {
              state.frames++;
              const request = binary.read(wireRequestSchemas.set, body) as Message;
              if (request.key === "silent") return;
              const start = beginFrame(out);
              binary.write(wireResponseSchemas.set, {}, out);
              finishFrame(out, start, { ...header, flags: flagResponse });
            },
            onOversized: () => socket.terminate(),
            onCorrupt: () => socket.terminate(),
          }),
        );
        // Replies of one chunk go out together once the chunk is decoded.
        (socket as unknown as { out: ByteWriter }).out = out;
      },
      data(socket, chunk) {
        const out = (socket as unknown as { out: ByteWriter }).out;
        if (!decoders.get(socket)?.push(chunk)) socket.terminate();
        if (out.length > 0) {
          socket.write(out.written());
          out.reset();
        }
      },
      close(socket) {
        decoders.delete(socket);
      },
    },
  });
  const server: RawServer = {
    endpoint: `127.0.0.1:${listener.port}`,
    get frames() {
      return state.frames;
    },
    stop: () => listener.stop(true),
  };
  servers.push(server);
  return server;
}

/** Records what the channel reports, per request id. */
class RecordingOwner implements CallOwner {
  readonly completions = new Map<number, number>();
  readonly failures: DkvError[] = [];
  private waiter: { count: number; resolve: () => void } | undefined;

  complete(call: ClientCall, _response: Message | undefined, error: DkvError | undefined): void {
    if (error !== undefined) this.failures.push(error);
    this.completions.set(call.requestId, (this.completions.get(call.requestId) ?? 0) + 1);
    this.check();
  }

  failed(_call: ClientCall, error: DkvError): void {
    this.failures.push(error);
    this.check();
  }

  /** Resolves once `count` completions (of any calls) have come. */
  until(count: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.waiter = { count, resolve };
    this.check();
    return promise;
  }

  private check(): void {
    let total = 0;
    for (const n of this.completions.values()) total += n;
    if (this.waiter !== undefined && total + this.failures.length >= this.waiter.count) this.waiter.resolve();
  }
}

function setCall(requestId: number, key: string): ClientCall {
  const noop = () => {};
  return new ClientCall(
    1,
    "set",
    { key, value: new Uint8Array(128) },
    requestId,
    performance.now() + 5_000,
    noop,
    noop,
  );
}

/** A channel to `endpoint` whose calls report to `owner`. */
function channelTo(endpoint: string, owner: RecordingOwner): SocketChannel {
  return new SocketChannel({
    endpointText: endpoint,
    endpoint: parseEndpoint("tcp", endpoint),
    serializer: binary,
    maxFrameBytes: defaultMaxFrameBytes,
    clientIdHigh: 1,
    clientIdLow: 2,
    owner,
  });
}

describe("client request batching", () => {
  test("100 calls made in one turn leave in one socket write, and each is answered once", async () => {
    const server = startRawServer();
    const owner = new RecordingOwner();
    const channel = channelTo(server.endpoint, owner);
    try {
      // Connect first: calls made while connecting are written together once it opens.
      channel.send(setCall(1, "warm"));
      await owner.until(1);
      const writesBefore = channel.socketWrites;
      for (let id = 2; id <= 101; id++) channel.send(setCall(id, `k${id}`));
      expect(channel.socketWrites).toBe(writesBefore); // nothing written synchronously
      await owner.until(101);
      expect(channel.socketWrites - writesBefore).toBe(1);
      expect(server.frames).toBe(101);
      expect(owner.failures).toEqual([]);
      expect(owner.completions.size).toBe(101);
      expect([...owner.completions.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await channel.close();
    }
  });

  test("calls made in separate turns are written separately (nothing waits for company)", async () => {
    const server = startRawServer();
    const owner = new RecordingOwner();
    const channel = channelTo(server.endpoint, owner);
    try {
      channel.send(setCall(1, "warm"));
      await owner.until(1);
      const writesBefore = channel.socketWrites;
      for (let id = 2; id <= 4; id++) {
        channel.send(setCall(id, `k${id}`));
        await owner.until(id);
      }
      expect(channel.socketWrites - writesBefore).toBe(3);
    } finally {
      await channel.close();
    }
  });

  test("with calls in flight, calls made in separate tasks of one iteration leave in one write", async () => {
    const server = startRawServer();
    const owner = new RecordingOwner();
    const channel = channelTo(server.endpoint, owner);
    try {
      channel.send(setCall(1, "warm"));
      await owner.until(1);
      channel.send(setCall(2, "silent")); // stays in flight: the connection is busy from here on
      await Bun.sleep(5);
      const writesBefore = channel.socketWrites;
      // Each call in a task of its own (a microtask apart), as callers resumed by replies are.
      channel.send(setCall(3, "k3"));
      await Promise.resolve();
      channel.send(setCall(4, "k4"));
      await Promise.resolve();
      channel.send(setCall(5, "k5"));
      await owner.until(4);
      expect(channel.socketWrites - writesBefore).toBe(1);
      expect(server.frames).toBe(5);
      expect(owner.failures).toEqual([]);
    } finally {
      await channel.close();
    }
  });

  test("a batched call the server never answers times out on its own; the rest of its batch resolve", async () => {
    const server = startRawServer();
    await using client = new RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 300,
      retryCount: 0,
    });
    const store = client.store(1);
    await store.set("warm", new Uint8Array(1));
    const settled: string[] = [];
    const calls = Array.from({ length: 50 }, (_, i) => {
      const key = i === 25 ? "silent" : `k${i}`;
      return store.set(key, new Uint8Array(128)).then(
        () => settled.push(`ok ${key}`),
        (error: DkvError) => settled.push(`${error.code} ${error.outcome} ${key}`),
      );
    });
    const startMs = performance.now();
    await Promise.all(calls);
    expect(performance.now() - startMs).toBeGreaterThanOrEqual(250);
    expect(settled.length).toBe(50);
    expect(settled.filter((s) => s.startsWith("ok ")).length).toBe(49);
    expect(settled).toContain("TIMEOUT unknown silent");
  });

  test("close() fails every call still in flight, once, outcome unknown", async () => {
    const server = startRawServer();
    const client = new RpcClient({ endpoints: [server.endpoint], transport: "tcp", serializer: "binary" });
    const store = client.store(1);
    await store.set("warm", new Uint8Array(1));
    const settled: string[] = [];
    const pending = [1, 2, 3].map((i) =>
      store.set("silent", new Uint8Array(i)).then(
        () => settled.push("ok"),
        (error: DkvError) => {
          expect(error.code).toBe("CLOSED");
          settled.push(`failed ${error.outcome}`);
        },
      ),
    );
    const answered = store.set("answered", new Uint8Array(1)).then(() => settled.push("answered"));
    await answered;
    await client.close();
    await Promise.all(pending);
    expect(settled.sort()).toEqual(["answered", "failed unknown", "failed unknown", "failed unknown"]);
  });
});

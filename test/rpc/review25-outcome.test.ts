import { describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";

// review25: callVoid/callField (RpcStore's set, get, has, ...) fail as call() does.

/** A tcp server that reads requests and either never answers or drops the connection. */
function rawServer(mode: "silent" | "drop") {
  return Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        if (mode === "drop") socket.terminate();
      },
    },
  });
}

async function failure(promise: Promise<unknown>): Promise<DkvError> {
  try {
    await promise;
  } catch (error) {
    return error as DkvError;
  }
  throw new Error("expected a rejection");
}

describe("review25 callVoid/callField failures", () => {
  test("no reply: a write times out with outcome unknown, a read with not-applied", async () => {
    const server = rawServer("silent");
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [`127.0.0.1:${server.port}`],
      timeoutMs: 150,
    });
    try {
      const store = client.store(1);
      const [set, get, has, setE] = await Promise.all([
        failure(store.set("k", "v")),
        failure(store.get("k")),
        failure(store.has("k")),
        failure(store.setEIfUnset("k", "v", 0, 0)),
      ]);
      expect(set.code).toBe("TIMEOUT");
      expect(set.outcome).toBe("unknown");
      expect(setE.outcome).toBe("unknown");
      expect(get.code).toBe("TIMEOUT");
      expect(get.outcome).toBe("not-applied");
      expect(has.outcome).toBe("not-applied");
    } finally {
      await client.close();
      server.stop(true);
    }
  });

  test("a dropped connection: a write fails UNAVAILABLE, unknown, after its retries", async () => {
    const server = rawServer("drop");
    const client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [`127.0.0.1:${server.port}`],
      timeoutMs: 2_000,
      retryCount: 2,
    });
    try {
      const store = client.store(1);
      const set = await failure(store.delete("k"));
      expect(set.code).toBe("UNAVAILABLE");
      expect(set.outcome).toBe("unknown");
      const get = await failure(store.get("k"));
      expect(get.code).toBe("UNAVAILABLE");
      expect(get.outcome).toBe("not-applied");
    } finally {
      await client.close();
      server.stop(true);
    }
  });

  test("a closed client rejects callVoid/callField at once with CLOSED (a rejection, not a throw)", async () => {
    const client = new RpcClient({ transport: "tcp", serializer: "binary", endpoints: ["127.0.0.1:1"] });
    await client.close();
    const store = client.store(1);
    const p = store.set("k", "v");
    expect(p).toBeInstanceOf(Promise);
    expect((await failure(p)).code).toBe("CLOSED");
    expect((await failure(store.get("k"))).code).toBe("CLOSED");
  });
});

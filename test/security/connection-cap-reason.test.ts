import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RpcClient, type RpcClientOptions } from "../../src/rpc/client/index.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { startStack, storeShard } from "../rpc/harness.ts";
import { failureOf } from "../support/assertions.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

/**
 * A connection refused by --max-client-connections on tcp and unix is told why before the
 * close: a connection-level error frame (request id 0) naming the limit and the flag, as the
 * http listener answers 503. Before, the socket was cut without a word and the client could
 * only guess (with TLS it guessed client certificates).
 */
let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
}, 30_000);
afterAll(async () => {
  await pki?.remove();
});

function clientFor(
  endpoint: string,
  transport: TransportName,
  extra: Partial<RpcClientOptions> = {},
): RpcClient {
  return new RpcClient({
    transport,
    serializer: "binary",
    endpoints: [endpoint],
    timeoutMs: 8_000,
    retryCount: 1,
    ...extra,
  });
}

describe("a connection refused at --max-client-connections is told why", () => {
  for (const transport of ["tcp", "unix"] as const) {
    test(`${transport}: the server's reason, naming the limit and the flag`, async () => {
      const stack = await startStack(transport, "binary", { server: { limits: { maxConnections: 1 } } });
      try {
        await using first = clientFor(stack.server.endpoint, transport);
        await first.store(storeShard).has("k"); // holds the only slot
        await using second = clientFor(stack.server.endpoint, transport);
        const error = await failureOf(second.store(storeShard).get("k"));
        expect(error.code).toBe("UNAVAILABLE");
        // The server's words (not the client's guess "lost the connection ... may be at"):
        expect(error.message).toContain("closed the connection: the server has 1 client connections open");
        expect(error.message).toContain("--max-client-connections");
      } finally {
        await stack.close();
      }
    });
  }

  test("tcp with TLS: the reason arrives after the handshake (not a hint about client certificates)", async () => {
    const stack = await startStack("tcp", "binary", {
      server: {
        limits: { maxConnections: 1 },
        tls: { cert: pki.member.cert, key: pki.member.key, requireClientCert: false },
      },
    });
    try {
      const tls = { tls: { ca: pki.ca.cert } };
      await using first = clientFor(stack.server.endpoint, "tcp", tls);
      await first.store(storeShard).has("k");
      await using second = clientFor(stack.server.endpoint, "tcp", tls);
      const error = await failureOf(second.store(storeShard).get("k"));
      expect(error.message).toContain("the server has 1 client connections open (--max-client-connections)");
      expect(error.message).not.toContain("client certificates");
    } finally {
      await stack.close();
    }
  });
});

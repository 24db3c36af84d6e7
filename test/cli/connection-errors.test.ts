import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";
import { makeTestPki, type TestPki } from "../security/pki.ts";
import { failureOf } from "../support/assertions.ts";

/**
 * A client that speaks the wrong protocol to a server (plain to TLS, tcp to http, http to
 * tcp) is told at once which flag to fix, as BAD_FRAME (exit 1) that was certainly not applied;
 * a refusal by the connection limit names the limit, not TLS.
 */
let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
}, 30_000);
afterAll(async () => {
  await pki?.remove();
});

function clientFor(stack: Stack, transport: TransportName): RpcClient {
  return new RpcClient({
    transport,
    serializer: "binary",
    endpoints: [stack.server.endpoint],
    timeoutMs: 8_000,
    retryCount: 1,
  });
}

describe("connection errors that point the right way", () => {
  test("a plain client to a TLS server is told to pass --cacert (a write: not-applied)", async () => {
    const stack = await startStack("tcp", "binary", {
      server: { tls: { cert: pki.member.cert, key: pki.member.key, requireClientCert: false } },
      client: { tls: { ca: pki.ca.cert } },
    });
    try {
      await using client = clientFor(stack, "tcp");
      const error = await failureOf(client.store(storeShard).set("k", "v"));
      expect(error.code).toBe("BAD_FRAME");
      expect(error.outcome).toBe("not-applied");
      expect(error.message).toContain("--cacert");
    } finally {
      await stack.close();
    }
  });

  test("a tcp client to an http server fails at once and names --transport", async () => {
    const stack = await startStack("http", "binary");
    try {
      await using client = clientFor(stack, "tcp");
      const started = performance.now();
      const error = await failureOf(client.store(storeShard).get("k"));
      expect(error.code).toBe("BAD_FRAME");
      expect(error.message).toContain("--transport http");
      // Not the request timeout (8 s): the server's HTTP answer is recognised.
      expect(performance.now() - started).toBeLessThan(4_000);
    } finally {
      await stack.close();
    }
  });

  test("an http client to a tcp server names --transport", async () => {
    const stack = await startStack("tcp", "binary");
    try {
      await using client = clientFor(stack, "http");
      const error = await failureOf(client.store(storeShard).set("k", "v"));
      expect(error.code).toBe("BAD_FRAME");
      expect(error.outcome).toBe("not-applied");
      expect(error.message).toContain("--transport tcp");
      expect(await stack.store.has("k")).toBe(false);
    } finally {
      await stack.close();
    }
  });

  test("a request over 4 KiB without a token is told the token is missing, not to raise a limit", async () => {
    const authFile = JSON.stringify({
      tokens: [{ name: "t", sha256: tokenSha256("tok-123"), role: "write" }],
    });
    const stack = await startStack("tcp", "binary", {
      server: { authority: new TokenAuthority(parseAuthFile(authFile, "test")) },
    });
    try {
      await using client = clientFor(stack, "tcp");
      const error = await failureOf(client.store(storeShard).set("k", "v".repeat(5000)));
      expect(error.code).toBe("UNAUTHENTICATED");
      expect(error.message).toContain("--token");
      expect(error.message).not.toContain("raise the limit");
    } finally {
      await stack.close();
    }
  });
});

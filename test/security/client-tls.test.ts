import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { ClientTls } from "../../src/rpc/client/socket-channel.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { isLoopbackHost, loadServerTls, type ServerTls, startRpcServer } from "../../src/rpc/server/index.ts";
import { freshEndpoint, type Stack, startStack, storeShard } from "../rpc/harness.ts";
import { failureOf } from "../support/assertions.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki.remove();
});

function serverTls(which: "member" | "expiredMember" | "otherMember", requireClientCert = false): ServerTls {
  const pem = pki[which];
  return requireClientCert
    ? { cert: pem.cert, key: pem.key, ca: pki.ca.cert, requireClientCert }
    : { cert: pem.cert, key: pem.key, requireClientCert };
}

/** A second client on the same server, with its own TLS settings. */
function clientFor(stack: Stack, transport: TransportName, tls: ClientTls | undefined): RpcClient {
  return new RpcClient({
    transport,
    serializer: "binary",
    endpoints: [stack.server.endpoint],
    timeoutMs: 3_000,
    retryCount: 0,
    ...(tls === undefined ? {} : { tls }),
  });
}

describe.each(["tcp", "http"] as const)("client TLS over %s", (transport) => {
  test("a client that trusts the CA reads and writes", async () => {
    const stack = await startStack(transport, "binary", {
      server: { tls: serverTls("member") },
      client: { tls: { ca: pki.ca.cert } },
    });
    try {
      await stack.client.store(storeShard).set("k", "v");
      expect(new TextDecoder().decode(await stack.client.store(storeShard).get("k"))).toBe("v");
    } finally {
      await stack.close();
    }
  });

  test("a server certificate from another CA is refused, and nothing is written", async () => {
    const stack = await startStack(transport, "binary", { server: { tls: serverTls("otherMember") } });
    const client = clientFor(stack, transport, { ca: pki.ca.cert });
    try {
      const error = await failureOf(client.store(storeShard).set("k", "v"));
      expect(error.code).toBe("UNAVAILABLE");
      expect(error.message).toContain("TLS handshake failed");
      expect(error.outcome).toBe("not-applied");
      expect(await stack.store.has("k")).toBe(false);
    } finally {
      await client.close();
      await stack.close();
    }
  });

  test("an expired server certificate is refused", async () => {
    const stack = await startStack(transport, "binary", { server: { tls: serverTls("expiredMember") } });
    const client = clientFor(stack, transport, { ca: pki.ca.cert });
    try {
      const error = await failureOf(client.store(storeShard).get("k"));
      expect(error.message).toContain("TLS handshake failed");
      expect(error.message.toLowerCase()).toContain("expired");
    } finally {
      await client.close();
      await stack.close();
    }
  });

  test("--insecure-skip-tls-verify connects to any certificate", async () => {
    const stack = await startStack(transport, "binary", { server: { tls: serverTls("otherMember") } });
    const client = clientFor(stack, transport, { skipVerify: true });
    try {
      expect(await client.store(storeShard).has("k")).toBe(false);
    } finally {
      await client.close();
      await stack.close();
    }
  });

  test("a plain client cannot talk to a TLS listener", async () => {
    const stack = await startStack(transport, "binary", { server: { tls: serverTls("member") } });
    const client = clientFor(stack, transport, undefined);
    try {
      const error = await failureOf(client.store(storeShard).set("k", "v"));
      expect(["UNAVAILABLE", "TIMEOUT", "BAD_FRAME"]).toContain(error.code);
      expect(await stack.store.has("k")).toBe(false);
    } finally {
      await client.close();
      await stack.close();
    }
  });

  describe("with --client-cert-auth", () => {
    test("a client certificate signed by the trusted CA is accepted", async () => {
      const stack = await startStack(transport, "binary", {
        server: { tls: serverTls("member", true) },
        client: { tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      });
      try {
        await stack.client.store(storeShard).set("k", "v");
        expect(await stack.store.has("k")).toBe(true);
      } finally {
        await stack.close();
      }
    });

    test.each([
      ["no client certificate", undefined],
      ["a client certificate from another CA", "otherClient"],
      ["an expired client certificate", "expiredClient"],
    ] as const)("%s is refused and nothing is written", async (_, which) => {
      const stack = await startStack(transport, "binary", { server: { tls: serverTls("member", true) } });
      const pem = which === undefined ? undefined : pki[which];
      const client = clientFor(stack, transport, {
        ca: pki.ca.cert,
        ...(pem === undefined ? {} : { cert: pem.cert, key: pem.key }),
      });
      try {
        const error = await failureOf(client.store(storeShard).set("k", "v"));
        expect(["UNAVAILABLE", "TIMEOUT"]).toContain(error.code);
        expect(await stack.store.has("k")).toBe(false);
      } finally {
        await client.close();
        await stack.close();
      }
    });
  });
});

describe("protected mode", () => {
  const base = { transport: "tcp" as const, serializer: "binary" as const, shards: new Map() };

  test("a non-loopback listener without TLS is refused with a clear error", async () => {
    const error = await failureOf(startRpcServer({ ...base, endpoint: "0.0.0.0:0" }));
    expect(error.code).toBe("USAGE");
    expect(error.message).toContain("refusing to listen on 0.0.0.0");
    expect(error.message).toContain("--insecure");
  });

  test("--insecure starts it and logs a warning", async () => {
    const warnings: string[] = [];
    const server = await startRpcServer({
      ...base,
      endpoint: "0.0.0.0:0",
      allowInsecure: true,
      logger: { info() {}, debug() {}, warn: (m) => warnings.push(m) },
    });
    await server.stop();
    expect(warnings.some((w) => w.includes("without TLS"))).toBe(true);
  });

  test("with TLS a non-loopback listener starts; loopback needs nothing", async () => {
    const tlsServer = await startRpcServer({ ...base, endpoint: "0.0.0.0:0", tls: serverTls("member") });
    await tlsServer.stop();
    const loopback = await startRpcServer({ ...base, endpoint: "127.0.0.1:0" });
    await loopback.stop();
  });

  test("loopback names and addresses count as loopback; others do not", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "::ffff:127.0.0.1"]) {
      expect(isLoopbackHost(host)).toBe(true);
    }
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com", "128.0.0.1", "localhost.example.com"]) {
      expect(isLoopbackHost(host)).toBe(false);
    }
  });

  test("a unix socket is created readable and writable by its owner only", async () => {
    const endpoint = freshEndpoint("unix");
    const server = await startRpcServer({ ...base, transport: "unix", endpoint });
    try {
      expect(statSync(endpoint).mode & 0o777).toBe(0o600);
    } finally {
      await server.stop();
    }
  });
});

describe("loadServerTls", () => {
  test("a key that is not the certificate's is refused at start", async () => {
    const error = await failureOf(
      loadServerTls({ certFile: pki.file("member.crt"), keyFile: pki.file("otherMember.key") }),
    );
    expect(error.code).toBe("USAGE");
    expect(error.message).toContain("is not the key of");
  });

  test("--client-cert-auth needs --trusted-ca-file, and --cert-file needs --key-file", async () => {
    expect(
      (
        await failureOf(
          loadServerTls({
            certFile: pki.file("member.crt"),
            keyFile: pki.file("member.key"),
            clientCertAuth: true,
          }),
        )
      ).message,
    ).toContain("--trusted-ca-file");
    expect((await failureOf(loadServerTls({ certFile: pki.file("member.crt") }))).message).toContain(
      "--key-file",
    );
  });

  test("valid files load, with the CA when client certificates are required", async () => {
    const tls = await loadServerTls({
      certFile: pki.file("member.crt"),
      keyFile: pki.file("member.key"),
      trustedCaFile: pki.file("ca.crt"),
      clientCertAuth: true,
    });
    expect(tls?.requireClientCert).toBe(true);
    expect(tls?.ca).toBe(pki.ca.cert);
  });
});

describe("data directories", () => {
  test("a new data dir is created readable by its owner only", async () => {
    const { checkDataDir } = await import("../../src/server/shards.ts");
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const parent = await mkdtemp(join(tmpdir(), "dkv-datadir-"));
    try {
      const dir = await checkDataDir(join(parent, "node-1"));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});

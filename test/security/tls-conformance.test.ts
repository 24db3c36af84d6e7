import { afterAll, beforeAll } from "bun:test";
import { TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { runLockConformance } from "../conformance/lock-conformance.ts";
import { runStoreConformance } from "../conformance/store-conformance.ts";
import { lockShard, type Stack, startStack, storeShard, testLimits } from "../rpc/harness.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

/**
 * The store and lock contracts hold unchanged over mutual TLS with token auth on: the
 * security layer refuses nothing a permitted client asks for and changes no result.
 */

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki.remove();
});

const token = "conformance-token-0123456789";

async function secureStack(transport: TransportName): Promise<Stack> {
  const authority = new TokenAuthority({
    grants: new Map([
      [
        tokenSha256(token),
        { name: "suite", sha256: tokenSha256(token), role: "write", shards: undefined, prefixes: undefined },
      ],
    ]),
  });
  return startStack(transport, "binary", {
    server: {
      tls: { cert: pki.member.cert, key: pki.member.key, ca: pki.ca.cert, requireClientCert: true },
      authority,
    },
    client: {
      tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      token,
    },
  });
}

for (const transport of ["tcp", "http"] as const) {
  runStoreConformance(`RpcClient ${transport}+mTLS+token`, async () => {
    const stack = await secureStack(transport);
    return {
      store: stack.client.store(storeShard),
      clock: stack.clock,
      limits: testLimits,
      close: stack.close,
    };
  });
  runLockConformance(`RpcClient ${transport}+mTLS+token`, async () => {
    const stack = await secureStack(transport);
    // Connect (and hand-shake) before the suite: its "answers at once" tests allow no time for it.
    await stack.client.info(storeShard);
    return { locks: stack.client.locks(lockShard), clock: stack.clock, close: stack.close };
  });
}

import { expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";

/**
 * review19: a membership change (add, remove, promote, transfer) that times out after it
 * was sent may have been carried out, in part or whole: its error must say `unknown`, not
 * `not-applied` with "a read changes nothing" (the contract: not-applied only when the
 * server certainly did not apply it).
 */
test("a membership change with no reply is outcome unknown, not a read that is safe to retry", async () => {
  let accepted = 0;
  // A server that reads the request and never answers (a carrier stuck on a group's leader).
  const silent = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        accepted++;
      },
      data() {},
    },
  });
  const client = new RpcClient({
    endpoints: [`127.0.0.1:${silent.port}`],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 300,
    retryCount: 0,
  });
  try {
    const error = await client.membership({ action: "remove", id: "node-3" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(accepted).toBe(1);
    expect(DkvError.is(error)).toBe(true);
    const failure = error as DkvError;
    expect(failure.code).toBe("TIMEOUT");
    expect(failure.outcome).toBe("unknown");
    expect(failure.message).not.toContain("a read changes nothing");
  } finally {
    await client.close();
    silent.stop(true);
  }
});

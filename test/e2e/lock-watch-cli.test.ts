import { afterEach, describe, expect, test } from "bun:test";
import { runCli } from "../../cli/app.ts";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { lockShard, type Stack, startStack } from "../rpc/harness.ts";
import { capturingIo } from "../support/cli-io.ts";
import { flushIo } from "../support/drive.ts";

/** `dkv lock watch KEY OWNER_ID`: waits for the lock to be lost, over tcp and http. */
let stack: Stack | undefined;

afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function run(args: string[]): { done: Promise<number>; out(): string; err(): string } {
  const captured = capturingIo();
  const done = runCli(
    ["lock", ...args, "--endpoints", stack!.server.endpoint, "--shard", String(lockShard)],
    captured.io,
  );
  return { done, out: captured.out, err: captured.err };
}

describe.each(["tcp", "http"] as const)("dkv lock watch over %s", (transport) => {
  test("prints why once the holder's lock is released, and not before", async () => {
    stack = await startStack(transport, "binary");
    const holder = await stack.locks.acquire("jobs/nightly", 0);
    const watching = run(["watch", "jobs/nightly", holder.ownerId!, "--json", "--transport", transport]);
    let exited = false;
    void watching.done.then(() => {
      exited = true;
    });
    // The server watches the lock for this request once it has looked the owner up.
    await waitFor(() => stack!.lockStore.watcherCount > 0 || exited, "the server's watch on the lock");
    for (let i = 0; i < 20 && !exited; i++) await flushIo();
    expect(exited).toBe(false);
    await stack.locks.release("jobs/nightly", holder.ownerId!);
    expect(await watching.done).toBe(0);
    expect(JSON.parse(watching.out())).toEqual({ lost: true, reason: "released" });
  });

  test("an owner that does not hold the lock is told 'lost', nothing about the holder", async () => {
    stack = await startStack(transport, "binary");
    const holder = await stack.locks.acquire("jobs/nightly", 0);
    const other = "00112233445566778899aabbccddeeff";
    const watching = run(["watch", "jobs/nightly", other, "--transport", transport]);
    expect(await watching.done).toBe(0);
    expect(watching.out()).toBe("lost=lost\n");
    expect(watching.out()).not.toContain(holder.ownerId!);
  });
});

describe("watchLost and tokens (tcp)", () => {
  test("a read token whose prefixes cover the lock may watch it; other keys are refused", async () => {
    const writer = "lock-write-token-0123456789";
    const reader = "lock-read-token-0123456789";
    const authority = new TokenAuthority(
      parseAuthFile(
        JSON.stringify({
          tokens: [
            { name: "w", sha256: tokenSha256(writer), role: "write" },
            { name: "r", sha256: tokenSha256(reader), role: "read", prefixes: ["jobs/"] },
          ],
        }),
        "test",
      ),
    );
    stack = await startStack("tcp", "binary", { server: { authority }, client: { token: writer } });
    const holder = await stack.client.locks(lockShard).acquire("jobs/a", 0);
    const other = await stack.client.locks(lockShard).acquire("other", 0);
    const readOnly = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [stack.server.endpoint],
      token: reader,
    });
    try {
      await expect(readOnly.locks(lockShard).watchLost("other", other.ownerId!)).rejects.toMatchObject({
        code: "PERMISSION_DENIED",
      });
      // A read token cannot take or release locks, but may learn that its holder lost one.
      await expect(readOnly.locks(lockShard).release("jobs/a", holder.ownerId!)).rejects.toMatchObject({
        code: "PERMISSION_DENIED",
      });
      const lost = readOnly.locks(lockShard).watchLost("jobs/a", holder.ownerId!);
      await stack.client.locks(lockShard).release("jobs/a", holder.ownerId!);
      expect(await lost).toBe("released");
    } finally {
      await readOnly.close();
    }
  });
});

describe("watchLost as JSON over http (curl)", () => {
  test("answers the contract's shape; a released lock wakes a pending poll", async () => {
    stack = await startStack("http", "binary");
    const holder = await stack.locks.acquire("job", 0);
    const post = (body: unknown) =>
      fetch(`http://${stack!.server.endpoint}/v1/${lockShard}/watchLost`, {
        method: "POST",
        body: JSON.stringify(body),
      }).then((response) => response.json() as Promise<unknown>);
    expect(await post({ key: "job", ownerId: "00112233445566778899aabbccddeeff" })).toEqual({
      reason: "lost",
    });
    const pending = post({ key: "job", ownerId: holder.ownerId });
    await waitFor(() => stack!.lockStore.watcherCount > 0, "the server's watch on the lock");
    await stack.locks.release("job", holder.ownerId!);
    expect(await pending).toEqual({ reason: "released" });
  });
});

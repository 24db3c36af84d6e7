import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { FrameDecoder } from "../../src/rpc/protocol/frame.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";
import { writeReplyFrame } from "../../src/rpc/server/reply.ts";
import { type Stack, startStack, storeShard } from "./harness.ts";

/**
 * A member removed from the cluster but still running answers REMOVED (not-applied) to
 * every request. A client given several endpoints must go on to the next one, as it does
 * for UNAVAILABLE: before, `--endpoints removed,live` failed every request it sent first
 * to the removed member, although a live member was one endpoint away.
 */
let stack: Stack | undefined;
let removed: TCPSocketListener<FrameDecoder> | undefined;
afterEach(async () => {
  removed?.stop(true);
  removed = undefined;
  await stack?.close();
  stack = undefined;
});

/** A listener that answers every request as a removed member does. */
function startRemovedMember(): TCPSocketListener<FrameDecoder> {
  const serializer = createSerializer("binary");
  const logger = { debug() {}, info() {}, warn() {}, error() {} };
  return Bun.listen<FrameDecoder>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      binaryType: "uint8array",
      open(socket: Socket<FrameDecoder>) {
        socket.data = new FrameDecoder(1 << 20, {
          onFrame: (header) => {
            const out = new ByteWriter(256);
            const error = new DkvError(
              "REMOVED",
              "this member (node-1) was removed from the cluster; it no longer serves this cluster",
              { outcome: "not-applied" },
            );
            writeReplyFrame(out, header, serializer, undefined, error, logger);
            socket.write(out.written().slice());
          },
          onOversized: () => socket.terminate(),
          onCorrupt: () => socket.terminate(),
        });
      },
      data(socket: Socket<FrameDecoder>, chunk: Uint8Array) {
        socket.data.push(chunk);
      },
    },
  });
}

describe("a member that answers REMOVED", () => {
  test("the client goes on to the next endpoint, for reads and writes alike", async () => {
    stack = await startStack("tcp", "binary");
    removed = startRemovedMember();
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [`127.0.0.1:${removed.port}`, stack.server.endpoint],
      timeoutMs: 5_000,
    });
    const store = client.store(storeShard);
    for (let i = 0; i < 4; i++) {
      await store.set(`k${i}`, "v");
      expect(await store.has(`k${i}`)).toBe(true);
    }
    expect(await stack.store.has("k3")).toBe(true);
  });

  test("with only the removed member, its REMOVED reaches the caller (not-applied)", async () => {
    removed = startRemovedMember();
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [`127.0.0.1:${removed.port}`],
      timeoutMs: 5_000,
    });
    const failure = await client
      .store(storeShard)
      .set("k", "v")
      .then(
        () => undefined,
        (error: unknown) => error as DkvError,
      );
    expect(failure?.code).toBe("REMOVED");
    expect(failure?.outcome).toBe("not-applied");
  });
});

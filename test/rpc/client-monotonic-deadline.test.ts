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
 * The client's deadlines run on monotonic time (issue 9: "monotonic time for deadlines"):
 * a step of the wall clock (NTP, an operator's `date -s`) while a call is in flight must
 * neither end it early nor stretch it. Before, the call's deadline and the retry decision
 * read Date.now(): a wall clock stepped an hour forward made the first retry see the
 * deadline long gone, and the call failed although a live member was one endpoint away.
 */
let stack: Stack | undefined;
let busy: TCPSocketListener<FrameDecoder> | undefined;
const realDateNow = Date.now;
let wallClockStepMs = 0;
afterEach(async () => {
  Date.now = realDateNow;
  wallClockStepMs = 0;
  busy?.stop(true);
  busy = undefined;
  await stack?.close();
  stack = undefined;
});

/** A member that answers every request UNAVAILABLE (not applied), stepping the wall clock first. */
function startBusyMember(stepMs: number): TCPSocketListener<FrameDecoder> {
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
            wallClockStepMs = stepMs;
            const out = new ByteWriter(256);
            const error = new DkvError("UNAVAILABLE", "this member is busy; retry", {
              outcome: "not-applied",
            });
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

describe("a wall-clock step while a call is in flight", () => {
  test("an hour forward: the call still retries on the next endpoint within its deadline", async () => {
    stack = await startStack("tcp", "binary");
    busy = startBusyMember(3_600_000);
    Date.now = () => realDateNow() + wallClockStepMs;
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints: [`127.0.0.1:${busy.port}`, stack.server.endpoint],
      timeoutMs: 5_000,
    });
    await client.store(storeShard).set("k", "v");
    expect(wallClockStepMs).toBe(3_600_000);
    expect(await stack.store.has("k")).toBe(true);
  });
});

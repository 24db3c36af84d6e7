/**
 * Review of client14 (26b67c2, 9f20ed7): calls batched in one socket write when the
 * connection breaks in the middle of the batch's replies. Every call settles (an answered
 * one with its reply, the rest failed or retried elsewhere), none is left in the client's
 * list of calls in flight, and the client works afterwards. The replies come split into
 * small chunks, so frames span the ArrayBuffer chunks the channel now receives.
 */
import { afterEach, expect, test } from "bun:test";
import type { Socket } from "bun";
import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import {
  beginFrame,
  defaultMaxFrameBytes,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagResponse,
} from "../../src/rpc/protocol/frame.ts";
import { wireResponseSchemas } from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";

const binary = createSerializer("binary");
const BATCH = 40;
const ANSWERED_PER_CONNECTION = 10;
const CHUNK_BYTES = 3;

const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

/** Answers the first `answered` requests of each connection (replies in CHUNK_BYTES writes), then cuts it. */
function startCuttingServer(answered: number): string {
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket: Socket<{ decoder: FrameDecoder; seen: number }>) {
        const out = new ByteWriter(4096);
        const data = {
          seen: 0,
          decoder: new FrameDecoder(defaultMaxFrameBytes, {
            onFrame: (header: FrameHeader) => {
              data.seen++;
              if (data.seen > answered) return;
              const start = beginFrame(out);
              binary.write(wireResponseSchemas.set, {}, out);
              finishFrame(out, start, { ...header, flags: flagResponse });
            },
            onOversized: () => socket.terminate(),
            onCorrupt: () => socket.terminate(),
          }),
        };
        socket.data = data;
        (socket as unknown as { out: ByteWriter }).out = out;
      },
      data(socket, chunk) {
        const out = (socket as unknown as { out: ByteWriter }).out;
        if (!socket.data.decoder.push(chunk)) socket.terminate();
        const bytes = out.written().slice();
        out.reset();
        for (let at = 0; at < bytes.length; at += CHUNK_BYTES)
          socket.write(bytes.subarray(at, at + CHUNK_BYTES));
        if (socket.data.seen > answered) socket.end();
      },
    },
  });
  stops.push(() => listener.stop(true));
  return `127.0.0.1:${listener.port}`;
}

function inFlight(client: RpcClient): number {
  return (client as unknown as { calls: { size: number } }).calls.size;
}

test("a connection cut in the middle of a batch's replies: every call settles, none stays in flight", async () => {
  const endpoint = startCuttingServer(ANSWERED_PER_CONNECTION);
  await using client = new RpcClient({
    endpoints: [endpoint],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 3000,
    retryCount: 0,
  });
  const store = client.store(1);
  const outcomes = await Promise.all(
    Array.from({ length: BATCH }, (_, i) =>
      store.set(`k${i}`, new Uint8Array(64)).then(
        () => "ok",
        (error: unknown) => (error instanceof DkvError ? `${error.code} ${error.outcome}` : String(error)),
      ),
    ),
  );
  // The server's last replies may die with the connection: at most those it wrote succeed.
  const ok = outcomes.filter((o) => o === "ok").length;
  expect(ok).toBeGreaterThan(0);
  expect(ok).toBeLessThanOrEqual(ANSWERED_PER_CONNECTION);
  // Sent and then lost: the server may have applied them.
  for (const o of outcomes.filter((o) => o !== "ok")) expect(o.endsWith(" unknown")).toBe(true);
  expect(inFlight(client)).toBe(0);
  // The client reconnects for the next call.
  await store.set("after", new Uint8Array(1));
  expect(inFlight(client)).toBe(0);
});

test("with retries and a second member, the cut calls are retried there; each settles once, none stays in flight", async () => {
  const cutting = startCuttingServer(ANSWERED_PER_CONNECTION);
  const healthy = startCuttingServer(Number.MAX_SAFE_INTEGER);
  await using client = new RpcClient({
    endpoints: [cutting, healthy],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 5000,
    retryCount: 3,
  });
  const store = client.store(1);
  let settled = 0;
  const outcomes = await Promise.all(
    Array.from({ length: BATCH }, (_, i) =>
      store.set(`k${i}`, new Uint8Array(64)).then(
        () => {
          settled++;
          return "ok";
        },
        (error: unknown) => {
          settled++;
          return error instanceof DkvError ? `${error.code} ${error.outcome}` : String(error);
        },
      ),
    ),
  );
  expect(settled).toBe(BATCH);
  expect(outcomes.filter((o) => o === "ok").length).toBeGreaterThan(0);
  expect(inFlight(client)).toBe(0);
});

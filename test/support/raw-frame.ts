import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { beginFrame, FrameDecoder, type FrameHeader, finishFrame } from "../../src/rpc/protocol/frame.ts";
import { type Message, type OpName, opCodes, requestSchemas } from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/binary.ts";

const binary = new BinarySerializer();

/**
 * One binary-serialized request frame, built by hand so tests can send exactly the bytes
 * they want (a chosen request id, a forged length, half a frame) instead of going through
 * the client.
 */
export function encodeRequestFrame(
  op: OpName,
  message: Message,
  header: Partial<FrameHeader> & { shard: number },
): Uint8Array {
  const out = new ByteWriter(64);
  const start = beginFrame(out);
  binary.write(requestSchemas[op], message, out);
  finishFrame(out, start, {
    serializer: binary.id,
    flags: 0,
    requestId: 1,
    op: opCodes[op],
    clientIdHigh: 0,
    clientIdLow: 0,
    ...header,
  });
  return out.written().slice();
}

/** Sends `frame` on a fresh tcp connection to `endpoint` and returns its reply's header flags (5 s bound). */
export async function replyFlags(endpoint: string, frame: Uint8Array): Promise<number> {
  const [host, port] = endpoint.split(":") as [string, string];
  const { promise, resolve, reject } = Promise.withResolvers<number>();
  const decoder = new FrameDecoder(1 << 20, {
    onFrame: (header: FrameHeader) => resolve(header.flags),
    onOversized: () => reject(new Error("oversized reply")),
    onCorrupt: () => reject(new Error("corrupt reply")),
  });
  const socket = await Bun.connect({
    hostname: host,
    port: Number(port),
    socket: {
      binaryType: "uint8array",
      data: (_socket, chunk: Uint8Array) => {
        decoder.push(chunk);
      },
      close: () => reject(new Error("closed before the reply")),
    },
  });
  socket.write(frame);
  const timer = setTimeout(() => reject(new Error("no reply within 5 s")), 5_000);
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    socket.end();
  }
}

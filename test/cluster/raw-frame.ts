import { parseHostPort } from "../../src/host-port.ts";
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import {
  beginFrame,
  FrameDecoder,
  type FrameHeader,
  finishFrame,
  flagError,
  readErrorBody,
} from "../../src/rpc/protocol/frame.ts";
import {
  type Message,
  type OpName,
  opCodes,
  requestSchemas,
  responseSchemas,
} from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/binary.ts";

const binary = new BinarySerializer();

/**
 * Sends one request frame with a chosen client id and request id to `endpoint` and
 * returns the decoded reply: how a test replays "the same request" to another member,
 * as a client retrying after a lost reply would.
 */
export async function sendRawRequest(
  endpoint: string,
  ids: { clientIdHigh: number; clientIdLow: number; requestId: number },
  shard: number,
  op: OpName,
  message: Message,
  timeoutMs = 5000,
): Promise<Message> {
  const out = new ByteWriter(256);
  const start = beginFrame(out);
  binary.write(requestSchemas[op], message, out);
  finishFrame(out, start, { serializer: binary.id, flags: 0, shard, op: opCodes[op], ...ids });
  const { hostname: host, port } = parseHostPort(endpoint, "the server endpoint");
  const { promise, resolve, reject } = Promise.withResolvers<Message>();
  const decoder = new FrameDecoder(1 << 20, {
    onFrame: (header: FrameHeader, body: Uint8Array) => {
      if ((header.flags & flagError) !== 0) reject(readErrorBody(body));
      else resolve(binary.read(responseSchemas[op], body.slice()));
    },
    onOversized: () => reject(new Error("oversized reply")),
    onCorrupt: (reason) => reject(new Error(reason)),
  });
  const socket = await Bun.connect({
    hostname: host,
    port,
    socket: {
      data: (_socket, chunk) => {
        decoder.push(chunk);
      },
      close: () => reject(new Error("connection closed before the reply")),
    },
  });
  const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
  try {
    socket.write(out.written());
    return await promise;
  } finally {
    clearTimeout(timer);
    socket.end();
  }
}

import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import { beginFrame, type FrameHeader, finishFrame } from "../../src/rpc/protocol/frame.ts";
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

import { DkvError } from "../../errors.ts";
import type { ByteWriter } from "../protocol/byte-writer.ts";
import {
  beginFrame,
  type FrameHeader,
  finishReplyFrame,
  flagError,
  flagResponse,
  headerBytes,
  writeErrorBody,
} from "../protocol/frame.ts";
import { type Message, wireOpNameByCode, wireResponseSchemas } from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import type { RpcLogger } from "./dispatcher.ts";

/**
 * Appends the reply frame for `header` (a response, or an error with a JSON body) to `out`;
 * `leaderFlag` (flagLeader or 0) is set on a response, never on an error.
 */
export function writeReplyFrame(
  out: ByteWriter,
  header: FrameHeader,
  serializer: Serializer,
  response: Message | undefined,
  error: DkvError | undefined,
  logger: RpcLogger,
  leaderFlag = 0,
): void {
  const start = beginFrame(out);
  const op = wireOpNameByCode(header.op);
  let flags = flagResponse | (error === undefined ? leaderFlag : 0);
  if (error !== undefined || op === undefined) {
    flags |= flagError;
    writeErrorBody(out, error ?? new DkvError("INTERNAL", "reply to an unknown operation"));
  } else {
    try {
      serializer.write(wireResponseSchemas[op], response ?? {}, out);
    } catch (encodeError) {
      out.length = start + headerBytes;
      flags = flagResponse | flagError;
      logger.warn(`cannot encode a ${op} reply: ${String(encodeError)}`);
      writeErrorBody(
        out,
        new DkvError("INTERNAL", "the server could not encode the reply; see the server log"),
      );
    }
  }
  finishReplyFrame(out, start, header, serializer.id, flags);
}

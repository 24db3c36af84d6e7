import type { RequestOrigin } from "../../store/replicated/command.ts";
import type { FrameHeader } from "../protocol/frame.ts";

/**
 * The frame's 8-byte client id padded with zeros to the 16 bytes a replicated write
 * carries (bytes 8-15 stay free for sub-requests, e.g. the attempts of a blocking acquire),
 * and its request id.
 */
export function originOf(header: FrameHeader): RequestOrigin {
  return fillOrigin({ clientId: new Uint8Array(16), requestId: 0 }, header);
}

/**
 * originOf(header) written into `origin`, whose client id's bytes 8-15 must be 0 (a
 * dispatcher refills one origin per write instead of making one).
 */
export function fillOrigin(origin: RequestOrigin, header: FrameHeader): RequestOrigin {
  // Byte by byte: a DataView would need `clientId.buffer`, which JSC makes costly for small arrays.
  const clientId = origin.clientId;
  const high = header.clientIdHigh;
  const low = header.clientIdLow;
  clientId[0] = high & 0xff;
  clientId[1] = (high >>> 8) & 0xff;
  clientId[2] = (high >>> 16) & 0xff;
  clientId[3] = high >>> 24;
  clientId[4] = low & 0xff;
  clientId[5] = (low >>> 8) & 0xff;
  clientId[6] = (low >>> 16) & 0xff;
  clientId[7] = low >>> 24;
  origin.requestId = header.requestId;
  return origin;
}

/** Bytes 8-11 of an origin's client id number the claims of one acquire (see originOf). */
const ATTEMPT_OFFSET = 8;

/**
 * The origin of attempt `attempt` (1, 2, ...) of a blocking acquire: the replicated state
 * machine answers a repeated origin with its first reply, so each attempt needs its own
 * (or all after a failed first would replay "not written"), and attempt k of a retry must
 * match attempt k of the original (so it replays the original's result).
 */
export function attemptOriginOf(origin: RequestOrigin, attempt: number): RequestOrigin {
  const clientId = origin.clientId.slice();
  new DataView(clientId.buffer).setUint32(ATTEMPT_OFFSET, attempt, true);
  return { clientId, requestId: origin.requestId };
}

/**
 * The owner id of an identified acquire on a shard that deduplicates in its state machine:
 * 128 bits derived from the client id and request id, so the first try and every retry,
 * through any member, report the owner id actually stored (a fresh random one per try
 * would tell a retry an id that can never release the lock its first try took).
 */
export function lockOwnerIdOf(origin: RequestOrigin): string {
  const requestId = new Uint8Array(8);
  new DataView(requestId.buffer).setFloat64(0, origin.requestId, true);
  // Bun's hasher, not node:crypto: a node module costs a server ~4-8 MiB of RSS.
  return new Bun.CryptoHasher("sha256")
    .update("dkv lock owner\0")
    .update(origin.clientId)
    .update(requestId)
    .digest("hex")
    .slice(0, 32);
}

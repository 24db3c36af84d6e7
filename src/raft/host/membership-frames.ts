import { DkvError, type DkvErrorCode, type DkvOutcome } from "../../errors.ts";
import type { ConfChange, NodeId } from "../core/types.ts";

/**
 * Host-to-host frames of the cluster membership, carried by `NodeTransport.sendHost` next
 * to the host's own forwarding frames (whose kinds are 1-3). JSON after one kind byte:
 * rare and small, so clarity beats compactness.
 *   0x41 request: a group change to run on that group's leader (a ConfChange or a transfer)
 *   0x42 reply
 *   0x43 removed: "you were removed from this cluster" (sent to a removed member's traffic)
 *   0x44 rules query: "which apply rules do you implement?" (membership-rules.ts); a release
 *        before apply rules logs it as a dropped host frame and does not answer
 *   0x45 rules answer: `rules`, the highest version the sender implements
 */
export const MembershipFrameKind = {
  Request: 0x41,
  Reply: 0x42,
  Removed: 0x43,
  RulesQuery: 0x44,
  RulesAnswer: 0x45,
} as const;

export type GroupAction = { action: "conf"; change: ConfChange } | { action: "transfer"; to: NodeId };

export type GroupRequest = GroupAction & { requestId: number; groupId: number; timeoutMs: number };

export interface GroupReply {
  requestId: number;
  ok: boolean;
  /** ok: the group was already in the wanted state. */
  unchanged?: boolean;
  error?: { code: DkvErrorCode; message: string; outcome: DkvOutcome };
  leader?: NodeId | null;
}

export type MembershipFrame =
  | ({ kind: typeof MembershipFrameKind.Request } & GroupRequest)
  | ({ kind: typeof MembershipFrameKind.Reply } & GroupReply)
  | { kind: typeof MembershipFrameKind.Removed; removed: NodeId }
  | { kind: typeof MembershipFrameKind.RulesQuery }
  | { kind: typeof MembershipFrameKind.RulesAnswer; rules: number };

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encodeMembershipFrame(frame: MembershipFrame): Uint8Array {
  const { kind, ...body } = frame;
  const json = utf8.encode(JSON.stringify(body));
  const out = new Uint8Array(json.byteLength + 1);
  out[0] = kind;
  out.set(json, 1);
  return out;
}

/** The frame if `payload` is a membership frame; undefined for the host's own kinds. */
export function decodeMembershipFrame(payload: Uint8Array): MembershipFrame | undefined {
  const kind = payload[0];
  if (
    kind !== MembershipFrameKind.Request &&
    kind !== MembershipFrameKind.Reply &&
    kind !== MembershipFrameKind.Removed &&
    kind !== MembershipFrameKind.RulesQuery &&
    kind !== MembershipFrameKind.RulesAnswer
  ) {
    return undefined;
  }
  try {
    const body = JSON.parse(utf8Decoder.decode(payload.subarray(1))) as Record<string, unknown>;
    return { ...body, kind } as MembershipFrame;
  } catch (error) {
    throw new DkvError(
      "BAD_FRAME",
      "malformed membership frame from a peer; check that every member runs the same dkv version",
      { cause: error },
    );
  }
}

export function replyError(error: unknown): GroupReply["error"] {
  const dkvError = DkvError.is(error)
    ? error
    : new DkvError("INTERNAL", `membership change failed: ${String(error)}`, { outcome: "unknown" });
  return { code: dkvError.code, message: dkvError.message, outcome: dkvError.outcome };
}

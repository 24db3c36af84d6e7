import type { ConfChange } from "./types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const typeCode = { addLearner: 1, addVoter: 2, removeNode: 3 } as const;

/** Entry data of a ConfChange entry: one type byte, then the node id in UTF-8. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const id = encoder.encode(change.node);
  const out = new Uint8Array(id.length + 1);
  out[0] = typeCode[change.type];
  out.set(id, 1);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const node = decoder.decode(data.subarray(1));
  switch (data[0]) {
    case typeCode.addLearner:
      return { type: "addLearner", node };
    case typeCode.addVoter:
      return { type: "addVoter", node };
    case typeCode.removeNode:
      return { type: "removeNode", node };
    default:
      throw new RangeError(`not an encoded ConfChange (type byte ${data[0]})`);
  }
}

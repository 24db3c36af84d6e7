/** `dkv serve`'s --read-lease flag (spread into serveOptions). */
import { defineOption } from "./define-option.ts";

export const readLeaseOptions = [
  defineOption({
    name: "read-lease",
    type: "string",
    choices: ["on", "off"],
    default: "off",
    valueHint: "on|off",
    description:
      "on: a leader answers linearizable reads from its own state while a quorum's recent acks bind it (no heartbeat round per read). Needs clock rates within 1% and the same setting and timing flags on every member (README). off: ReadIndex, no clock assumption",
  }),
] as const;

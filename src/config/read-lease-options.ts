/** `dkv serve`'s --read-lease flag (spread into serveOptions). */
import type { OptionSpec } from "./schema.ts";

/** Like schema.ts's defineOption, kept here so this file imports nothing of schema.ts at run time. */
function defineOption<const O extends OptionSpec>(option: O): O {
  return option;
}

export const readLeaseOptions = [
  defineOption({
    name: "read-lease",
    type: "string",
    choices: ["on", "off"],
    default: "off",
    valueHint: "on|off",
    description:
      "Leader lease reads: a leader answers linearizable reads from its own state while a quorum's recent heartbeat acks bind it, without a heartbeat round per read batch. Assumes members' monotonic clocks run at rates within 1% of each other and never jump; every member must run the same setting. off (the default): ReadIndex (one heartbeat round per read batch, no clock assumption)",
  }),
] as const;

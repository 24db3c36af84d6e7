import type { OptionSpec } from "./schema.ts";

/** Like schema.ts's defineOption, kept here so this file imports nothing at run time (schema.ts imports it). */
function defineOption<const O extends OptionSpec>(option: O): O {
  return option;
}

/** `dkv serve` flags of cluster membership (spread into serveOptions). */
export const membershipOptions = [
  defineOption({
    name: "join",
    type: "list",
    default: [],
    valueHint: "HOST:PORT,...",
    defaultLabel: "none",
    description:
      "Client endpoints of current members: this new member asks them for the membership (it must have been added first with 'dkv cluster add ID=HOST:PEER_PORT') " +
      "and starts its replicated shards as a learner with an empty log. Ignored once the data dir holds the membership",
  }),
  defineOption({
    name: "auto-promote-lag",
    type: "number",
    integer: true,
    min: 0,
    default: 100,
    valueHint: "N",
    description:
      "A learner within N log entries of the leader is promoted to voter automatically (the leader of each group decides, one change at a time); " +
      "'dkv cluster promote' refuses a learner that lags more",
  }),
  defineOption({
    name: "auto-promote",
    type: "boolean",
    default: true,
    description:
      "Promote caught-up learners automatically (--auto-promote=false: only 'dkv cluster promote' does)",
  }),
] as const;

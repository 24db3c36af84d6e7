import { clientSecurityOptions } from "./client-security-options.ts";
import { AUTO_PROMOTE_LAG_ENTRIES_DEFAULT } from "./defaults.ts";
import { defineOption } from "./define-option.ts";
import type { OptionSpec } from "./schema.ts";

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
      "and starts as a learner with an empty log. Ignored once the data dir holds the membership. " +
      "TLS or tokens: --cacert, --cert/--key, --token-file as for clients",
  }),
  defineOption({
    name: "auto-promote-lag",
    type: "number",
    integer: true,
    min: 0,
    default: AUTO_PROMOTE_LAG_ENTRIES_DEFAULT,
    valueHint: "N",
    description:
      "A learner within N log entries of the leader is promoted to voter automatically (the leader of each group decides, one change at a time); " +
      "'dkv cluster promote' refuses a learner that lags more",
  }),
  defineOption({
    name: "peer-address-override",
    type: "list",
    default: [],
    valueHint: "ID=HOST:PORT,...",
    defaultLabel: "none",
    description:
      "Dial these members at these addresses instead of the ones the cluster replicates (a NAT, a TCP proxy, the per-link proxies of 'bun run verify'); " +
      "the replicated membership is unchanged, and ids not (yet) members are kept for when they join",
  }),
  defineOption({
    name: "auto-promote",
    type: "boolean",
    default: true,
    description:
      "Promote caught-up learners automatically (--auto-promote=false: only 'dkv cluster promote' does)",
  }),
] as const;

/** A client flag as `dkv serve` shows it: the same name, default and variable, said to apply to --join only. */
type ForJoin<T extends readonly OptionSpec[]> = {
  readonly [K in keyof T]: Omit<T[K], "description"> & { readonly description: string };
};

function forJoin<const T extends readonly OptionSpec[]>(options: T): ForJoin<T> {
  return options.map((option) => ({
    ...option,
    description: `--join's request to the cluster: ${option.description}`,
  })) as unknown as ForJoin<T>;
}

/**
 * The client TLS and token flags of every client command (client-security-options.ts,
 * declared once there), read by `dkv serve` for its --join request alone.
 */
export const joinClientOptions = forJoin(clientSecurityOptions);

/** `dkv serve` flags of operations: metrics, health and the slow-request log. */
import type { OptionSpec } from "./schema.ts";

export const opsServeOptions = [
  {
    name: "metrics-endpoint",
    type: "string",
    default: "",
    valueHint: "HOST:PORT",
    defaultLabel: '"" (off)',
    description:
      "Serve Prometheus /metrics, /livez and /readyz over HTTP here (port 0 picks a free one); a non-loopback address needs --insecure",
  } as const satisfies OptionSpec,
  {
    name: "slow-request-threshold",
    type: "duration",
    default: 0,
    valueHint: "DURATION",
    description:
      "Log every request slower than this with the stage that took the time (queue, propose, fsync, replicate, apply, read-index); 0: off",
  } as const satisfies OptionSpec,
] as const;

/**
 * `--insecure`: listening on a non-loopback address without TLS is refused unless given
 * (protected mode). Declared here until the security options (peer-security-options.ts)
 * declare it; then this declaration goes and that one is spread instead.
 */
export const insecureServeOption = {
  name: "insecure",
  type: "boolean",
  default: false,
  description:
    "Allow a listener on a non-loopback address without TLS (for now: --metrics-endpoint); a warning is logged. Without it such a listener is refused",
} as const satisfies OptionSpec;

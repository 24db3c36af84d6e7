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

/** `dkv serve` flags of the lock shards. */
import { LOCK_QUEUE_LEASE_MS_DEFAULT, LOCK_QUEUE_LEASE_MS_MAX, LOCK_QUEUE_LEASE_MS_MIN } from "./defaults.ts";
import type { OptionSpec } from "./schema.ts";

export const lockServeOptions = [
  {
    name: "lock-queue-lease",
    type: "duration",
    min: LOCK_QUEUE_LEASE_MS_MIN,
    max: LOCK_QUEUE_LEASE_MS_MAX,
    default: LOCK_QUEUE_LEASE_MS_DEFAULT,
    valueHint: "DURATION",
    description:
      "How long a blocked acquire (lock acquire --wait) keeps its place in the lock's FIFO queue without renewal; the serving member renews it every third of this, so after that member dies its waiters leave the queue within this time",
  } as const satisfies OptionSpec,
] as const;

/** `dkv serve` flags of the replicated shards' retry deduplication (spread into serveOptions). */
import {
  CLI_REQUEST_TIMEOUT_MS_MAX,
  CLIENT_RETRY_DELAY_MS_MAX,
  DEDUP_RETENTION_MS_DEFAULT,
  DEDUP_RETENTION_MS_MIN,
} from "./defaults.ts";
import { defineOption } from "./define-option.ts";

export const dedupServeOptions = [
  defineOption({
    name: "dedup-retention",
    type: "duration",
    min: DEDUP_RETENTION_MS_MIN,
    default: DEDUP_RETENTION_MS_DEFAULT,
    valueHint: "DURATION",
    description:
      "How long each dstore shard remembers a write's request id and answer, in log time, so a retry applies at most once and gets the first answer. " +
      `At least the longest client --timeout (${CLI_REQUEST_TIMEOUT_MS_MAX / 1_000}s) plus a retry pause (${CLIENT_RETRY_DELAY_MS_MAX / 1_000}s); ` +
      "raise it for library clients with longer deadlines. Every member must use the same value",
  }),
] as const;

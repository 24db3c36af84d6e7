/** `dkv serve` flags bounding each Raft group's in-memory log by bytes (spread into serveOptions). */
import { RAFT_LOG_MAX_BYTES_DEFAULT, SNAPSHOT_BYTES_DEFAULT } from "./defaults.ts";
import type { OptionSpec } from "./schema.ts";

/** Like schema.ts's defineOption, kept here so this file imports nothing of schema.ts at run time. */
function defineOption<const O extends OptionSpec>(option: O): O {
  return option;
}

export const raftLogOptions = [
  defineOption({
    name: "snapshot-bytes",
    type: "number",
    integer: true,
    min: 0,
    default: SNAPSHOT_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Also snapshot each dstore shard (and compact its log) once the entries applied since its last snapshot hold this many bytes (0: by --snapshot-entries only)",
  }),
  defineOption({
    name: "raft-log-max-bytes",
    type: "number",
    integer: true,
    min: 0,
    default: RAFT_LOG_MAX_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Bytes of log each dstore shard holds in memory: the tail kept behind a snapshot takes at most a quarter, and the leader refuses writes (UNAVAILABLE, retried) while its log would pass this (0: unbounded; else at least 2 x --snapshot-bytes)",
  }),
] as const;

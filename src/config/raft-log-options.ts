/** `dkv serve` flags of the Raft log: each group's in-memory bytes, and the shared log's gather (spread into serveOptions). */
import {
  RAFT_LOG_BUDGET_BYTES_DEFAULT,
  RAFT_LOG_GATHER_TURNS_DEFAULT,
  RAFT_LOG_GATHER_TURNS_MAX,
  RAFT_LOG_MAX_BYTES_DEFAULT,
  SNAPSHOT_BYTES_DEFAULT,
} from "./defaults.ts";
import { defineOption } from "./define-option.ts";

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
  defineOption({
    name: "raft-log-budget-bytes",
    type: "number",
    integer: true,
    min: 0,
    default: RAFT_LOG_BUDGET_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Bytes of log all dstore shards of this process hold together since their snapshots: past it the shards holding the most snapshot early, so many shards do not hold many times one shard's log (0: each shard by its own bounds only)",
  }),
  defineOption({
    name: "raft-log-gather-turns",
    type: "number",
    integer: true,
    min: 0,
    max: RAFT_LOG_GATHER_TURNS_MAX,
    default: RAFT_LOG_GATHER_TURNS_DEFAULT,
    valueHint: "N",
    description:
      "When Raft log writes run back to back (writes spread over many shards), a write queued behind another waits up to N event-loop turns for more shards' entries, while each turn brings some: fewer fsyncs and messages per write. A write on an idle log never waits (0: never gather)",
  }),
] as const;

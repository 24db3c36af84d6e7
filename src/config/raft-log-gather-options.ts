/** The `dkv serve` flag for the shared Raft log's gather (spread into serveOptions). */
import type { OptionSpec } from "./schema.ts";

/**
 * Event-loop turns a shared-log write queued behind a running one waits for more records
 * once that write is durable, while each turn adds some (raft/storage/group-commit.ts).
 */
export const RAFT_LOG_GATHER_TURNS_DEFAULT = 4;
/** Each turn may last a whole event-loop iteration: a bound on what a queued write can wait. */
export const RAFT_LOG_GATHER_TURNS_MAX = 64;

/** Like schema.ts's defineOption, kept here so this file imports nothing of schema.ts at run time. */
function defineOption<const O extends OptionSpec>(option: O): O {
  return option;
}

export const raftLogGatherOptions = [
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

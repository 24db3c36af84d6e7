import {
  WATCH_BUFFER_BYTES_DEFAULT,
  WATCH_HISTORY_BYTES_DEFAULT,
  WATCH_HISTORY_BYTES_MIN,
  WATCH_HISTORY_TOTAL_BYTES_DEFAULT,
  WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
  WATCHERS_PER_CONNECTION_DEFAULT,
} from "./defaults.ts";
import { defineOption } from "./define-option.ts";

/** `dkv serve` flags of watch (spread into serveOptions; see the README's "Watch"). */
export const watchServeOptions = [
  defineOption({
    name: "watch-history-bytes",
    type: "number",
    integer: true,
    min: WATCH_HISTORY_BYTES_MIN,
    default: WATCH_HISTORY_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Bytes of recent changes each shard keeps for watches from a past revision (--rev); older revisions fail with COMPACTED",
  }),
  defineOption({
    name: "watch-history-total-bytes",
    type: "number",
    integer: true,
    min: WATCH_HISTORY_BYTES_MIN,
    default: WATCH_HISTORY_TOTAL_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Bytes of watch history all shards keep together: each shard keeps the smaller of --watch-history-bytes and this / the number of shards",
  }),
  defineOption({
    name: "watch-buffer-bytes",
    type: "number",
    integer: true,
    min: 1024,
    default: WATCH_BUFFER_BYTES_DEFAULT,
    valueHint: "BYTES",
    description:
      "Bytes of changes one watcher may fall behind its stream before it is cut with WATCH_SLOW (writers never wait for watchers)",
  }),
  defineOption({
    name: "watch-progress-interval",
    type: "duration",
    default: WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
    valueHint: "DURATION",
    description: 'Idle time after which a watcher gets {"type":"progress","revision":N} (0: never)',
  }),
  defineOption({
    name: "watchers-per-connection",
    type: "number",
    integer: true,
    min: 1,
    default: WATCHERS_PER_CONNECTION_DEFAULT,
    valueHint: "N",
    description: "Watches open at once on one client connection; more are refused with RESOURCE_EXHAUSTED",
  }),
] as const;

/** `dkv kv watch` flags. */
export const watchCommandOptions = [
  defineOption({
    name: "prefix",
    type: "string",
    valueHint: "P",
    description: "Watch every key that starts with P (instead of KEY)",
  }),
  defineOption({
    name: "rev",
    type: "number",
    integer: true,
    min: 1,
    valueHint: "N",
    description:
      "Replay from revision N (no gap, no duplicate); older than the kept history: COMPACTED, exit 1",
  }),
  defineOption({
    name: "require-leader",
    type: "boolean",
    default: false,
    description:
      'End with {"error":"UNAVAILABLE",...} (exit 1) when the serving member has had no Raft leader for over an election timeout, instead of printing a possibly stale stream (resumes on another --endpoints member first)',
  }),
] as const;

/**
 * One schema for every flag of every command and its DKV_* variable. The CLI parses
 * argv and the environment with it, renders `--help` from it, and a Bun program can
 * read the same settings with `readOptions` (see ./parse.ts).
 */

import { clientSecurityOptions, serverSecurityOptions } from "./client-security-options.ts";
import { dedupServeOptions } from "./dedup-options.ts";
import {
  CLI_REQUEST_TIMEOUT_MS_DEFAULT,
  CLI_REQUEST_TIMEOUT_MS_MAX,
  COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  CONNECTIONS_PER_ENDPOINT_DEFAULT,
  ELECTION_RTT_FACTOR_DEFAULT,
  ELECTION_RTT_FACTOR_MAX,
  ELECTION_RTT_FACTOR_MIN,
  FRAME_BYTES_MAX_DEFAULT,
  FRAME_BYTES_MAX_MIN,
  HEARTBEAT_RTT_FACTOR_DEFAULT,
  HEARTBEAT_RTT_FACTOR_MAX,
  HEARTBEAT_RTT_FACTOR_MIN,
  KEY_BYTES_MAX_DEFAULT,
  KEY_BYTES_MAX_LIMIT,
  LEADER_BALANCE_INTERVAL_MS_DEFAULT,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RETRY_COUNT_DEFAULT,
  RTT_MS_DEFAULT,
  RTT_MS_MAX,
  RTT_MS_MIN,
  SHARD_ID_MAX,
  SNAPSHOT_ENTRIES_DEFAULT,
  VALUE_BYTES_MAX_DEFAULT,
} from "./defaults.ts";
import { defineOption } from "./define-option.ts";
import { lockServeOptions } from "./lock-options.ts";
import { joinClientOptions, membershipOptions } from "./membership-options.ts";
import { opsServeOptions } from "./ops-options.ts";
import { peerSecurityOptions } from "./peer-security-options.ts";
import { raftLogOptions } from "./raft-log-options.ts";
import { readLeaseOptions } from "./read-lease-options.ts";
import { watchServeOptions } from "./watch-options.ts";

export type OptionType = "string" | "number" | "boolean" | "duration" | "list";

/** Durations are held in milliseconds; lists as arrays of trimmed, non-empty strings. */
export type OptionValue = string | number | boolean | readonly string[];

export interface OptionSpec {
  /** The flag without dashes, kebab-case: `transport-endpoint`. */
  readonly name: string;
  readonly type: OptionType;
  /** Absent means "not set" (the command decides). Durations in milliseconds. */
  readonly default?: OptionValue;
  /** What the option does here, honestly: say when it has no effect yet. */
  readonly description: string;
  /** Other flag names accepted for the same option (the Go seed's spellings). */
  readonly aliases?: readonly string[];
  /** Allowed values of a string option. */
  readonly choices?: readonly string[];
  /** Variables read when the flag is absent, first set one wins; default `[envVarOf(name)]`. */
  readonly env?: readonly string[];
  /** Placeholder shown in help: `--threads N`. */
  readonly valueHint?: string;
  /** Numbers: reject fractions. */
  readonly integer?: boolean;
  readonly min?: number;
  readonly max?: number;
  /** Shown instead of the default in help when the default depends on other options. */
  readonly defaultLabel?: string;
}

/** A positional argument of a command, in order. */
export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
}

type ValueOfType<T extends OptionType> = T extends "string"
  ? string
  : T extends "number" | "duration"
    ? number
    : T extends "boolean"
      ? boolean
      : readonly string[];

/** The parsed values of a list of specs, keyed by flag name; options without a default may be undefined. */
export type OptionValues<S extends readonly OptionSpec[]> = {
  [O in S[number] as O["name"]]: O extends { default: OptionValue }
    ? ValueOfType<O["type"]>
    : ValueOfType<O["type"]> | undefined;
};

export { defineOption };

/** `--transport-endpoint` → `DKV_TRANSPORT_ENDPOINT`. */
export function envVarOf(flagName: string): string {
  return `DKV_${flagName.toUpperCase().replace(/-/g, "_")}`;
}

export function envVarsOf(option: OptionSpec): readonly string[] {
  return option.env ?? [envVarOf(option.name)];
}

// ---------------------------------------------------------------------------------------
// Client options (kv and lock commands)
// ---------------------------------------------------------------------------------------

export const DEFAULT_ENDPOINT = "127.0.0.1:8080";
export const DEFAULT_UNIX_SOCKET = "/tmp/dkv.sock";
export const DEFAULT_KV_SHARD = 100;
export const DEFAULT_LOCK_SHARD = 200;

const transportOption = defineOption({
  name: "transport",
  type: "string",
  default: "tcp",
  choices: ["tcp", "unix", "http"],
  description: "Transport: tcp, unix (socket path) or http; client and server must use the same",
});

const serializerOption = defineOption({
  name: "serializer",
  type: "string",
  default: "binary",
  choices: ["binary", "msgpack", "json"],
  description: "Wire encoding: binary (fastest), msgpack or json; client and server must use the same",
});

const maxFrameOption = defineOption({
  name: "max-frame-bytes",
  type: "number",
  integer: true,
  min: FRAME_BYTES_MAX_MIN,
  default: FRAME_BYTES_MAX_DEFAULT,
  description: "Largest frame sent or accepted, in bytes; larger requests fail with TOO_LARGE",
});

/** Flags the Go seed had for its socket tuning; Bun manages these buffers itself. */
function seedSocketOptions(serverSide: boolean) {
  return [
    defineOption({
      name: "transport-write-buffer",
      type: "number",
      default: 512,
      description:
        "Socket write buffer in KB (Go dKV flag); accepted for compatibility, no effect: Bun sizes socket buffers",
    }),
    defineOption({
      name: "transport-read-buffer",
      type: "number",
      default: 512,
      description:
        "Socket read buffer in KB (Go dKV flag); accepted for compatibility, no effect: Bun sizes socket buffers",
    }),
    defineOption({
      name: "transport-tcp-nodelay",
      type: "boolean",
      default: true,
      description:
        "TCP_NODELAY (Go dKV flag); accepted for compatibility, no effect: dkv batches writes itself",
    }),
    defineOption({
      name: "transport-tcp-keepalive",
      type: "number",
      default: serverSide ? 60 : 0,
      description:
        "TCP keep-alive interval in seconds (Go dKV flag); accepted for compatibility, no effect yet",
    }),
    defineOption({
      name: "transport-tcp-linger",
      type: "number",
      default: serverSide ? 10 : 0,
      description: "SO_LINGER in seconds (Go dKV flag); accepted for compatibility, no effect yet",
    }),
  ] as const;
}

/**
 * The common client flags; the default shard differs between `kv` (100) and `lock` (200).
 * On `lock acquire|refresh` `--timeout` is the lease (as in the Go dKV), so there the reply
 * timeout is `--request-timeout`; DKV_TIMEOUT means the reply timeout everywhere.
 */
export function clientOptions<
  const Shard extends number,
  const TimeoutFlag extends "timeout" | "request-timeout",
>(defaultShard: Shard, timeoutFlag: TimeoutFlag) {
  return [
    defineOption({
      name: "shard",
      type: "number",
      integer: true,
      min: 0,
      max: SHARD_ID_MAX,
      default: defaultShard,
      valueHint: "ID",
      description: `Shard to talk to (kv commands default to ${DEFAULT_KV_SHARD}, lock commands to ${DEFAULT_LOCK_SHARD}, as in \`dkv serve\`'s default shards)`,
    }),
    defineOption({
      name: "endpoints",
      type: "list",
      aliases: ["transport-endpoints"],
      env: ["DKV_ENDPOINTS", "DKV_TRANSPORT_ENDPOINTS"],
      valueHint: "HOST:PORT,...",
      defaultLabel: `${DEFAULT_ENDPOINT} (unix: ${DEFAULT_UNIX_SOCKET})`,
      description:
        "Server addresses, comma-separated (host:port, or socket paths for unix); requests are balanced across them",
    }),
    transportOption,
    serializerOption,
    defineOption({
      name: timeoutFlag,
      type: "duration",
      default: CLI_REQUEST_TIMEOUT_MS_DEFAULT,
      // A retried write's id must still be remembered (the dedup retention's minimum covers this).
      max: CLI_REQUEST_TIMEOUT_MS_MAX,
      aliases: timeoutFlag === "timeout" ? ["request-timeout"] : [],
      env: ["DKV_TIMEOUT", "DKV_REQUEST_TIMEOUT"],
      valueHint: "DURATION",
      description: `Deadline of each request, retries included (e.g. 500ms, 10s; a bare number is seconds); at most ${CLI_REQUEST_TIMEOUT_MS_MAX / 1_000}s, which the servers' --dedup-retention covers, so a retried write still applies once`,
    }),
    defineOption({
      name: "retry-count",
      type: "number",
      integer: true,
      min: 0,
      max: 100,
      default: RETRY_COUNT_DEFAULT,
      aliases: ["transport-retries"],
      env: ["DKV_RETRY_COUNT", "DKV_TRANSPORT_RETRIES"],
      valueHint: "N",
      description: "Retries of a failed request (safe: writes carry a request id and apply at most once)",
    }),
    defineOption({
      name: "connections-per-endpoint",
      type: "number",
      integer: true,
      min: 1,
      max: 1024,
      default: CONNECTIONS_PER_ENDPOINT_DEFAULT,
      aliases: ["transport-conn-per-endpoint"],
      env: ["DKV_CONNECTIONS_PER_ENDPOINT", "DKV_TRANSPORT_CONN_PER_ENDPOINT"],
      valueHint: "N",
      description: "Connections opened to each endpoint; requests are pipelined over them",
    }),
    maxFrameOption,
    defineOption({
      name: "json",
      type: "boolean",
      default: false,
      description: "Print exactly one JSON object on stdout (errors too, as {error, message, outcome})",
    }),
    ...seedSocketOptions(false),
    ...clientSecurityOptions,
  ] as const;
}

/** The default endpoint of a transport when --endpoints / --transport-endpoint is not given. */
export function defaultEndpointFor(transport: string): string {
  return transport === "unix" ? DEFAULT_UNIX_SOCKET : DEFAULT_ENDPOINT;
}

// ---------------------------------------------------------------------------------------
// Server options (dkv serve)
// ---------------------------------------------------------------------------------------

export const DEFAULT_SHARDS = "100=lstore,200=lockmgr(lstore)";

/** `--log-level` values, quietest first. */
export const LOG_LEVELS = ["silent", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

export const serveOptions = [
  defineOption({
    name: "shards",
    type: "string",
    default: DEFAULT_SHARDS,
    valueHint: "ID=TYPE,...",
    description:
      "Shards to serve: comma list of ID=TYPE (or ID:TYPE), TYPE one of lstore (in memory, this server only), dstore (replicated: its own Raft group on every member of --cluster-members), lockmgr(lstore), lockmgr(dstore); e.g. 100=lstore,200=dstore,300=lockmgr(dstore)",
  }),
  transportOption,
  defineOption({
    name: "transport-endpoint",
    type: "string",
    aliases: ["endpoint"],
    env: ["DKV_TRANSPORT_ENDPOINT", "DKV_ENDPOINT"],
    valueHint: "HOST:PORT|PATH",
    defaultLabel: `${DEFAULT_ENDPOINT} (unix: ${DEFAULT_UNIX_SOCKET})`,
    description:
      "Where to listen: host:port for tcp and http (port 0 picks a free one), a socket path for unix",
  }),
  serializerOption,
  defineOption({
    name: "timeout",
    type: "duration",
    default: REQUEST_TIMEOUT_MS_DEFAULT,
    valueHint: "DURATION",
    description: "Longest a request may take on the server before it is answered with TIMEOUT",
  }),
  defineOption({
    name: "log-level",
    type: "string",
    default: "info",
    choices: LOG_LEVELS,
    description: "Log verbosity (logs go to stderr)",
  }),
  maxFrameOption,
  defineOption({
    name: "max-key-bytes",
    type: "number",
    integer: true,
    min: 1,
    max: KEY_BYTES_MAX_LIMIT,
    default: KEY_BYTES_MAX_DEFAULT,
    description: "Largest key in UTF-8 bytes; larger keys are rejected with TOO_LARGE and change nothing",
  }),
  defineOption({
    name: "max-value-bytes",
    type: "number",
    integer: true,
    min: 1,
    default: VALUE_BYTES_MAX_DEFAULT,
    description: "Largest value in bytes; larger values are rejected with TOO_LARGE and change nothing",
  }),
  defineOption({
    name: "replica-id",
    type: "string",
    default: "",
    valueHint: "ID",
    defaultLabel: '"" (node-1 when --cluster-members is empty)',
    description:
      "This server's member id, one of the ids in --cluster-members; used only by dstore and lockmgr(dstore) shards",
  }),
  defineOption({
    name: "cluster-members",
    type: "string",
    default: "",
    valueHint: "ID=HOST:PORT,...",
    defaultLabel: '"" (a one-member cluster on a free loopback port)',
    description:
      "Every member's id and Raft address (not its client endpoint), the same list on every server, e.g. node-1=10.0.0.1:63001,node-2=10.0.0.2:63001. " +
      "Empty: dstore shards run as a one-member cluster (durable in --data-dir)",
  }),
  defineOption({
    name: "data-dir",
    type: "string",
    default: "data",
    valueHint: "DIR",
    description:
      "Where dstore shards keep their Raft state: one log shared by all shards (DIR/raft-log/) and each shard's snapshots (DIR/group-<shard id>/); created if missing, one per server. Unused without dstore shards",
  }),
  defineOption({
    name: "rtt-millisecond",
    type: "number",
    integer: true,
    min: RTT_MS_MIN,
    max: RTT_MS_MAX,
    default: RTT_MS_DEFAULT,
    valueHint: "MS",
    description:
      "The Raft tick in ms, about the round trip between members; elections and heartbeats are counted in ticks",
  }),
  defineOption({
    name: "election-rtt-factor",
    type: "number",
    integer: true,
    min: ELECTION_RTT_FACTOR_MIN,
    max: ELECTION_RTT_FACTOR_MAX,
    default: ELECTION_RTT_FACTOR_DEFAULT,
    valueHint: "TICKS",
    description:
      "Ticks without a leader before a follower campaigns (randomised up to twice this); the default 10 × 100 ms is 1-2 s of unavailability after a leader dies. Must exceed --heartbeat-rtt-factor",
  }),
  defineOption({
    name: "heartbeat-rtt-factor",
    type: "number",
    integer: true,
    min: HEARTBEAT_RTT_FACTOR_MIN,
    max: HEARTBEAT_RTT_FACTOR_MAX,
    default: HEARTBEAT_RTT_FACTOR_DEFAULT,
    valueHint: "TICKS",
    description: "Ticks between a leader's heartbeats",
  }),
  defineOption({
    name: "snapshot-entries",
    type: "number",
    integer: true,
    min: 0,
    default: SNAPSHOT_ENTRIES_DEFAULT,
    valueHint: "N",
    description:
      "Snapshot each dstore shard every N applied log entries and compact its log; earlier, from N/10, when the last snapshot was smaller than the log since it (0: never; the log then grows without bound)",
  }),
  defineOption({
    name: "leader-balance-interval",
    type: "number",
    integer: true,
    min: 0,
    default: LEADER_BALANCE_INTERVAL_MS_DEFAULT,
    valueHint: "MS",
    description:
      "Every MS, a member that leads at least two more dstore shards than another voter hands one to it (a leadership transfer), so leader work spreads over the members (0: off)",
  }),
  defineOption({
    name: "compaction-overhead",
    type: "number",
    integer: true,
    min: 0,
    default: COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
    valueHint: "N",
    description:
      "Log entries kept behind a snapshot, so a follower that lags by fewer catches up from the log instead of a snapshot",
  }),
  defineOption({
    name: "transport-workers",
    type: "number",
    default: 10,
    description:
      "Workers per connection (Go dKV flag); accepted for compatibility, no effect: one event loop serves all requests, pipelined",
  }),
  defineOption({
    name: "buffer-pool-size",
    type: "number",
    default: 64,
    description: "Pre-allocated server buffer in KB (Go dKV flag); accepted for compatibility, no effect",
  }),
  ...seedSocketOptions(true),
  ...peerSecurityOptions,
  ...serverSecurityOptions,
  ...opsServeOptions,
  ...membershipOptions,
  ...joinClientOptions,
  ...raftLogOptions,
  ...dedupServeOptions,
  ...readLeaseOptions,
  ...watchServeOptions,
  ...lockServeOptions,
] as const;

// ---------------------------------------------------------------------------------------
// Command-specific options
// ---------------------------------------------------------------------------------------

export const PERF_TESTS = ["set", "set-large", "get", "delete", "has", "has-not", "mixed"] as const;

export const perfOptions = [
  defineOption({
    name: "threads",
    type: "number",
    integer: true,
    min: 1,
    max: 10_000,
    default: 10,
    valueHint: "N",
    description: "Requests in flight at once (concurrent workers)",
  }),
  defineOption({
    name: "keys",
    type: "number",
    integer: true,
    min: 1,
    max: 10_000_000,
    default: 100,
    valueHint: "N",
    description: "Distinct keys each test cycles through",
  }),
  defineOption({
    name: "value-size",
    type: "number",
    integer: true,
    min: 0,
    default: 128,
    valueHint: "BYTES",
    description: "Value size in bytes",
  }),
  defineOption({
    name: "large-value-size",
    type: "number",
    integer: true,
    min: 1,
    default: 512,
    valueHint: "KB",
    description: "Value size of the set-large test in KB",
  }),
  defineOption({
    name: "skip",
    type: "list",
    default: [],
    valueHint: "TEST,...",
    description: `Tests to skip, comma-separated, from: ${PERF_TESTS.join(", ")}`,
  }),
  defineOption({
    name: "duration",
    type: "duration",
    default: 2_000,
    valueHint: "DURATION",
    description: "How long each test runs",
  }),
  defineOption({
    name: "csv",
    type: "string",
    valueHint: "FILE",
    defaultLabel: "none",
    description: "Also write the results to this CSV file",
  }),
] as const;

/** For kv writes: how VALUE is turned into bytes, so binary and large values work from a shell. */
export const valueBase64Option = defineOption({
  name: "base64",
  type: "boolean",
  default: false,
  description: "VALUE (or what '-' reads from stdin) is base64: decode it and store the raw bytes",
});

export const lockTtlOption = defineOption({
  name: "ttl",
  type: "duration",
  default: 30_000,
  aliases: ["timeout"],
  env: ["DKV_TTL"],
  valueHint: "DURATION",
  description:
    "Lease length (as the Go dKV, --timeout here means the lease); 0 holds the lock until released",
});

export const lockWaitOption = defineOption({
  name: "wait",
  type: "duration",
  default: 0,
  valueHint: "DURATION",
  description: "Keep trying up to this long while the lock is held by someone else (0: try once)",
});

export const upgradeOptions = [
  defineOption({
    name: "path",
    type: "string",
    valueHint: "DIR",
    defaultLabel: "the directory of the running dkv binary",
    description: "Where to install the new binary",
  }),
  defineOption({
    name: "source",
    type: "boolean",
    default: false,
    description: "Build from source with Bun instead of downloading a release binary",
  }),
  defineOption({
    name: "script",
    type: "string",
    valueHint: "FILE",
    defaultLabel: "downloaded from --base-url",
    description: "Run this local copy of install.sh instead of downloading it",
  }),
  defineOption({
    name: "base-url",
    type: "string",
    aliases: ["install-base-url"],
    env: ["DKV_INSTALL_BASE_URL", "DKV_BASE_URL"],
    valueHint: "URL",
    defaultLabel: "the release download URL",
    description: "Where install.sh, the binaries and SHA256SUMS are downloaded from",
  }),
] as const;

/**
 * Every tunable of dkv with its default and bounds, declared once (TigerBeetle's
 * constants.zig, hashicorp/raft's DefaultConfig). The flag schema (./schema.ts) shows and
 * parses them; the libraries that have a default of their own use these names, so a
 * default never differs between the CLI and the code under it. Units and qualifiers come
 * last in names (`rttMsDefault` reads "rtt, ms, default").
 *
 * This module imports nothing of dkv: any layer may depend on it.
 */

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;

/** Server-side deadline of one request (`dkv serve --timeout`); the library RPC client's too. */
export const REQUEST_TIMEOUT_MS_DEFAULT = 5_000;
/** Deadline of one CLI client request, retries included (`dkv kv|lock --timeout`). */
export const CLI_REQUEST_TIMEOUT_MS_DEFAULT = 10_000;
/**
 * Longest CLI client deadline (`dkv kv|lock|cluster --timeout`): a write's request id is
 * remembered for a retention that must cover a whole client deadline plus a retry pause
 * (DEDUP_RETENTION_MS_MIN), so no CLI client retries after its id was forgotten.
 */
export const CLI_REQUEST_TIMEOUT_MS_MAX = 30_000;
/** The RPC client's longest pause before re-sending a request (exponential backoff up to it). */
export const CLIENT_RETRY_DELAY_MS_MAX = 1_000;
/** Re-sends of a failed request (`--retry-count`; safe: writes carry a request id). */
export const RETRY_COUNT_DEFAULT = 3;
/** Pipelined connections per endpoint (`--connections-per-endpoint`). */
export const CONNECTIONS_PER_ENDPOINT_DEFAULT = 1;
/** What a stopping server may take beyond its request timeout before the process gives up draining. */
export const SHUTDOWN_GRACE_MS = 2_000;

/** Largest RPC frame sent or accepted (`--max-frame-bytes`). */
export const FRAME_BYTES_MAX_DEFAULT = 32 * mebibyte;
export const FRAME_BYTES_MAX_MIN = 1024;
/** Largest key and value a store accepts (`--max-key-bytes`, `--max-value-bytes`). */
export const KEY_BYTES_MAX_DEFAULT = 64 * kibibyte;
/** The bound of `--max-key-bytes`: an lstore's records keep a key's length in 24 bits. */
export const KEY_BYTES_MAX_LIMIT = 16 * mebibyte - 1;
export const VALUE_BYTES_MAX_DEFAULT = 16 * mebibyte;
/**
 * The most key and value bytes the gets of one transaction may return together (a lone get
 * may return one value of any size): decided from the store's state, so every replica
 * refuses alike, before anything applies. A constant, not a flag: it must be the same on
 * every member.
 */
export const TXN_RESULT_BYTES_MAX = 24 * mebibyte;

/**
 * The node transport's largest frame and per-peer queue. A Raft message carries at least
 * one whole entry, so the frame must hold a largest key and value plus framing: the node
 * raises both bounds when --max-key-bytes / --max-value-bytes demand it.
 */
export const NODE_FRAME_BYTES_MAX_DEFAULT = 48 * mebibyte;
export const NODE_QUEUE_BYTES_MAX_DEFAULT = 64 * mebibyte;
/** Room in a node frame beyond one entry's key and value: message and entry headers, request ids. */
export const NODE_FRAME_OVERHEAD_BYTES = 1 * mebibyte;

/** The Raft tick (`--rtt-millisecond`). */
export const RTT_MS_DEFAULT = 100;
export const RTT_MS_MIN = 1;
export const RTT_MS_MAX = 60_000;
/** Election timeout in ticks (`--election-rtt-factor`); must exceed the heartbeat interval. */
export const ELECTION_RTT_FACTOR_DEFAULT = 10;
export const ELECTION_RTT_FACTOR_MIN = 2;
export const ELECTION_RTT_FACTOR_MAX = 10_000;
/** Heartbeat interval in ticks (`--heartbeat-rtt-factor`). */
export const HEARTBEAT_RTT_FACTOR_DEFAULT = 2;
export const HEARTBEAT_RTT_FACTOR_MIN = 1;
export const HEARTBEAT_RTT_FACTOR_MAX = 10_000;
/** Snapshot every N applied entries (`--snapshot-entries`; 0: never). */
export const SNAPSHOT_ENTRIES_DEFAULT = 100_000;
/** Entries kept behind a snapshot for slow followers (`--compaction-overhead`). */
export const COMPACTION_OVERHEAD_ENTRIES_DEFAULT = 5_000;
/** How often a member checks whether it leads too many shards (`--leader-balance-interval`; 0: off). */
export const LEADER_BALANCE_INTERVAL_MS_DEFAULT = 5_000;
/**
 * Snapshot a group once the log applied since its last snapshot holds this many bytes
 * (`--snapshot-bytes`; 0: by entries only), so big values do not pile up in memory.
 */
export const SNAPSHOT_BYTES_DEFAULT = 32 * mebibyte;
/**
 * Bytes of log one group may hold in memory (`--raft-log-max-bytes`; 0: unbounded): the tail
 * kept behind a snapshot takes at most a quarter, and a leader refuses new proposals (retry)
 * while its log would pass the bound (a snapshot is still being saved, or followers lag).
 */
export const RAFT_LOG_MAX_BYTES_DEFAULT = 128 * mebibyte;
/**
 * Bytes of log all dstore shards of a process hold together since their snapshots before
 * the largest snapshot early (`--raft-log-budget-bytes`; 0: off; raft/host/log-budget.ts).
 */
export const RAFT_LOG_BUDGET_BYTES_DEFAULT = 64 * mebibyte;
/**
 * Event-loop turns a shared-log write queued behind a running one waits for more records
 * once that write is durable, while each turn adds some (raft/storage/group-commit.ts).
 */
export const RAFT_LOG_GATHER_TURNS_DEFAULT = 4;
/** Each turn may last a whole event-loop iteration: a bound on what a queued write can wait. */
export const RAFT_LOG_GATHER_TURNS_MAX = 64;

/** A learner this close to the leader's log is promoted to voter (`--auto-promote-lag`). */
export const AUTO_PROMOTE_LAG_ENTRIES_DEFAULT = 100;

/**
 * How long the replicated state machine remembers each write's request id and answer, in
 * log time (`--dedup-retention`): a retry reaches the log at most a client deadline plus
 * one retry pause after the first attempt did, so the minimum covers the longest CLI
 * deadline and a pause. The default is twice that, for clock steps between leaders' stamps
 * and for library clients with longer deadlines.
 */
export const DEDUP_RETENTION_MS_MIN = CLI_REQUEST_TIMEOUT_MS_MAX + CLIENT_RETRY_DELAY_MS_MAX;
export const DEDUP_RETENTION_MS_DEFAULT = 60_000;
/**
 * Bound on the memory of a shard's remembered request ids (counted from the blocks of ids
 * and time runs held, the same on every member; RequestTable.bytes): 64 MiB holds ~1.6
 * million blocks of up to 32 ids. Over the default 60 s retention that is ~800 000
 * writes/s per shard from clients whose ids follow each other in the log (a write-only
 * client's fill whole blocks), and ~26 000 writes/s when every id is alone in its block
 * (many clients with one request in flight each, taking turns in the log), ~5 400 writes/s
 * when each write comes from a client of its own (a CLI invocation: 160 B more), before new
 * ids are refused (RESOURCE_EXHAUSTED, not applied).
 */
export const DEDUP_BYTES_MAX_DEFAULT = 64 * mebibyte;

/**
 * The Raft tunables of `startReplicatedShards` at their defaults, for library callers (and
 * tests) that do not resolve `dkv serve`'s flags: spread it and override what differs.
 */
export const REPLICATED_TUNING_DEFAULT = Object.freeze({
  rttMs: RTT_MS_DEFAULT,
  electionRttFactor: ELECTION_RTT_FACTOR_DEFAULT,
  heartbeatRttFactor: HEARTBEAT_RTT_FACTOR_DEFAULT,
  snapshotEntries: SNAPSHOT_ENTRIES_DEFAULT,
  compactionOverheadEntries: COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  snapshotBytes: SNAPSHOT_BYTES_DEFAULT,
  raftLogMaxBytes: RAFT_LOG_MAX_BYTES_DEFAULT,
  raftLogBudgetBytes: RAFT_LOG_BUDGET_BYTES_DEFAULT,
  requestTimeoutMs: REQUEST_TIMEOUT_MS_DEFAULT,
});

/** The member id of the embedded one-member cluster when --replica-id is not given. */
export const REPLICA_ID_DEFAULT = "node-1";
/** Where the embedded one-member cluster's node transport listens: nobody dials it, so any free port. */
export const EMBEDDED_RAFT_ADDRESS = "127.0.0.1:0";
/** Shard ids are unsigned 32-bit on the wire. */
export const SHARD_ID_MAX = 0xffff_ffff;

/**
 * A broken relation between declared values: a programmer error, thrown at load. Not
 * node:assert, which costs every dkv process (client commands too) ~2 MiB of RSS.
 */
export function assertDeclared(
  condition: boolean,
  message = "a relation between defaults is broken",
): asserts condition {
  if (!condition) throw new Error(message);
}
// Watch (see src/store/watch.ts and the README's "Watch").
/**
 * Bytes of recent changes each shard keeps for watches from a past revision: 8 MiB keeps
 * ~30,000 changes of 128 B values (a resume window of seconds at thousands of writes/s);
 * 32 MiB cost a one-member dstore ~40 MiB of RSS under small writes.
 */
export const WATCH_HISTORY_BYTES_DEFAULT = 8 * mebibyte;
/**
 * Bytes of watch history all of a process's shards keep together: with more shards than
 * this holds at WATCH_HISTORY_BYTES_DEFAULT each, each keeps its share, so a member's
 * memory does not grow with its shard count (50 shards at 8 MiB: 400 MiB under writes).
 * Writes spread over N shards give each 1/N of them, so a share covers as long a resume
 * window as one shard's whole history does.
 */
export const WATCH_HISTORY_TOTAL_BYTES_DEFAULT = 64 * mebibyte;
/** The smallest history a shard keeps (--watch-history-bytes' minimum). */
export const WATCH_HISTORY_BYTES_MIN = 1024;
/** Bytes of changes one watcher may fall behind before it is cut (WATCH_SLOW). */
export const WATCH_BUFFER_BYTES_DEFAULT = 8 * mebibyte;
/** Idle time before a watcher gets a progress event. */
export const WATCH_PROGRESS_INTERVAL_MS_DEFAULT = 5_000;
/** Watches open at once on one client connection. */
export const WATCHERS_PER_CONNECTION_DEFAULT = 256;
/** While keys with delete deadlines are due, the leader stamps time into the log at most this often. */
export const EXPIRY_TICK_MS_DEFAULT = 100;

// Relations between the defaults: a violation is a programmer error, caught at load.
assertDeclared(
  HEARTBEAT_RTT_FACTOR_DEFAULT < ELECTION_RTT_FACTOR_DEFAULT,
  "heartbeats must come within an election timeout",
);
assertDeclared(
  HEARTBEAT_RTT_FACTOR_MIN < ELECTION_RTT_FACTOR_MIN,
  "the smallest factors must still be valid together",
);
assertDeclared(RTT_MS_MIN <= RTT_MS_DEFAULT && RTT_MS_DEFAULT <= RTT_MS_MAX);
assertDeclared(FRAME_BYTES_MAX_MIN <= FRAME_BYTES_MAX_DEFAULT);
assertDeclared(TXN_RESULT_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT, "a transaction's result fits a reply frame");
assertDeclared(
  KEY_BYTES_MAX_DEFAULT + VALUE_BYTES_MAX_DEFAULT < FRAME_BYTES_MAX_DEFAULT,
  "a largest key and value fit one frame",
);
assertDeclared(
  KEY_BYTES_MAX_DEFAULT + VALUE_BYTES_MAX_DEFAULT + NODE_FRAME_OVERHEAD_BYTES <= NODE_FRAME_BYTES_MAX_DEFAULT,
  "a largest entry fits one node frame",
);
assertDeclared(
  FRAME_BYTES_MAX_DEFAULT < NODE_FRAME_BYTES_MAX_DEFAULT,
  "a forwarded RPC write fits one node frame",
);
assertDeclared(NODE_FRAME_BYTES_MAX_DEFAULT <= NODE_QUEUE_BYTES_MAX_DEFAULT, "a largest frame can be queued");
assertDeclared(
  CLI_REQUEST_TIMEOUT_MS_DEFAULT <= CLI_REQUEST_TIMEOUT_MS_MAX &&
    REQUEST_TIMEOUT_MS_DEFAULT <= CLI_REQUEST_TIMEOUT_MS_MAX,
  "the default client deadlines are within the longest one the dedup retention covers",
);
assertDeclared(
  DEDUP_RETENTION_MS_MIN <= DEDUP_RETENTION_MS_DEFAULT,
  "the default dedup retention covers a longest client deadline plus a retry pause",
);
assertDeclared(
  COMPACTION_OVERHEAD_ENTRIES_DEFAULT < SNAPSHOT_ENTRIES_DEFAULT,
  "a snapshot compacts more than it keeps",
);
assertDeclared(
  SNAPSHOT_BYTES_DEFAULT * 2 <= RAFT_LOG_MAX_BYTES_DEFAULT,
  "a snapshot by bytes comes well before the log's bound",
);

/** --lock-queue-lease: how long a blocked acquire's place in a lock queue lives without renewal. */
export const LOCK_QUEUE_LEASE_MS_DEFAULT = 10_000;
/** Renewed every third of it: below this the renewals alone would load the lock shard. */
export const LOCK_QUEUE_LEASE_MS_MIN = 300;
export const LOCK_QUEUE_LEASE_MS_MAX = 3_600_000;

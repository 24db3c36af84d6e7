/**
 * What the request table (request-table.ts) may hold: how long it remembers each id
 * (DedupOptions.retentionMs, resolved here once) and how much (bytesMax), counted by the
 * REMEMBERED_* estimates under the counting rule the shard's log has in force (TableRules).
 */
import {
  CLI_REQUEST_TIMEOUT_MS_MAX,
  CLIENT_RETRY_DELAY_MS_MAX,
  DEDUP_BYTES_MAX_DEFAULT,
  DEDUP_RETENTION_MS_DEFAULT,
  DEDUP_RETENTION_MS_MIN,
} from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";

/**
 * How long the replicated state machine remembers each write's request id and answer, so
 * that a retry applies at most once and gets the first answer.
 */
export interface DedupOptions {
  /**
   * Every request id is remembered at least this long, in log time (the leader's stamp on
   * the entries, so every member forgets the same ids at the same log position).
   */
  retentionMs: number;
  /**
   * Bound on the table's memory, counted from what it holds (RequestTable.bytes: blocks of
   * ids, time runs, clients, side-map entries; the same on every member), so it bounds the
   * memory actually allocated, however ids pack. When remembering
   * one more id would pass it, even after forgetting every id older than the retention, a
   * write carrying a new request id is refused with RESOURCE_EXHAUSTED (outcome
   * not-applied: it changes nothing); writes without an id and retries of remembered ones
   * go on. It never forgets an id younger than the retention. The room is checked before
   * the write applies, keeping NEW_ID_RESERVE_BYTES for its result: a transaction's gets
   * return values, so one write's result can pass the bound by its size (then every new
   * id is refused until it ages out).
   */
  bytesMax: number;
}

/**
 * A retry reaches the log at most a client deadline plus one retry pause after the first
 * attempt did, so an id must be remembered at least that long: the longest CLI deadline
 * (its --timeout is bounded above by CLI_REQUEST_TIMEOUT_MS_MAX) plus the RPC client's
 * longest pause. Library clients with longer deadlines (or lock acquires with a long
 * --wait) need a longer retention.
 */
export const DEDUP_RETENTION_MIN_MS = DEDUP_RETENTION_MS_MIN;

/** Declared in config/defaults.ts (DEDUP_RETENTION_MS_DEFAULT, DEDUP_BYTES_MAX_DEFAULT). */
export const defaultDedupOptions: Readonly<DedupOptions> = Object.freeze({
  retentionMs: DEDUP_RETENTION_MS_DEFAULT,
  bytesMax: DEDUP_BYTES_MAX_DEFAULT,
});

/** Fills in defaults and checks the relation above; the one place dedup options are resolved. */
export function resolveDedupOptions(options: Partial<DedupOptions> = {}): DedupOptions {
  const resolved = { ...defaultDedupOptions, ...options };
  if (!Number.isSafeInteger(resolved.retentionMs) || resolved.retentionMs < DEDUP_RETENTION_MIN_MS) {
    throw new DkvError(
      "USAGE",
      `dedup retentionMs must be a whole number of ms >= ${DEDUP_RETENTION_MIN_MS} (the longest CLI client deadline, ${CLI_REQUEST_TIMEOUT_MS_MAX} ms, plus a retry pause, ${CLIENT_RETRY_DELAY_MS_MAX} ms); got ${resolved.retentionMs}`,
    );
  }
  if (!Number.isSafeInteger(resolved.bytesMax) || resolved.bytesMax < 1) {
    throw new DkvError("USAGE", `dedup bytesMax must be a whole number >= 1; got ${resolved.bytesMax}`);
  }
  return resolved;
}

/**
 * Estimated memory of one block (ids of one client that follow each other in the log, up
 * to 32: a write-only client's ids fill whole blocks, an id of one of many clients taking
 * turns in the log has a block of its own): its record (client u32, base u32, mask u32,
 * code u8: 13 B) and two hash slots (8 B) are 21 B, and the arrays are powers of two
 * grown by doubling when full, so they hold up to twice the blocks: 42 B. Counted per
 * block, so the bound is a true bound on the arrays: they never grow past twice the most
 * blocks ever held, and bytesMax / 42 is the most blocks the bound lets in.
 */
export const REMEMBERED_BLOCK_BYTES = 42;
/** Estimated memory of one time run (f64 time, u32 count: 12 B), doubled likewise. */
export const REMEMBERED_RUN_BYTES = 24;
/** Estimated memory of one client with remembered ids: its Map entry, hex key and counters. */
export const REMEMBERED_CLIENT_BYTES = 160;
/**
 * Estimated memory of a result other than void or a boolean, beyond its bytes, or of a
 * request id above 32 bits: its map entry (and array).
 */
export const REMEMBERED_RESULT_OVERHEAD_BYTES = 96;
/**
 * Room kept for the write being checked, whatever its result turns out to be: a block and
 * a time run of its own, a result with its own array (a claim's is 9 B; an error result's
 * message is longer but rare) and its request id's high bits (a new client is added).
 */
export const NEW_ID_RESERVE_BYTES =
  REMEMBERED_BLOCK_BYTES + REMEMBERED_RUN_BYTES + 2 * REMEMBERED_RESULT_OVERHEAD_BYTES + 64;

/**
 * How the bound is counted, decided by the apply rules in force in the shard's log
 * (apply-rules.ts), never by the binary, so members of two releases decide alike:
 *   1 (the release before apply rules were declared): REMEMBERED_ID_BYTES per id, blind to
 *     packing, plus clients and side-map entries; room for a new id is one id, a client if
 *     new and RULE1_RESERVE_BYTES.
 *   2: blocks, time runs, clients and side-map entries (REMEMBERED_BLOCK_BYTES ...), room
 *     NEW_ID_RESERVE_BYTES plus a client if new.
 *   3: as 2, but an error result in the side map counts REMEMBERED_ERROR_BYTES whatever its
 *     length, and a new one keeps at most that much: members whose releases word a refusal
 *     differently (its code is the same) count alike.
 */
export type TableRules = 1 | 2 | 3;
/** Rule 3: what a remembered error result counts, and the most of it a new one keeps. */
export const REMEMBERED_ERROR_BYTES = 256;
/** Rule 1's estimate of one remembered id, whatever block it shares. */
export const REMEMBERED_ID_BYTES = 32;
/** Rule 1's room kept for the write being checked beside its id (a result with its own array, high bits). */
export const RULE1_RESERVE_BYTES = 2 * REMEMBERED_RESULT_OVERHEAD_BYTES + 64;

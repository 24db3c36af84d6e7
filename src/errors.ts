/**
 * The one error type of dkv. `code` is stable and machine-readable; `message` tells the
 * user what happened and what to do. `outcome` says whether a failed write may still
 * have been applied: "not-applied" only when the server certainly did not apply it.
 */
export type DkvErrorCode =
  | "TIMEOUT"
  | "UNAVAILABLE"
  | "NOT_LEADER"
  | "TOO_LARGE"
  | "BAD_REQUEST"
  | "BAD_FRAME"
  | "UNKNOWN_SHARD"
  | "UNKNOWN_OPERATION"
  | "SERIALIZER_MISMATCH"
  | "CORRUPT"
  | "CLOSED"
  | "INTERNAL"
  | "USAGE"
  /** A bounded server resource is full (e.g. the request table of a replicated shard); retry later. */
  | "RESOURCE_EXHAUSTED"
  /** A disk flush failed: fatal for the process (see FsyncFailedError in raft/storage). */
  | "FSYNC_FAILED"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"

  /** A membership change that conflicts with the cluster's state (in flight, exists, unsafe). */
  | "CONFLICT"
  /** This member was removed from the cluster: it serves nothing; use another member. */
  | "REMOVED"
  /** A watch asked for revisions older than the kept history (see WatchCompactedError). */
  | "COMPACTED"
  /** A watcher fell too far behind its events and was cut off; resume from its last revision. */
  | "WATCH_SLOW";

export type DkvOutcome = "unknown" | "not-applied";

export interface DkvErrorOptions {
  outcome?: DkvOutcome;
  cause?: unknown;
}

export class DkvError extends Error {
  readonly code: DkvErrorCode;
  readonly outcome: DkvOutcome;

  constructor(code: DkvErrorCode, message: string, options: DkvErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DkvError";
    this.code = code;
    this.outcome = options.outcome ?? "not-applied";
  }

  /** The wire and `--json` shape of a failure. */
  toJSON(): { error: DkvErrorCode; message: string; outcome: DkvOutcome } {
    return { error: this.code, message: this.message, outcome: this.outcome };
  }

  /**
   * The one way a thrown value becomes a DkvError: a DkvError is returned as it is;
   * anything else becomes `code` (INTERNAL unless the caller knows better) with the
   * thrown value's message, the given outcome, and the value as `cause`. Say "unknown"
   * whenever the failure may have struck after a write was sent.
   */
  static from(error: unknown, outcome: DkvOutcome, code: DkvErrorCode = "INTERNAL"): DkvError {
    if (error instanceof DkvError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new DkvError(code, message || "unexpected error", { outcome, cause: error });
  }

  static is(value: unknown, code?: DkvErrorCode): value is DkvError {
    return value instanceof DkvError && (code === undefined || value.code === code);
  }
}

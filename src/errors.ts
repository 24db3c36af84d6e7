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
  /** A membership change that conflicts with the cluster's state (in flight, exists, unsafe). */
  | "CONFLICT"
  /** This member was removed from the cluster: it serves nothing; use another member. */
  | "REMOVED";

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

  static is(value: unknown, code?: DkvErrorCode): value is DkvError {
    return value instanceof DkvError && (code === undefined || value.code === code);
  }
}

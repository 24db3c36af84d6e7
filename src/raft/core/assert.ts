/**
 * Assertions for programmer errors (TIGER_STYLE; etcd panics on them): a broken invariant
 * of the code itself — the Ready/advance contract, a role transition Raft never makes, a
 * log index out of its bounds — not an operating condition. Declared in the core, which
 * may throw one (it does no I/O), and used by the host too (raft/host/runtime.ts
 * re-exports them); the host ends the process on one (RaftGroup.fatal → onFatal), and no
 * layer ever turns one into a user-facing DkvError.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Throws an AssertionError saying `message` unless `condition` holds. */
export function assert(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === "string" ? message : message());
}

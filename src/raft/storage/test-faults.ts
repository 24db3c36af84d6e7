/**
 * Deliberate bugs for the fault-injection verification (test/verify): they exist so the
 * checkers can be shown to catch real violations. They are NOT features.
 *
 * Two locks keep them away from users:
 * 1. The build. `DKV_TEST_FAULTS` is a compile-time constant that only the verification
 *    helper sets (`bun build --define DKV_TEST_FAULTS=true`, into dist/dkv-faulty). In
 *    every other build and when running from source the identifier is undefined, so
 *    `compiledIn` is false and no flag, variable or config file can change that.
 * 2. The environment. Even in a faulty build a fault is active only when
 *    `DKV_TEST_FAULT` names it (comma list), so one binary serves every fault experiment.
 */

declare const DKV_TEST_FAULTS: boolean | undefined;

export type TestFaultName = "stale-reads" | "ack-before-fsync";

export interface TestFaults {
  /** Serve dstore reads from this member's applied state without a ReadIndex round. */
  readonly staleReads: boolean;
  /**
   * Send Raft messages (votes, append acks) before the WAL append is durable, and hold
   * the WAL write back for `ackBeforeFsyncHoldMs`: the hold stands in for a volatile disk
   * cache, because kill -9 alone never loses what already reached the page cache.
   */
  readonly ackBeforeFsync: boolean;
  readonly ackBeforeFsyncHoldMs: number;
}

const ACK_BEFORE_FSYNC_HOLD_MS = 300;

// `typeof` keeps an undefined global from throwing; a define replaces both mentions.
const compiledIn: boolean = typeof DKV_TEST_FAULTS === "boolean" && DKV_TEST_FAULTS;

function readFaults(): TestFaults {
  if (!compiledIn) return { staleReads: false, ackBeforeFsync: false, ackBeforeFsyncHoldMs: 0 };
  const names = new Set(
    (process.env.DKV_TEST_FAULT ?? "")
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name !== ""),
  );
  const faults: TestFaults = {
    staleReads: names.has("stale-reads"),
    ackBeforeFsync: names.has("ack-before-fsync"),
    ackBeforeFsyncHoldMs: ACK_BEFORE_FSYNC_HOLD_MS,
  };
  if (names.size > 0) {
    // Loud on purpose: a faulty build must never be mistaken for a real one in a log.
    console.error(`dkv: TEST BUILD with deliberate faults enabled: ${[...names].join(", ")}`);
  }
  return faults;
}

/** Read once at startup: the faults of this process. */
export const testFaults: TestFaults = readFaults();

/**
 * Why a Raft group stops, and whether the process must end with it: a storage write that
 * failed (PersistenceFailure, marked by persisted()) or a broken assertion ends the
 * process; another failure (the state machine's) stops only the group (groupStopped).
 */
import { DkvError } from "../../errors.ts";
import type { NodeId } from "../core/types.ts";
import { AssertionError, HostFatalError } from "./runtime.ts";

/** A storage write that failed: marks the failure so RaftGroup.fatal ends the process, not only the group. */
export class PersistenceFailure extends Error {
  constructor(cause: unknown) {
    super(`persistence failed: ${String(cause)}`, { cause });
    this.name = "PersistenceFailure";
  }
}

/** `write`, its failure marked as a PersistenceFailure. */
export function persisted(write: Promise<void>): Promise<void> {
  return write.catch((error: unknown) => {
    throw new PersistenceFailure(error);
  });
}

/** What RaftGroup.fatal does with a failure: the group's error for every request, and the process's end if it must. */
export interface GroupStop {
  /** Every request of the stopped group fails with this (outcome unknown). */
  failure: DkvError;
  /** For env.onFatal: the process must end; undefined when only the group stops. */
  processFatal: HostFatalError | undefined;
}

/**
 * Group `groupId` on `self` stops after `error` (storage, state machine or an assertion
 * failed); the member must restart. A storage failure or a broken assertion also ends the
 * process: after a failed fsync the kernel may have dropped the dirty pages, so only a
 * fresh process that recovers from what is really on disk may go on.
 */
export function groupStopped(groupId: number, self: NodeId, error: unknown): GroupStop {
  const cause = error instanceof PersistenceFailure ? error.cause : error;
  // A broken assertion is a bug wherever it surfaced (a storage bound during a Ready's write too), not a disk fault.
  const assertion = cause instanceof AssertionError ? cause : undefined;
  const failure = new DkvError(
    "UNAVAILABLE",
    `group ${groupId} on ${self} stopped after a storage or apply failure (${String(cause)}); restart this member`,
    { outcome: "unknown", cause },
  );
  if (error instanceof PersistenceFailure && assertion === undefined) {
    const processFatal = new HostFatalError(
      "persistence",
      groupId,
      `group ${groupId} on ${self}: writing to disk failed (${String(cause)}). After a failed fsync the OS may have dropped the unwritten data, so this process must stop; check the disk (free space, dmesg), then restart the member: it recovers from what is on disk and catches up from the others`,
      { cause },
    );
    return { failure, processFatal };
  }
  if (assertion !== undefined) {
    const processFatal = new HostFatalError(
      "assertion",
      groupId,
      `group ${groupId} on ${self}: internal invariant broken (${assertion.message}); this is a bug in dkv — the process must stop; restart the member and report the log`,
      { cause: assertion },
    );
    return { failure, processFatal };
  }
  return { failure, processFatal: undefined };
}

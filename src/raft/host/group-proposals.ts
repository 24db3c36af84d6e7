/**
 * A group's proposals as their proposers see them: who learns an outcome (ProposalReceiver,
 * PromiseReceiver), a refusal and its leader hint (ProposeRefusal, proposalRefused), and
 * the waiter of a proposed entry (ProposalWaiter), reused once its receiver was told.
 */
import { DkvError } from "../../errors.ts";
import type { NodeId, ProposeResult } from "../core/types.ts";
import { assert } from "./runtime.ts";
import type { StageTrace } from "./types.ts";

const EMPTY = new Uint8Array(0);

/**
 * Settled proposal waiters a group keeps for reuse: the writes a busy group has in flight.
 * At each tick the spares beyond what is in flight now (at least SPARE_WAITERS_IDLE) go,
 * so a group that had a burst keeps no more than its load needs (many groups per process).
 */
export const SPARE_WAITERS_MAX = 1024;
export const SPARE_WAITERS_IDLE = 16;
/** A spare waiter's receiver until its next proposal. */
export const noReceiver: ProposalReceiver = { proposalSettled() {} };

/**
 * A waiter is reused once its receiver was told (tellSettled): one found under another
 * index, or a spare one, is a stale reference (a bug that would tell the wrong receiver).
 */
export function checkWaiter(groupId: number, index: number, waiter: ProposalWaiter): void {
  if (waiter.index !== index || waiter.receiver === noReceiver)
    assert(
      false,
      `group ${groupId}: the waiter of entry ${waiter.index} was found at ${index} after it settled`,
    );
}

export function newWaiter(): ProposalWaiter {
  return {
    index: 0,
    term: 0,
    deadlineMs: 0,
    timeoutMs: 0,
    trace: undefined,
    bytes: 0,
    receiver: noReceiver,
    error: undefined,
    result: EMPTY,
    older: undefined,
  };
}

/** Outcome of trying to propose on this member: a promise of the result, or a refusal with a hint. */
export type ProposeAttempt =
  | { ok: true; result: Promise<Uint8Array> }
  | { ok: false; error: DkvError; leader: NodeId | null };

/** A proposal refused on this member (nothing entered the log), with the leader hint. */
export interface ProposeRefusal {
  error: DkvError;
  leader: NodeId | null;
}

/**
 * Who learns a proposal's outcome (RaftGroup.proposeTo): called exactly once, never
 * during the call that proposed, from one microtask per batch of settled proposals.
 * `error` undefined: the entry applied here and `result` is the state machine's answer;
 * otherwise the error's `outcome` says whether it may have applied. Must not throw.
 */
export interface ProposalReceiver {
  proposalSettled(error: DkvError | undefined, result: Uint8Array): void;
}

/** ProposalReceiver of tryPropose (and, by extension, DStore.write's): settles a promise. */
export class PromiseReceiver implements ProposalReceiver {
  readonly promise: Promise<Uint8Array>;
  private resolve!: (result: Uint8Array) => void;
  private reject!: (error: DkvError) => void;
  constructor() {
    this.promise = new Promise<Uint8Array>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
  proposalSettled(error: DkvError | undefined, result: Uint8Array): void {
    if (error === undefined) this.resolve(result);
    else this.reject(error);
  }
}

/**
 * A proposal awaiting its entry (index, term). Settles exactly once: ok when that entry
 * applies; not-applied when another entry applies at its index (log matching: ours never
 * will); unknown when its deadline passes, a snapshot jumps past it, or the group stops.
 */
export interface ProposalWaiter {
  index: number;
  term: number;
  deadlineMs: number;
  timeoutMs: number;
  trace: StageTrace | undefined;
  /** The entry's size as counted against raftLogMaxBytes until it applies or settles. */
  bytes: number;
  receiver: ProposalReceiver;
  /** The outcome, set when it settles, until the receiver is told (see settle). */
  error: DkvError | undefined;
  result: Uint8Array;
  /**
   * A proposal of an earlier term at the same index, still unsettled: a leader whose entries
   * were truncated can lead again and propose at the same index before the old one settles.
   */
  older: ProposalWaiter | undefined;
}

/** The refusal of a proposal the core did not take (`refused`: its reason and leader hint). */
export function proposalRefused(
  self: NodeId,
  groupId: number,
  refused: ProposeResult | undefined,
): ProposeRefusal {
  // The core refused and says why (a refusal of proposeIndex is one of proposalRefusal()).
  if (refused === undefined || refused.ok)
    assert(false, `group ${groupId}: a proposal refused without a reason`);
  const error =
    refused.reason === "not-leader"
      ? new DkvError(
          "NOT_LEADER",
          `member ${self} does not lead group ${groupId}; send to the leader (${refused.leader ?? "none elected yet"})`,
        )
      : new DkvError(
          "UNAVAILABLE",
          `group ${groupId} refused the proposal (${refused.reason}); retry shortly`,
        );
  return { error, leader: refused.leader };
}

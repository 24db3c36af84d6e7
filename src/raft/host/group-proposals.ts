/**
 * A group's proposals once they are in its log, and as their proposers see them: who
 * learns an outcome (ProposalReceiver, PromiseReceiver), a refusal and its leader hint
 * (ProposeRefusal, proposalRefused), and the waiters of proposed entries (GroupProposals:
 * settled once each, reused once their receiver was told).
 */
import { DkvError } from "../../errors.ts";
import type { Entry, NodeId, ProposeResult } from "../core/types.ts";
import type { GroupEnv } from "./group-env.ts";
import { assert } from "./runtime.ts";
import type { StageTrace } from "./types.ts";

const EMPTY = new Uint8Array(0);

/**
 * Settled proposal waiters a group keeps for reuse: the writes a busy group has in flight.
 * At each tick the spares beyond what is in flight now (at least SPARE_WAITERS_IDLE) go,
 * so a group that had a burst keeps no more than its load needs (many groups per process).
 */
const SPARE_WAITERS_MAX = 1024;
const SPARE_WAITERS_IDLE = 16;
/** A spare waiter's receiver until its next proposal. */
const noReceiver: ProposalReceiver = { proposalSettled() {} };

/**
 * A waiter is reused once its receiver was told (tellSettled): one found under another
 * index, or a spare one, is a stale reference (a bug that would tell the wrong receiver).
 */
function checkWaiter(groupId: number, index: number, waiter: ProposalWaiter): void {
  if (waiter.index !== index || waiter.receiver === noReceiver)
    assert(
      false,
      `group ${groupId}: the waiter of entry ${waiter.index} was found at ${index} after it settled`,
    );
}

function newWaiter(): ProposalWaiter {
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
interface ProposalWaiter {
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

/** What the proposals need of their group's environment. */
type ProposalsEnv = Pick<GroupEnv, "monotonicMs">;

/**
 * One group's proposals waiting for their entries (RaftGroup.proposeTo): found by log index,
 * settled when their entry applies, when another entry applies at their index, when a
 * snapshot jumps past them, at their deadline (checked in ticks: no timer per request) or
 * when the group stops; their receivers are told in one microtask per batch, and their
 * waiters kept for the next proposals. The group tells it what happens; it never touches
 * the group's other state.
 */
export class GroupProposals {
  /** Newest waiter per log index; older ones at the same index chain behind it. */
  private readonly waiters = new Map<number, ProposalWaiter>();
  private waiting = 0;
  /** Bytes of this member's proposals not yet applied (or settled otherwise). */
  private waitingBytes = 0;
  /** Settled proposals whose receivers are told in the next microtask (see settle). */
  private settledWaiters: ProposalWaiter[] = [];
  private spareSettled: ProposalWaiter[] = [];
  /** Waiters whose receivers were told, for later proposals (at most SPARE_WAITERS_MAX; trimmed per tick). */
  private readonly spareWaiters: ProposalWaiter[] = [];

  constructor(
    private readonly groupId: number,
    private readonly env: ProposalsEnv,
  ) {}

  /** Proposals waiting here (the group bounds them by proposalsPendingMax). */
  get count(): number {
    return this.waiting;
  }

  /** Bytes of the proposals waiting here, as counted against raftLogMaxBytes. */
  get pendingBytes(): number {
    return this.waitingBytes;
  }

  /** `receiver` waits for entry (index, term), proposed here, for at most `timeoutMs`. */
  add(
    index: number,
    term: number,
    timeoutMs: number,
    trace: StageTrace | undefined,
    bytes: number,
    receiver: ProposalReceiver,
  ): void {
    const older = this.waiters.get(index);
    if (older !== undefined && older.term >= term)
      assert(false, `group ${this.groupId}: two proposals at ${index}/${term}`);
    const deadlineMs = this.env.monotonicMs() + timeoutMs;
    // A waiter whose receiver was told is reused: no object per write.
    const waiter = this.spareWaiters.pop() ?? newWaiter();
    waiter.index = index;
    waiter.term = term;
    waiter.deadlineMs = deadlineMs;
    waiter.timeoutMs = timeoutMs;
    waiter.trace = trace;
    waiter.bytes = bytes;
    waiter.receiver = receiver;
    waiter.older = older;
    this.waiters.set(index, waiter);
    this.waiting++;
    this.waitingBytes += bytes;
  }

  /** `entry` applied here with `result`: the proposals waiting at its index settle. */
  applied(entry: Entry, result: Uint8Array): void {
    const newest = this.waiters.get(entry.index);
    if (newest === undefined) return;
    this.waiters.delete(entry.index);
    for (let waiter: ProposalWaiter | undefined = newest; waiter !== undefined; waiter = waiter.older) {
      this.settled(waiter, entry.index);
      if (waiter.trace !== undefined) waiter.trace.appliedMs = this.env.monotonicMs();
      if (waiter.term === entry.term) {
        this.settle(waiter, undefined, result);
      } else {
        // Log matching: an entry is identified by (index, term); another one applied here,
        // so ours never will.
        this.settle(
          waiter,
          new DkvError(
            "NOT_LEADER",
            `group ${this.groupId}: a new leader replaced entry ${entry.index} before it committed; it was not applied — retry`,
          ),
          EMPTY,
        );
      }
    }
  }

  /** A snapshot up to `snapshotIndex` was installed here: the proposals at or below it settle as unknown. */
  snapshotInstalled(snapshotIndex: number): void {
    // Entries up to the snapshot were never seen here: whether ours are among them is unknown.
    for (const [index, newest] of this.waiters) {
      if (index > snapshotIndex) continue;
      this.waiters.delete(index);
      const error = new DkvError(
        "UNAVAILABLE",
        `group ${this.groupId}: this member caught up through a snapshot past entry ${index}; its outcome is unknown — retry with the same request id`,
        { outcome: "unknown" },
      );
      for (let waiter: ProposalWaiter | undefined = newest; waiter !== undefined; waiter = waiter.older) {
        this.settled(waiter, index);
        this.settle(waiter, error, EMPTY);
      }
    }
  }

  /** Settles the proposals whose deadline passed (TIMEOUT, outcome unknown). */
  expire(nowMs: number): void {
    for (const [index, newest] of this.waiters) {
      let kept: ProposalWaiter | undefined;
      let last: ProposalWaiter | undefined;
      for (let waiter: ProposalWaiter | undefined = newest; waiter !== undefined; ) {
        const older: ProposalWaiter | undefined = waiter.older;
        if (waiter.deadlineMs <= nowMs) {
          this.settled(waiter, index);
          this.settle(
            waiter,
            new DkvError(
              "TIMEOUT",
              `group ${this.groupId}: entry ${index} was not applied within ${waiter.timeoutMs} ms; it may still apply — check before retrying, or retry with the same request id`,
              { outcome: "unknown" },
            ),
            EMPTY,
          );
        } else {
          checkWaiter(this.groupId, index, waiter);
          waiter.older = undefined;
          if (last === undefined) kept = waiter;
          else last.older = waiter;
          last = waiter;
        }
        waiter = older;
      }
      if (kept === undefined) this.waiters.delete(index);
      else if (kept !== newest) this.waiters.set(index, kept);
    }
  }

  /** Drops the spare waiters beyond what is in flight now (at least SPARE_WAITERS_IDLE); once per tick. */
  trimSpares(): void {
    const sparesKept = Math.max(SPARE_WAITERS_IDLE, this.waiting);
    if (this.spareWaiters.length > sparesKept) this.spareWaiters.length = sparesKept;
  }

  /** Stamps `stage` into the traces of the proposals waiting on `entries` (only when tracing). */
  stamp(entries: readonly Entry[], stage: "persistingMs" | "durableMs" | "committedMs"): void {
    if (this.waiters.size === 0) return;
    const nowMs = this.env.monotonicMs();
    for (const entry of entries) {
      const trace = this.waiters.get(entry.index)?.trace;
      if (trace !== undefined && trace[stage] === 0) trace[stage] = nowMs;
    }
  }

  /** The group stopped: every proposal settles with `error`. */
  failAll(error: DkvError): void {
    for (const newest of this.waiters.values()) {
      for (let waiter: ProposalWaiter | undefined = newest; waiter !== undefined; waiter = waiter.older) {
        this.settle(waiter, error, EMPTY);
      }
    }
    this.waiters.clear();
    this.waiting = 0;
    this.waitingBytes = 0;
  }

  /** `waiter`, found under `index`, is settling: it leaves the counts. */
  private settled(waiter: ProposalWaiter, index: number): void {
    checkWaiter(this.groupId, index, waiter);
    this.waiting--;
    this.waitingBytes -= waiter.bytes;
  }

  /**
   * Records `waiter`'s outcome; its receiver is told in one microtask with every other
   * proposal settled until then (a batch applied together costs one microtask, not a
   * promise and its reactions per write), and never while the Raft state is mid-step.
   */
  private settle(waiter: ProposalWaiter, error: DkvError | undefined, result: Uint8Array): void {
    waiter.error = error;
    waiter.result = result;
    if (this.settledWaiters.push(waiter) === 1) queueMicrotask(this.tellSettled);
  }

  private readonly tellSettled = (): void => {
    const waiters = this.settledWaiters;
    this.settledWaiters = this.spareSettled;
    let thrown: { error: unknown } | undefined;
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters[i]!;
      waiter.older = undefined;
      const { receiver, error: failure, result } = waiter;
      // Nothing refers to a settled waiter any more (it left `waiters`): kept for reuse.
      waiter.receiver = noReceiver;
      waiter.error = undefined;
      waiter.result = EMPTY;
      waiter.trace = undefined;
      if (this.spareWaiters.length < SPARE_WAITERS_MAX) this.spareWaiters.push(waiter);
      try {
        receiver.proposalSettled(failure, result);
      } catch (error) {
        // A receiver broke its contract: the others are still told, then it surfaces.
        thrown ??= { error };
      }
    }
    waiters.length = 0;
    this.spareSettled = waiters;
    if (thrown !== undefined) throw thrown.error;
  };
}

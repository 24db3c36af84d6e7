import { DkvError } from "../../errors.ts";
import { ENTRY_OVERHEAD_BYTES } from "../core/entries.ts";
import type { ConfChange, Message, NodeId, Snapshot } from "../core/types.ts";
import type { GroupEnv, GroupOptions } from "./group-env.ts";
import {
  PromiseReceiver,
  type ProposalReceiver,
  type ProposeAttempt,
  type ProposeRefusal,
  proposalRefused,
} from "./group-proposals.ts";
import { RaftGroupReadyLoop } from "./group-ready.ts";
import type { LogBudgetView } from "./log-budget.ts";
import { assert, type GroupStorage } from "./runtime.ts";
import type { StageTrace, StateMachine } from "./types.ts";

/**
 * One Raft group on this member: the RaftNode, its durable storage and its state machine,
 * driven by the Ready contract (send a leader's appends, persist, then send the rest, then
 * apply, then answer reads, then advance), with the requests waiting on it. At most one Ready is in flight at a time.
 * Here: its inputs (ticks, messages, proposals, reads, close). What it holds and how it
 * stops is RaftGroupState (group-state.ts), its Ready loop RaftGroupReadyLoop
 * (group-ready.ts). Its parts, each told what happens here: the proposals' waiters
 * (group-proposals.ts), linearizable reads (group-reads.ts), snapshots and the log memory
 * they bound (group-snapshots.ts), leader-change watchers (leader-watchers.ts); why it
 * stops (group-failure.ts).
 */
export class RaftGroup extends RaftGroupReadyLoop {
  constructor(
    groupId: number,
    storage: GroupStorage,
    stateMachine: StateMachine,
    env: GroupEnv,
    snapshot: Snapshot | null,
    options: GroupOptions = {},
  ) {
    super(groupId, storage, stateMachine, env, snapshot, options);
    const conf = this.node.status().conf;
    // A group of one needs no election timeout to find out it leads.
    if (conf.voters.length === 1 && conf.voters[0] === env.self) this.node.campaign();
    this.schedule();
  }

  // ---- inputs ------------------------------------------------------------------------

  tick(wallMs: number): void {
    if (this.closed) return;
    const nowMs = this.env.monotonicMs();
    // The monotonic reading is the read lease's clock (reads.ts); ticks undercount a pause.
    try {
      this.node.tick(wallMs, nowMs);
    } catch (error) {
      if (!this.assertionFailed(error)) throw error;
      return;
    }
    try {
      this.proposals.expire(nowMs);
    } catch (error) {
      if (!this.assertionFailed(error)) throw error;
      return;
    }
    this.reads.expire(nowMs);
    this.leaderWatchers.expire(nowMs);
    this.proposals.trimSpares();
    // Outside a drain no restore is half-done, so the state machine is at appliedIndex.
    this.snapshots.tick();
    if (this.snapshots.wanted && !this.draining) this.maybeSnapshot();
    this.reads.tick();
    this.reads.askQueued();
    // Most ticks of most groups change nothing: only those with a Ready join the next pass.
    if (this.node.hasReady()) this.schedule();
  }

  step(message: Message): void {
    if (this.closed) return;
    // A forwarded read the leader answers from its lease is checked against this reading.
    this.node.observeTime(this.env.nowMs(), this.env.monotonicMs());
    try {
      this.node.step(message);
    } catch (error) {
      if (!this.assertionFailed(error)) throw error;
      return;
    }
    this.schedule();
  }

  reportUnreachable(to: NodeId): void {
    if (this.closed) return;
    this.node.reportUnreachable(to);
    this.schedule();
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    if (this.closed) return;
    this.node.reportSnapshot(to, ok);
    this.schedule();
  }

  /**
   * Proposes on this member if it leads; otherwise refuses with the leader hint. With
   * `confChange` the entry is that membership change (`data` is ignored).
   */
  tryPropose(data: Uint8Array, timeoutMs: number, confChange?: ConfChange): ProposeAttempt {
    const receiver = new PromiseReceiver();
    const refused = this.proposeTo(data, timeoutMs, receiver, confChange);
    if (refused !== undefined) return { ok: false, error: refused.error, leader: refused.leader };
    return { ok: true, result: receiver.promise };
  }

  /**
   * tryPropose without a promise: undefined when proposed (then `receiver` learns the
   * outcome exactly once, later), or the refusal (then it is never called).
   */
  proposeTo(
    data: Uint8Array,
    timeoutMs: number,
    receiver: ProposalReceiver,
    confChange?: ConfChange,
  ): ProposeRefusal | undefined {
    const refusal = this.refusal();
    if (refusal !== undefined) return { error: refusal, leader: null };
    if (this.proposals.count >= this.env.proposalsPendingMax) {
      return {
        error: new DkvError(
          "UNAVAILABLE",
          `group ${this.groupId} has ${this.proposals.count} proposals waiting to apply; retry later or lower the load`,
        ),
        leader: this.leader,
      };
    }
    // A membership change is small and rare: never held back by the log's bound. A follower
    // does not check it: the core refuses it as not the leader, and the host forwards.
    const bytes = confChange === undefined ? data.byteLength + ENTRY_OVERHEAD_BYTES : 0;
    const full =
      confChange === undefined && this.role === "leader"
        ? this.snapshots.logFullRefusal(bytes, this.proposals.pendingBytes)
        : undefined;
    if (full !== undefined) return { error: full, leader: this.leader };
    this.node.observeTime(this.env.nowMs());
    // A data entry's index without a result object per write (the common case).
    let index: number;
    let term: number;
    if (confChange === undefined) {
      index = this.node.proposeIndex(data);
      term = this.node.term;
      if (index === 0) return proposalRefused(this.env.self, this.groupId, this.node.proposalRefusal());
    } else {
      const proposed = this.node.proposeConfChange(confChange);
      if (!proposed.ok) return proposalRefused(this.env.self, this.groupId, proposed);
      index = proposed.index;
      term = proposed.term;
    }
    // The message closures only when a check fails: a closure per write is garbage per write.
    if (index <= this.appliedIndex)
      assert(false, `group ${this.groupId}: proposed at ${index}, already applied ${this.appliedIndex}`);
    const observer = this.env.observer;
    let trace: StageTrace | undefined;
    if (observer !== undefined) {
      observer.proposed(this.groupId);
      trace = observer.currentTrace?.();
      if (trace !== undefined) trace.proposedMs = this.env.monotonicMs();
    }
    this.proposals.add(index, term, timeoutMs, trace, bytes, receiver);
    this.schedule();
    return undefined;
  }

  /**
   * Linearizable read: takes a read index (through the leader), waits until this member
   * has applied it, then calls `evaluate` with the leader's time of the read.
   */
  read<T>(evaluate: (nowMs: number) => T, timeoutMs: number): Promise<T> {
    const refusal = this.refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    const read = this.reads.add(evaluate, timeoutMs);
    // Asked in the host's next pass (startReady), with every read that arrives until then.
    this.schedule();
    return read;
  }

  /** Resolves on the next leader change, or on the first tick after `ms` (monotonic), whichever comes first. */
  waitLeaderChange(ms: number): Promise<void> {
    // A stopped group has no leader to wait for, and no ticks to end the wait.
    if (this.closed) return Promise.resolve();
    return this.leaderWatchers.wait(ms);
  }

  /** Stops the group: fails every waiter, waits for the Ready in flight and any snapshot save. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    const error = new DkvError(
      "CLOSED",
      `group ${this.groupId} on ${this.env.self} is shutting down; retry on another member`,
      {
        outcome: "unknown",
      },
    );
    this.failAll(error);
    if (this.startedReady !== undefined) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.readyFinished = resolve;
      await promise;
    }
    await this.snapshotReadyDone;
    await this.snapshots.saving;
    try {
      await this.storage.close();
    } catch (closeError) {
      // A storage that already failed (fatal) cannot flush; its failure was reported then.
      if (this.failure === undefined) throw closeError;
    }
  }

  // ---- stale reads, snapshots, the log budget ---------------------------------------

  /** A stale read: this member's applied state, at the later of its clock and its log time. */
  readStale<T>(evaluate: (nowMs: number) => T): T {
    const refusal = this.refusal();
    if (refusal !== undefined) throw refusal;
    return evaluate(Math.max(this.env.nowMs(), this.appliedTimeMs));
  }

  /** Index of the latest snapshot saved or installed here (or opened from). */
  get snapshotIndex(): number {
    return this.snapshots.index;
  }

  /** What the process's log budget (log-budget.ts) weighs of this group. */
  logBudgetView(): LogBudgetView {
    return this.snapshots.logBudgetView();
  }

  /** Snapshots at the next tick whatever the cadence says (the process's log budget asks). */
  askSnapshot(): void {
    this.snapshots.askSnapshot();
  }
}

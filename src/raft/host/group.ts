import { DkvError } from "../../errors.ts";
import { decodeConfChange } from "../core/confchange.ts";
import { ENTRY_OVERHEAD_BYTES, entrySizeBytes } from "../core/entries.ts";
import { RaftNode } from "../core/raft.ts";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryKind,
  type Message,
  type NodeId,
  type Ready,
  type Role,
  type Snapshot,
  type SnapshotMeta,
} from "../core/types.ts";
import { testFaults } from "../storage/test-faults.ts";
import type { GroupEnv, GroupOptions } from "./group-env.ts";
import { groupStopped, PersistenceFailure, persisted } from "./group-failure.ts";
import {
  GroupProposals,
  PromiseReceiver,
  type ProposalReceiver,
  type ProposeAttempt,
  type ProposeRefusal,
  proposalRefused,
} from "./group-proposals.ts";
import { GroupReads } from "./group-reads.ts";
import { GroupSnapshots } from "./group-snapshots.ts";
import { LeaderWatchers } from "./leader-watchers.ts";
import type { LogBudgetView } from "./log-budget.ts";
import type { PersistFailure, ReadyStart } from "./ready-pass.ts";
import { AssertionError, assert, type GroupStorage } from "./runtime.ts";
import type { StageTrace, StateMachine } from "./types.ts";

const EMPTY = new Uint8Array(0);

/**
 * One Raft group on this member: the RaftNode, its durable storage and its state machine,
 * driven by the Ready contract (send a leader's appends, persist, then send the rest, then
 * apply, then answer reads, then advance), with the requests waiting on it. At most one Ready is in flight at a time.
 * Its parts, each told what happens here: the proposals' waiters (group-proposals.ts),
 * linearizable reads (group-reads.ts), snapshots and the log memory they bound
 * (group-snapshots.ts), leader-change watchers (leader-watchers.ts); why it stops
 * (group-failure.ts).
 */
export class RaftGroup {
  readonly node: RaftNode;
  appliedIndex: number;
  appliedTerm: number;
  /** Log time of the last applied entry: reads never evaluate before it. */
  appliedTimeMs: number;
  leader: NodeId | null = null;
  role: Role = "follower";

  /** A Ready is in flight (handed out by ready(), not yet advanced): at most one per group. */
  private draining = false;
  /** Asked the host for a pass that has not reached this group yet. */
  private readyRequested = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private failure: DkvError | undefined;
  /** Proposals of this member waiting for their entries to apply. */
  private readonly proposals: GroupProposals;
  /** Snapshots taken and saved here, and the log memory they bound. */
  private readonly snapshots: GroupSnapshots;
  /** Linearizable reads waiting for a read index or for apply to reach it. */
  private readonly reads: GroupReads;
  /** Woken on every leader change (and on close), so a proposal waiting for a leader retries. */
  private readonly leaderWatchers: LeaderWatchers;
  /** A snapshot install's Ready, which runs on its own (see startReady); settles when it is done. */
  private snapshotReadyDone: Promise<void> = Promise.resolve();
  /** The Ready startReady began and finishReady has yet to finish. */
  private startedReady: Ready | undefined;
  /** Set by close() while startedReady is in flight: finishReady calls it (no promise per Ready otherwise). */
  private readyFinished: (() => void) | undefined;
  /** Persisting startedReady failed before it returned (wrapped, so even a thrown undefined counts). */
  private persistFailure: PersistFailure | undefined;

  constructor(
    readonly groupId: number,
    private readonly storage: GroupStorage,
    readonly stateMachine: StateMachine,
    private readonly env: GroupEnv,
    snapshot: Snapshot | null,
    readonly options: GroupOptions = {},
  ) {
    const meta = snapshot?.meta;
    this.appliedIndex = meta?.index ?? 0;
    this.appliedTerm = meta?.term ?? 0;
    this.appliedTimeMs = meta?.timeMs ?? 0;
    this.snapshots = new GroupSnapshots(
      groupId,
      storage,
      env,
      {
        // Outside a drain the state machine is at appliedIndex.
        saveEnded: () => {
          if (!this.closed && !this.draining) this.maybeSnapshot();
        },
        fatal: (error) => this.fatal(error),
      },
      snapshot,
    );
    const incarnation = `${Math.floor(env.nowMs()).toString(36)}.${Math.floor(env.random() * 0x1_0000_0000).toString(36)}`;
    this.node = new RaftNode({
      id: env.self,
      storage,
      random: env.random,
      electionTicks: env.electionTicks,
      heartbeatTicks: env.heartbeatTicks,
      // The state machine starts from the snapshot: entries after it are applied again.
      applied: this.appliedIndex,
      // Our appends go out while we persist them; we count our own copy only once durable.
      appendsBeforePersist: true,
      // A group taking writes needs no heartbeats besides its appends: with many groups
      // per process, that is most of the messages an idle-looking member would send.
      quietHeartbeats: true,
      // A bare commit advance goes out unanswered: one write per group then costs no ack of it.
      commitNotices: true,
      // ... held for a moment when the host can (commit-notice-hold.ts): the group's next
      // write often carries the commit index to the followers first.
      holdCommitNotices: env.holdCommitNotices !== undefined,
      // Lease reads (--read-lease): every member keeps the promise a lease rests on.
      ...((env.readLeaseMs ?? 0) > 0 ? { readOnly: "lease" as const, leaseMs: env.readLeaseMs } : {}),
      logger: env.logger,
    });
    this.proposals = new GroupProposals(groupId, env);
    this.leaderWatchers = new LeaderWatchers(env);
    this.reads = new GroupReads(groupId, `${env.self}/${incarnation}`, env, this.node);
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

  /**
   * A core assertion (a broken invariant: a bug, not bad input) met in a step or tick ends
   * the process through fatal(), as one met in a Ready does; true when it was one.
   */
  private assertionFailed(error: unknown): boolean {
    if (!(error instanceof AssertionError)) return false;
    this.fatal(error);
    return true;
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

  // ---- the Ready loop ----------------------------------------------------------------

  /**
   * Asks the host for a Ready pass (ready-pass.ts); messages and proposals arriving until
   * it runs batch into one Ready, and every group's Ready of that pass is persisted in one
   * batch.
   */
  schedule(): void {
    if (this.readyRequested || this.closed) return;
    this.readyRequested = true;
    this.env.requestReady(this);
  }

  /**
   * The host's pass: starts one Ready if there is one and none is in flight (see
   * ReadyParticipant): everything up to its persistence runs now; the pass calls
   * finishReady once that is durable, together with every other group's.
   */
  startReady(): ReadyStart {
    this.readyRequested = false;
    if (!this.closed) this.reads.askQueued();
    if (this.draining || this.closed) return false;
    const hasReady = this.node.hasReady();
    this.noteHeldNotices();
    if (!hasReady) return false;
    this.draining = true;
    let rd: Ready;
    try {
      rd = this.node.ready();
    } catch (error) {
      // The core's Ready contract broken (an AssertionError): fatal ends the process.
      this.fatal(error);
      this.draining = false;
      return false;
    }
    if (rd.snapshot !== undefined) {
      // A snapshot install streams to disk and restores the state machine: it runs on its
      // own, so the other groups need not wait for it.
      this.snapshotReadyDone = this.handleSnapshotReady(rd).then(
        () => this.readyDone(),
        (error: unknown) => {
          this.fatal(error);
          this.readyDone();
        },
      );
      return false;
    }
    this.startedReady = rd;
    try {
      this.beginReady(rd);
      // The storage's own promise (shared by every group of the log batch), or undefined.
      return this.persistReady(rd) ?? true;
    } catch (error) {
      this.persistFailure = { error };
      return true;
    }
  }

  /**
   * The rest of the Ready startReady began, once its persistence is durable (the pass's
   * call), or the group's end if that failed (`failure`).
   */
  finishReady(failure?: PersistFailure): void {
    const rd = this.startedReady;
    const finished = this.readyFinished;
    const thrown = this.persistFailure;
    this.startedReady = undefined;
    this.readyFinished = undefined;
    this.persistFailure = undefined;
    if (rd === undefined) return;
    try {
      if (thrown !== undefined) throw thrown.error;
      if (failure !== undefined) {
        throw failure.error instanceof PersistenceFailure
          ? failure.error
          : new PersistenceFailure(failure.error);
      }
      if (!this.closed) {
        // 2. send the rest (acks, votes, heartbeats, read answers): only now that it is durable
        for (const message of rd.messages) this.env.send(this.groupId, message);
        this.applyReady(rd);
      }
    } catch (error) {
      this.fatal(error);
    }
    this.readyDone();
    finished?.();
  }

  private readyDone(): void {
    this.draining = false;
    if (this.closed) return;
    if (this.node.hasReady()) this.schedule();
    this.noteHeldNotices();
  }

  /** The core holds commit notices (hasReady/ready builds them): the host sends them shortly. */
  private noteHeldNotices(): void {
    if (this.node.commitNoticesHeld()) this.env.holdCommitNotices?.(this);
  }

  /** The host's hold is over: the notices still owed go out (commit-notice-hold.ts). */
  releaseCommitNotices(): void {
    if (this.closed) return;
    this.node.sendHeldCommitNotices();
    this.schedule();
  }

  /** Trace stamps, the soft state, and a leader's appends (sent while we persist: see Ready). */
  private beginReady(rd: Ready): void {
    if (this.env.observer?.currentTrace !== undefined) {
      this.proposals.stamp(rd.committedEntries, "committedMs");
      this.proposals.stamp(rd.entries, "persistingMs");
    }
    if (rd.softState !== undefined) this.onSoftState(rd.softState.leader, rd.softState.role);
    // 0. a leader's appends go out now: followers write them while we do (see Ready).
    for (const message of rd.messagesBeforePersist) this.env.send(this.groupId, message);
  }

  /**
   * 1. persist the entries and hard state; returns what must be durable before the rest of
   * the Ready goes on (a failure rejects it: fatal), or undefined when nothing must wait.
   */
  private persistReady(rd: Ready): Promise<void> | undefined {
    if (rd.entries.length === 0 && rd.hardState === undefined) return undefined;
    assertContiguous(this.groupId, rd.entries);
    const write = this.storage.append(rd.entries, rd.hardState);
    // A commit-index-only change need not be on disk before we go on (Raft recovers it).
    // (A test build's ack-before-fsync fault skips the wait: see storage/test-faults.ts.)
    if (!rd.mustSync || testFaults.ackBeforeFsync) {
      write.catch((error: unknown) => this.fatal(new PersistenceFailure(error)));
      return undefined;
    }
    const observer = this.env.observer;
    // Not wrapped: the pass hands a failure to finishReady, which wraps it.
    if (observer === undefined) return write;
    const durable = persisted(write);
    const syncStartMs = this.env.monotonicMs();
    return durable.then(() => {
      observer.walSynced(this.groupId, this.env.monotonicMs() - syncStartMs);
      if (observer.currentTrace !== undefined) this.proposals.stamp(rd.entries, "durableMs");
    });
  }

  /** A Ready carrying a snapshot to install: persisted and applied on its own (see startReady). */
  private async handleSnapshotReady(rd: Ready): Promise<void> {
    this.beginReady(rd);
    // Never two snapshot saves at once: ours may still be streaming.
    await this.snapshots.saving;
    const installStartMs = this.env.monotonicMs();
    await persisted(this.storage.saveSnapshot(rd.snapshot!.meta, rd.snapshot!.data));
    this.env.observer?.snapshotDone(this.groupId, "install", this.env.monotonicMs() - installStartMs, true);
    const durable = this.persistReady(rd);
    if (durable !== undefined) await persisted(durable);
    if (this.closed) return;
    for (const message of rd.messages) this.env.send(this.groupId, message);
    await this.restore(rd.snapshot!);
    this.applyReady(rd);
  }

  /** 3. apply, 4. answer reads, 5. advance. */
  private applyReady(rd: Ready): void {
    for (const entry of rd.committedEntries) this.apply(entry);
    this.reads.indexesKnown(rd.readStates);
    this.reads.answer(this.appliedIndex, this.appliedTimeMs);
    // The reads that arrived while those rounds were out: one batch for all of them.
    if (!this.closed) this.reads.askQueued();
    this.node.advance();
    this.maybeSnapshot();
  }

  private apply(entry: Entry): void {
    if (entry.index <= this.appliedIndex) return;
    if (entry.index !== this.appliedIndex + 1)
      assert(
        false,
        `group ${this.groupId}: committed entry ${entry.index} after applied ${this.appliedIndex} leaves a gap`,
      );
    let result: Uint8Array = EMPTY;
    if (entry.kind === EntryKind.ConfChange) {
      const change = decodeConfChange(entry.data);
      const conf = this.node.applyConfChange(change);
      this.env.logger.info(`group ${this.groupId}: configuration now ${describeConf(conf)}`);
      this.env.onConfChange?.(this.groupId, change, conf);
    } else if (entry.kind === EntryKind.Normal) {
      result = this.stateMachine.apply(entry);
    }
    this.appliedIndex = entry.index;
    this.appliedTerm = entry.term;
    if (entry.timeMs > this.appliedTimeMs) this.appliedTimeMs = entry.timeMs;
    this.snapshots.entryApplied(entrySizeBytes(entry));
    this.proposals.applied(entry, result);
  }

  private async restore(snapshot: Snapshot): Promise<void> {
    await this.stateMachine.restore(snapshot.data);
    const { index, term, timeMs } = snapshot.meta;
    this.appliedIndex = index;
    this.appliedTerm = term;
    if (timeMs > this.appliedTimeMs) this.appliedTimeMs = timeMs;
    this.snapshots.restored(index, snapshot.data.byteLength);
    this.proposals.snapshotInstalled(snapshot.meta.index);
  }

  // ---- stale reads, snapshots, the log budget ---------------------------------------

  /** A stale read: this member's applied state, at the later of its clock and its log time. */
  readStale<T>(evaluate: (nowMs: number) => T): T {
    const refusal = this.refusal();
    if (refusal !== undefined) throw refusal;
    return evaluate(Math.max(this.env.nowMs(), this.appliedTimeMs));
  }

  /** Snapshots when the cadence says so (./snapshot-cadence.ts); then compacts the log behind it (group-snapshots.ts). */
  private maybeSnapshot(): void {
    if (!this.snapshots.takeDue(this.appliedIndex)) return;
    const meta: SnapshotMeta = {
      index: this.appliedIndex,
      term: this.appliedTerm,
      timeMs: this.appliedTimeMs,
      conf: this.node.status().conf,
    };
    // Captured now, at exactly the applied index; the bytes stream while we go on applying.
    this.snapshots.save(meta, this.stateMachine.snapshot());
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

  // ---- bookkeeping -------------------------------------------------------------------

  private onSoftState(leader: NodeId | null, role: Role): void {
    assert(
      (role === "leader") === (leader === this.env.self),
      () => `group ${this.groupId}: role ${role} with leader ${leader} on ${this.env.self}`,
    );
    const changed = leader !== this.leader;
    this.leader = leader;
    this.role = role;
    if (changed) {
      this.env.logger.info(
        `group ${this.groupId}: leader is now ${leader ?? "unknown"} (${this.env.self} is ${role})`,
      );
      this.leaderWatchers.wakeAll();
      // Read indexes asked of the old leader are lost with it: ask the new one now
      // rather than after an election timeout.
      if (leader !== null) {
        this.reads.reaskUnanswered();
      }
    }
  }

  private refusal(): DkvError | undefined {
    if (this.failure !== undefined) return this.failure;
    if (this.closed) {
      return new DkvError(
        "CLOSED",
        `group ${this.groupId} on ${this.env.self} is closed; use another member`,
      );
    }
    return undefined;
  }

  /**
   * Storage, state machine or an assertion failed: the group stops; the member must restart.
   * A storage failure or a broken assertion also ends the process (`env.onFatal`; see
   * groupStopped in group-failure.ts).
   */
  private fatal(error: unknown): void {
    if (this.failure !== undefined) return;
    const { failure, processFatal } = groupStopped(this.groupId, this.env.self, error);
    this.failure = failure;
    this.env.logger.warn(failure.message);
    this.closed = true;
    this.failAll(failure);
    if (processFatal !== undefined) this.env.onFatal(processFatal);
  }

  private failAll(error: DkvError): void {
    this.proposals.failAll(error);
    this.reads.failAll(error);
    this.leaderWatchers.wakeAll();
  }
}

function assertContiguous(groupId: number, entries: readonly Entry[]): void {
  const first = entries[0];
  if (first === undefined) return;
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.index !== first.index + i)
      assert(
        false,
        `group ${groupId}: Ready entries not contiguous at position ${i} (${entries[i]!.index} after ${first.index})`,
      );
  }
}

function describeConf(conf: ConfState): string {
  const learners = conf.learners.length > 0 ? ` learners [${conf.learners.join(", ")}]` : "";
  return `voters [${conf.voters.join(", ")}]${learners}`;
}

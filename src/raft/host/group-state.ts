/**
 * What a Raft group holds (RaftGroup, group.ts): its RaftNode, its storage, its state
 * machine and the parts its requests wait in, what it has applied, who leads, where its
 * Ready loop stands, and how it stops (fatal: every waiter fails; group-failure.ts says
 * whether the process ends too). The Ready loop (group-ready.ts) and the inputs (group.ts)
 * build on it as subclasses: one object per group, its methods called directly.
 */
import { DkvError } from "../../errors.ts";
import { RaftNode } from "../core/raft.ts";
import type { NodeId, Ready, Role, Snapshot } from "../core/types.ts";
import type { GroupEnv, GroupOptions } from "./group-env.ts";
import { groupStopped } from "./group-failure.ts";
import { GroupProposals } from "./group-proposals.ts";
import { GroupReads } from "./group-reads.ts";
import { GroupSnapshots } from "./group-snapshots.ts";
import { LeaderWatchers } from "./leader-watchers.ts";
import type { PersistFailure } from "./ready-pass.ts";
import { AssertionError, type GroupStorage } from "./runtime.ts";
import type { StateMachine } from "./types.ts";

/** A group's state and parts, and how it stops (see the file's header). */
export abstract class RaftGroupState {
  readonly node: RaftNode;
  appliedIndex: number;
  appliedTerm: number;
  /** Log time of the last applied entry: reads never evaluate before it. */
  appliedTimeMs: number;
  leader: NodeId | null = null;
  role: Role = "follower";

  /** A Ready is in flight (handed out by ready(), not yet advanced): at most one per group. */
  protected draining = false;
  /** Asked the host for a pass that has not reached this group yet. */
  protected readyRequested = false;
  protected closed = false;
  protected closing: Promise<void> | undefined;
  protected failure: DkvError | undefined;
  /** Proposals of this member waiting for their entries to apply. */
  protected readonly proposals: GroupProposals;
  /** Snapshots taken and saved here, and the log memory they bound. */
  protected readonly snapshots: GroupSnapshots;
  /** Linearizable reads waiting for a read index or for apply to reach it. */
  protected readonly reads: GroupReads;
  /** Woken on every leader change (and on close), so a proposal waiting for a leader retries. */
  protected readonly leaderWatchers: LeaderWatchers;
  /** A snapshot install's Ready, which runs on its own (see startReady); settles when it is done. */
  protected snapshotReadyDone: Promise<void> = Promise.resolve();
  /** The Ready startReady began and finishReady has yet to finish. */
  protected startedReady: Ready | undefined;
  /** Set by close() while startedReady is in flight: finishReady calls it (no promise per Ready otherwise). */
  protected readyFinished: (() => void) | undefined;
  /** Persisting startedReady failed before it returned (wrapped, so even a thrown undefined counts). */
  protected persistFailure: PersistFailure | undefined;

  constructor(
    readonly groupId: number,
    protected readonly storage: GroupStorage,
    readonly stateMachine: StateMachine,
    protected readonly env: GroupEnv,
    snapshot: Snapshot | null,
    readonly options: GroupOptions,
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
  }

  /** Snapshots when the cadence says so (the Ready loop's, group-ready.ts). */
  protected abstract maybeSnapshot(): void;

  /**
   * A core assertion (a broken invariant: a bug, not bad input) met in a step or tick ends
   * the process through fatal(), as one met in a Ready does; true when it was one.
   */
  protected assertionFailed(error: unknown): boolean {
    if (!(error instanceof AssertionError)) return false;
    this.fatal(error);
    return true;
  }

  protected refusal(): DkvError | undefined {
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
  protected fatal(error: unknown): void {
    if (this.failure !== undefined) return;
    const { failure, processFatal } = groupStopped(this.groupId, this.env.self, error);
    this.failure = failure;
    this.env.logger.warn(failure.message);
    this.closed = true;
    this.failAll(failure);
    if (processFatal !== undefined) this.env.onFatal(processFatal);
  }

  protected failAll(error: DkvError): void {
    this.proposals.failAll(error);
    this.reads.failAll(error);
    this.leaderWatchers.wakeAll();
  }
}

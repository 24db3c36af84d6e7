/**
 * RaftHost: the groups of this process and what they share. Group lifecycle (addGroup
 * over the shared log, retire, close), the request entry points (propose with its retries,
 * read, campaign, transfer), routing of transport input to groups, the tick, and the
 * held sends of a Ready pass's stretch. Beside it: host-config.ts (option checks),
 * proposal-forwarding.ts (forwarding proposals to the leader's host and serving them),
 * host-status.ts (a group's status report), ready-pass.ts (the pass scheduling).
 */

import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import { readLeaseMs } from "../core/reads.ts";
import { type ConfChange, type Message, MessageType, type NodeId, type RaftLogger } from "../core/types.ts";
import { SharedLog, type SharedLogStats } from "../storage/shared-log.ts";
import { testFaults } from "../storage/test-faults.ts";
import type { NodeTransportHandlers } from "../transport/types.ts";
import { commitNoticeHoldEnv } from "./commit-notice-hold.ts";
import { decodeHostFrame, FrameKind } from "./frames.ts";
import { RaftGroup } from "./group.ts";
import type { GroupEnv, GroupOptions } from "./group-env.ts";
import type { ProposalReceiver, ProposeAttempt } from "./group-proposals.ts";
import { checkHostConfig, HOST_DEFAULTS as DEFAULTS } from "./host-config.ts";
import { groupStatus } from "./host-status.ts";
import { planLeaderTransfer } from "./leader-balance.ts";
import { groupsOverLogBudget } from "./log-budget.ts";
import type { MembershipHooks } from "./membership-types.ts";
import { ProposalForwarding } from "./proposal-forwarding.ts";
import { ReadyPasses } from "./ready-pass.ts";
import { type GroupStorage, type HostScheduler, realScheduler } from "./runtime.ts";
import type { GroupStatus, RaftHostConfig, ReadOptions, RequestOptions, StateMachine } from "./types.ts";

/** Attempts of one proposal (local tries and forwards) before giving up; time bounds it too. */
const PROPOSE_ATTEMPTS_MAX = 64;

const silentLogger: RaftLogger = { debug() {}, info() {}, warn() {} };

/**
 * Runs many Raft groups in one process over one NodeTransport and one tick timer. Each
 * group writes its log to the process's one shared log (`dataDir/raft-log/`: one write and
 * one fsync per batch for all groups), keeps snapshots in `dataDir/group-<id>/` and drives
 * its own Ready loop; the host routes messages, forwards proposals from followers to the
 * leader's host, and answers reads.
 */
export class RaftHost {
  readonly self: NodeId;
  private readonly groups = new Map<number, RaftGroup>();
  /** Proposals forwarded to leaders, and those served as leader (proposal-forwarding.ts). */
  private readonly forwarding: ProposalForwarding;
  private stopTicks: (() => void) | undefined;
  private started = false;
  private closing: Promise<void> | undefined;
  private readonly logger: RaftLogger;
  private readonly requestTimeoutMs: number;
  private readonly env: GroupEnv;
  private readonly scheduler: HostScheduler;
  /** One Ready pass at a time for all groups (ready-pass.ts). */
  private readonly readyPasses: ReadyPasses;
  /** Inside a pass's stretch: the groups' messages wait in heldGroups/heldMessages (see releaseSends). */
  private holding = false;
  private readonly heldGroups: number[] = [];
  private readonly heldMessages: Message[] = [];
  /** Cluster membership (membership.ts), when attached: addresses, removal, host frames. */
  private membership: MembershipHooks | undefined;
  /** Set once this member is removed from the cluster: it no longer ticks, steps or serves. */
  private retired: DkvError | undefined;
  /** Ticks until the next leader-balance check (config.leaderBalanceTicks). */
  private balanceCountdown: number;
  /** The one Raft log of this process (storage/shared-log.ts), opened with the first group. */
  private sharedLog: Promise<SharedLog> | undefined;
  private openedSharedLog: SharedLog | undefined;
  /** Bound on the log memory of all groups together (log-budget.ts); 0: off. */
  private readonly raftLogBudgetBytes: number;

  constructor(private readonly config: RaftHostConfig) {
    const { snapshotBytes, raftLogMaxBytes, raftLogBudgetBytes } = checkHostConfig(config);
    this.raftLogBudgetBytes = raftLogBudgetBytes;
    this.balanceCountdown = config.leaderBalanceTicks ?? 0;
    this.self = config.self;
    this.logger = config.logger ?? silentLogger;
    this.requestTimeoutMs = config.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    const scheduler = config.scheduler ?? realScheduler;
    this.scheduler = scheduler;
    this.forwarding = new ProposalForwarding(
      config,
      scheduler,
      config.forwardsInFlightMax ?? DEFAULTS.forwardsInFlightMax,
      this.requestTimeoutMs,
    );
    this.readyPasses = new ReadyPasses((run) => scheduler.later(run), {
      hold: () => {
        this.holding = true;
      },
      release: () => this.releaseSends(),
    });
    this.env = {
      self: config.self,
      nowMs: () => config.clock.now(),
      monotonicMs: () => scheduler.monotonicMs(),
      requestReady: (group) => this.readyPasses.request(group),
      onFatal: (error) => config.onFatal(error),
      send: (groupId, message) => this.sendRaft(groupId, message),
      ...commitNoticeHoldEnv(scheduler, config.tickMs),
      logger: this.logger,
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      readLeaseMs: config.readLease === true ? readLeaseMs(config.tickMs, config.electionTicks) : 0,
      snapshotEntries: config.snapshotEntries,
      snapshotBytes,
      compactionOverheadEntries: config.compactionOverheadEntries,
      raftLogMaxBytes,
      proposalsPendingMax: config.proposalsPendingMax ?? DEFAULTS.proposalsPendingMax,
      readsPendingMax: config.readsPendingMax ?? DEFAULTS.readsPendingMax,
      random: config.random ?? Math.random,
      observer: config.observer,
      onConfChange: (groupId, change, conf) => this.membership?.onConfChange(groupId, change, conf),
    };
  }

  /** Starts the transport and the tick timer. Groups can be added before or after. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const handlers: NodeTransportHandlers = {
      onRaft: (from, groupId, message) => this.onRaft(from, groupId, message),
      onHost: (from, payload) => this.onHost(from, payload),
      onUnreachable: (to) => this.onUnreachable(to),
      onPeerConnected: (from) => this.membership?.onPeerConnected?.(from),
      onSnapshotSent: (to, groupId, ok) => this.groups.get(groupId)?.reportSnapshot(to, ok),
      refusalNotice: (from) => this.membership?.refusalNotice?.(from),
      onRefusalNotice: (from, payload) => this.membership?.onRefusalNotice?.(from, payload),
    };
    await this.config.transport.start(handlers);
    this.config.transport.setPeers(this.config.members);
    // The scheduler's ticks drive elections, heartbeats and deadlines; the clock only stamps entries.
    this.stopTicks = this.scheduler.startTicks(this.config.tickMs, () => this.tick());
  }

  /**
   * Opens (recovering from disk) group `groupId` with `stateMachine`: the latest snapshot
   * is restored into it, and committed entries after it are applied again.
   */
  async addGroup(groupId: number, stateMachine: StateMachine, options: GroupOptions = {}): Promise<void> {
    if (this.closing !== undefined) throw this.closedError();
    if (!Number.isSafeInteger(groupId) || groupId < 0 || groupId > 0xffff_ffff) {
      throw new DkvError("USAGE", `group id must be a whole number from 0 to ${0xffff_ffff}; got ${groupId}`);
    }
    if (this.groups.has(groupId)) throw new DkvError("USAGE", `group ${groupId} is already running here`);
    const initialConf = this.config.bootstrapConf ?? {
      voters: [...this.config.members.keys()].sort(),
      learners: [],
    };
    const storage: GroupStorage =
      this.config.openStorage === undefined
        ? await (await this.openSharedLog()).openGroup(
            groupId,
            join(this.config.dataDir, `group-${groupId}`),
            {
              // The tail kept behind a snapshot is the group's choice (bounded by entries and bytes).
              compactionOverheadEntries: 0,
              initialConf,
            },
          )
        : await this.config.openStorage(groupId, initialConf);
    try {
      const snapshot = await storage.loadLatestSnapshot();
      if (snapshot !== null && snapshot.meta.index > 0) await stateMachine.restore(snapshot.data);
      this.groups.set(groupId, new RaftGroup(groupId, storage, stateMachine, this.env, snapshot, options));
    } catch (error) {
      await storage.close().catch(() => {});
      throw error;
    }
  }

  private openSharedLog(): Promise<SharedLog> {
    this.sharedLog ??= SharedLog.open(this.config.dataDir, {
      logger: { info: (m) => this.logger.info(m), warn: (m) => this.logger.warn(m) },
      gatherTurns: this.config.logGatherTurns,
      later: (run) => this.scheduler.later(run),
    }).then((log) => {
      this.openedSharedLog = log;
      return log;
    });
    return this.sharedLog;
  }

  /** The shared log's counters (write+fsync batches, fsyncs, segments); undefined with injected storage. */
  storageStats(): SharedLogStats | undefined {
    return this.openedSharedLog?.stats();
  }

  stateMachine(groupId: number): StateMachine {
    return this.group(groupId).stateMachine;
  }

  /**
   * Replicates `command` through group `groupId` and resolves with the state machine's
   * result once it is applied here (on the leader; a follower forwards to the leader's
   * host). Errors are DkvErrors whose `outcome` says whether it may have been applied.
   */
  propose(groupId: number, command: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    // This member leads (the common case): the proposal's own promise, with no async frame
    // around it (whose resolution by a promise costs two more microtask turns per write).
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const group =
      this.closing === undefined && this.retired === undefined ? this.groups.get(groupId) : undefined;
    if (group !== undefined && timeoutMs > 0) {
      // A follower that knows its leader forwards at once: trying here first would only
      // build a refusal (an Error, with its stack: a few % of a forwarded write's CPU).
      const leader = group.role === "leader" ? null : group.leader;
      if (leader !== null && leader !== this.self)
        return this.proposeRetrying(groupId, command, timeoutMs, leader);
      try {
        const attempt = group.tryPropose(command, timeoutMs);
        if (attempt.ok) return attempt.result;
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.proposeRetrying(groupId, command, timeoutMs);
  }

  /**
   * propose() without a promise where it counts: when this member leads, the group tells
   * `receiver` directly (no promise or async frame per write); otherwise propose()'s
   * forwarding and retries run and their outcome is passed on. Told exactly once, never
   * during this call.
   */
  proposeTo(groupId: number, command: Uint8Array, timeoutMs: number, receiver: ProposalReceiver): void {
    const group =
      this.closing === undefined && this.retired === undefined ? this.groups.get(groupId) : undefined;
    if (group !== undefined && timeoutMs > 0 && group.role === "leader") {
      try {
        if (group.proposeTo(command, timeoutMs, receiver) === undefined) return;
      } catch (error) {
        relay(Promise.reject(error), receiver);
        return;
      }
    }
    relay(this.propose(groupId, command, { timeoutMs }), receiver);
  }

  /** `knownLeader`: the first attempt forwards to it without trying here (see propose). */
  private async proposeRetrying(
    groupId: number,
    command: Uint8Array,
    timeoutMs: number,
    knownLeader?: NodeId,
  ): Promise<Uint8Array> {
    const deadline = this.scheduler.monotonicMs() + timeoutMs;
    const trace = this.config.observer?.currentTrace?.();
    let hint: NodeId | null = null;
    let lastError: DkvError | undefined;
    for (let attempt = 0; attempt < PROPOSE_ATTEMPTS_MAX; attempt++) {
      const group = this.group(groupId);
      const remainingMs = Math.ceil(deadline - this.scheduler.monotonicMs());
      if (remainingMs <= 0) break;
      let leader: NodeId | null;
      let notLeader: boolean;
      if (attempt === 0 && knownLeader !== undefined) {
        leader = knownLeader;
        notLeader = true;
      } else {
        const attemptResult = group.tryPropose(command, remainingMs);
        if (attemptResult.ok) return attemptResult.result;
        lastError = attemptResult.error;
        if (lastError.code !== "NOT_LEADER" && lastError.code !== "UNAVAILABLE") throw lastError;
        leader = hint ?? attemptResult.leader;
        notLeader = lastError.code === "NOT_LEADER";
      }
      hint = null;
      if (notLeader && leader !== null && leader !== this.self) {
        if (trace !== undefined && trace.forwardedMs === 0) trace.forwardedMs = this.scheduler.monotonicMs();
        const forwarded = await this.forwarding.forward(leader, groupId, command, remainingMs);
        if (forwarded.ok) return forwarded.result;
        const { error } = forwarded;
        // Only a certain refusal may be retried here; an unknown outcome goes to the caller.
        if (error.outcome !== "not-applied" || (error.code !== "NOT_LEADER" && error.code !== "UNAVAILABLE"))
          throw error;
        lastError = error;
        hint = forwarded.leader === leader ? null : forwarded.leader;
      }
      // No leader yet (or a stale hint): wait for an election, bounded by the deadline.
      const waitMs = Math.min(
        Math.ceil(deadline - this.scheduler.monotonicMs()),
        this.config.tickMs * this.config.heartbeatTicks,
      );
      if (waitMs <= 0) break;
      await group.waitLeaderChange(waitMs);
    }
    throw new DkvError(
      "TIMEOUT",
      `group ${groupId}: no leader accepted the proposal within ${timeoutMs} ms${lastError === undefined ? "" : ` (last: ${lastError.message})`}; it was not applied — retry`,
      { cause: lastError },
    );
  }

  /** Linearizable read (ReadIndex, served on any member), or a local stale read with `stale`. */
  read<T>(groupId: number, evaluate: (nowMs: number) => T, options: ReadOptions = {}): Promise<T> {
    let group: RaftGroup;
    try {
      group = this.group(groupId);
      // testFaults.staleReads: a test build's deliberate bug (storage/test-faults.ts), never set in a real one.
      if (options.stale === true || testFaults.staleReads) return Promise.resolve(group.readStale(evaluate));
    } catch (error) {
      return Promise.reject(error);
    }
    return group.read(evaluate, options.timeoutMs ?? this.requestTimeoutMs);
  }

  /** Starts an election in `groupId` now (tests, operators): no waiting for a timeout. */
  campaign(groupId: number): void {
    const group = this.group(groupId);
    group.node.campaign();
    group.schedule();
  }

  /** Asks the leader of `groupId` (if this member) to hand leadership to `to`. */
  transferLeadership(groupId: number, to: NodeId): void {
    const group = this.group(groupId);
    group.node.transferLeadership(to);
    group.schedule();
  }

  /** Attaches the cluster membership (before start): see membership.ts. */
  attachMembership(hooks: MembershipHooks): void {
    this.membership = hooks;
  }

  /**
   * This member was removed from the cluster: stop ticking (so it never campaigns), drop
   * Raft messages, and refuse every request with `error`.
   */
  retire(error: DkvError): void {
    if (this.retired !== undefined) return;
    this.retired = error;
    this.logger.warn(error.message);
  }

  get retiredError(): DkvError | undefined {
    return this.retired;
  }

  /** Proposes a membership change in `groupId` if this member leads it (no forwarding). */
  tryProposeConfChange(groupId: number, change: ConfChange, timeoutMs: number): ProposeAttempt {
    return this.group(groupId).tryPropose(new Uint8Array(0), timeoutMs, change);
  }

  /** Resolves on `groupId`'s next leader change or after `ms`. */
  waitLeaderChange(groupId: number, ms: number): Promise<void> {
    return this.group(groupId).waitLeaderChange(ms);
  }

  groupIds(): number[] {
    return [...this.groups.keys()];
  }

  /** Does this member lead group `groupId` now (false for a group not run here)? A hint for clients. */
  leads(groupId: number): boolean {
    return this.groups.get(groupId)?.role === "leader";
  }

  /** The election timeout in ms (tick × election ticks): how long a follower waits for its leader. */
  get electionTimeoutMs(): number {
    return this.config.tickMs * this.config.electionTicks;
  }

  status(groupId: number): GroupStatus {
    return groupStatus(groupId, this.group(groupId), this.self, this.membership, this.config.members);
  }

  /** Stops ticking, fails waiting requests, closes every group's storage and the transport. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /** `await using host = new RaftHost(...)`: closes it (close()) when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async shutDown(): Promise<void> {
    this.stopTicks?.();
    this.stopTicks = undefined;
    this.forwarding.failAll(this.closedError());
    const results = await Promise.allSettled([...this.groups.values()].map((group) => group.close()));
    // After the groups: their last writes go through it. A log that failed to open has nothing to close.
    const sharedLog = await this.sharedLog?.catch(() => undefined);
    if (sharedLog !== undefined) results.push(...(await Promise.allSettled([sharedLog.close()])));
    await this.config.transport.close();
    for (const result of results) if (result.status === "rejected") throw result.reason;
  }

  // ---- internals ---------------------------------------------------------------------

  private group(groupId: number): RaftGroup {
    if (this.closing !== undefined) throw this.closedError();
    if (this.retired !== undefined) throw this.retired;
    const group = this.groups.get(groupId);
    if (group === undefined) {
      throw new DkvError(
        "UNKNOWN_SHARD",
        `group ${groupId} is not hosted on ${this.self} (hosted: ${this.groupIds().join(", ") || "none"})`,
      );
    }
    return group;
  }

  private closedError(): DkvError {
    return new DkvError("CLOSED", `the Raft host of ${this.self} is shut down; use another member`);
  }

  private tick(): void {
    if (this.retired !== undefined) return;
    const wallMs = this.config.clock.now();
    if (this.raftLogBudgetBytes > 0) this.keepLogBudget();
    for (const group of this.groups.values()) group.tick(wallMs);
    this.forwarding.expire(this.scheduler.monotonicMs());
    if (this.balanceCountdown > 0 && --this.balanceCountdown === 0) {
      this.balanceCountdown = this.config.leaderBalanceTicks!;
      this.balanceLeaders();
    }
  }

  /** Asks the groups whose logs take the process past its log budget to snapshot (in this tick). */
  private keepLogBudget(): void {
    const views = [];
    for (const group of this.groups.values()) views.push(group.logBudgetView());
    for (const groupId of groupsOverLogBudget(this.raftLogBudgetBytes, views))
      this.groups.get(groupId)!.askSnapshot();
  }

  /** Starts at most one leadership transfer that spreads leaders more evenly (leader-balance.ts). */
  private balanceLeaders(): void {
    const views = [...this.groups].map(([groupId, group]) => ({ groupId, ...group.node.status() }));
    const plan = planLeaderTransfer(this.self, views);
    if (plan === null) return;
    const counts = [...plan.counts].map(([id, n]) => `${id}=${n}`).join(" ");
    this.logger.info(`leaders per member ${counts}: handing group ${plan.groupId} to ${plan.to}`);
    this.transferLeadership(plan.groupId, plan.to);
  }

  private sendRaft(groupId: number, message: Message): void {
    if (this.retired !== undefined) return; // a removed member speaks to no one
    if (this.membership?.sendsRaftTo?.(message.to) === false) {
      // Refused (apply rules): dropped as if lost. A snapshot's sender must hear it failed,
      // or the group would wait for its outcome forever (reported later: no re-entry here).
      if (message.type === MessageType.Snapshot) {
        const to = message.to;
        queueMicrotask(() => this.groups.get(groupId)?.reportSnapshot(to, false));
      }
      return;
    }
    if (this.holding) {
      this.heldGroups.push(groupId);
      this.heldMessages.push(message);
      return;
    }
    this.config.transport.sendRaft(message.to, groupId, message);
  }

  /**
   * Sends what the groups sent during a pass's stretch (ready-pass.ts), in order. By now
   * the answers to forwarded proposals that the stretch's applies settled are queued as
   * microtasks ahead of the transport's flush, which the first send here queues: so they
   * share its socket write with every group's messages.
   */
  private releaseSends(): void {
    this.holding = false;
    const groups = this.heldGroups;
    const messages = this.heldMessages;
    // Bounded by the groups hosted times the messages of one Ready each.
    for (let i = 0; i < messages.length; i++) this.sendRaft(groups[i]!, messages[i]!);
    groups.length = 0;
    messages.length = 0;
  }

  private onRaft(from: NodeId, groupId: number, message: Message): void {
    if (this.retired !== undefined || this.membership?.acceptRaft(from) === false) return;
    // A group not (yet) hosted here drops its messages; Raft retries.
    this.groups.get(groupId)?.step(message);
  }

  private onUnreachable(to: NodeId): void {
    for (const group of this.groups.values()) group.reportUnreachable(to);
    this.membership?.onUnreachable?.(to);
    this.forwarding.failUnreachable(to);
  }

  private onHost(from: NodeId, payload: Uint8Array): void {
    if (this.membership?.onHost(from, payload) === true) return;
    let frame: ReturnType<typeof decodeHostFrame>;
    try {
      frame = decodeHostFrame(payload);
    } catch (error) {
      this.logger.warn(`dropped a host frame from ${from}: ${String(error)}`);
      return;
    }
    if (frame.kind === FrameKind.ForwardRequest) {
      const group = this.closing === undefined ? this.groups.get(frame.groupId) : undefined;
      this.forwarding.serve(from, frame.forwardId, group, frame.groupId, frame.timeoutMs, frame.command);
      return;
    }
    this.forwarding.settleReply(from, frame);
  }
}

/** Passes a proposal's promised outcome to `receiver` (a non-DkvError as INTERNAL, outcome unknown). */
function relay(outcome: Promise<Uint8Array>, receiver: ProposalReceiver): void {
  outcome.then(
    (result) => receiver.proposalSettled(undefined, result),
    (error: unknown) =>
      receiver.proposalSettled(
        DkvError.is(error)
          ? error
          : new DkvError("INTERNAL", `the proposal failed: ${String(error)}`, {
              outcome: "unknown",
              cause: error,
            }),
        EMPTY_RESULT,
      ),
  );
}

const EMPTY_RESULT = new Uint8Array(0);

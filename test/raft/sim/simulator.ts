/**
 * The deterministic cluster simulator (TigerBeetle's VOPR model): one seed decides the
 * cluster size, the fault mix (swarm testing), every message's fate, crashes, clients and
 * membership changes. A safety phase runs with faults and checks the invariants as every
 * event happens; then a liveness phase heals everything and requires convergence within a
 * bounded number of ticks. A failure throws `SimFailure` naming the seed and replay line.
 */

import { CLOCK_RATE_DRIFT_MAX } from "../../../src/raft/core/reads.ts";
import {
  type ConfChange,
  type ConfState,
  EntryKind,
  type Message,
  MessageType,
  type NodeId,
  type RaftNodeApi,
  type Ready,
  type Role,
  type SoftState,
} from "../../../src/raft/core/types.ts";
import { Checker, checkLogsMatch, InvariantViolation } from "./checker.ts";
import type { CoreFactory, SimStorage } from "./core.ts";
import { calmNetwork, type NetworkFaults, SimNetwork, shuffle } from "./network.ts";
import { Prng } from "./prng.ts";
import { decodeWrite, encodeWrite, WriteRegister } from "./state-machine.ts";

/** Bugs planted at the runtime boundary, to show the simulator catches them. */
export interface Mutations {
  /** The runtime sends a Ready's messages (acks, votes) before persisting it. */
  sendBeforePersist?: boolean;
  /** The runtime persists the hard state without the vote. */
  forgetVote?: boolean;
  /** The network turns vote rejections into grants. */
  forgeVoteGrant?: boolean;
  /** The network raises an Append's commit index to its last entry, committing what is not committed. */
  forgeCommit?: boolean;
  /** The state machine applies entries as soon as they are persisted, before they commit. */
  applyBeforeCommit?: boolean;
  /** Reads are answered when the read state arrives, before applying up to its index. */
  answerReadsEarly?: boolean;
}

/** The fault mix and workload of one run; `pickSwarm` draws it from the seed. */
export interface Swarm {
  nodeCount: number;
  faultSteps: number;
  /** A node ticks once every `tickSteps` steps (messages move in steps, so a tick spans a few hops). */
  tickSteps: number;
  electionTicks: number;
  heartbeatTicks: number;
  preVote: boolean;
  checkQuorum: boolean;
  readOnly: "safe" | "lease";
  network: NetworkFaults;
  partitionRate: number;
  healRate: number;
  crashRate: number;
  /** Crashes aimed at the leader: the Figure 8 hazards need leaders to die mid-replication. */
  leaderCrashRate: number;
  /** Partitions that cut the leader off alone (both ways), healed at `healRate`. */
  leaderIsolateRate: number;
  /**
   * Partitions that cut the leader off with one follower (both ways), healed at `healRate`:
   * in a group of five the pair is a minority that may still serve that follower's reads.
   * Never drawn (0 unless a swarm sets it), so seeds keep the fault sequence they had.
   */
  leaderPairIsolateRate: number;
  /**
   * Cuts the link between the leader and one follower (both ways), everything else intact:
   * that follower times out and campaigns while the others still ack the leader, whose
   * lease counts on them to refuse it; added to whatever else is cut, so a leader isolated
   * soon after leaves that follower's timer running ahead of the others'. Never drawn (0
   * unless a swarm sets it).
   */
  leaderLinkCutRate?: number;
  restartRate: number;
  /** Chance, per Ready, of a crash somewhere inside its handling (losing the unpersisted part). */
  crashInReadyRate: number;
  tickSkipRate: number;
  clockSkewMs: number;
  writeRate: number;
  readRate: number;
  confChangeRate: number;
  transferRate: number;
  snapshotEvery: number;
  snapshotOverhead: number;
  /** Small limits make the leader send one entry per Append and probe slowly. */
  maxSizePerMsgBytes: number;
  maxInflightMsgs: number;
  /** Flow control for proposals; also bounds the backlog the liveness phase must drain. */
  maxUncommittedBytes: number;
  /** RaftConfig.appendsBeforePersist: the leader's appends go out before it persists them. */
  appendsBeforePersist: boolean;
  /** RaftConfig.quietHeartbeats: no periodic heartbeat to a follower that acked since the last. */
  quietHeartbeats: boolean;
  /** RaftConfig.commitNotices: a bare commit advance goes out as an unanswered Commit message. */
  commitNotices: boolean;
}

export interface SimOptions {
  seed: number;
  core: CoreFactory;
  nodeCount?: number;
  mutations?: Mutations;
  /** Overrides of the seed's swarm choices (mutation tests force the faults a mutant needs). */
  swarm?: Partial<Swarm>;
  log?: (line: string) => void;
  /** Also log every delivered message (very verbose; for replaying one seed). */
  logMessages?: boolean;
  /** Overrides the seed's chance per step of pausing a node (SIGSTOP). */
  pauseRate?: number;
  /** Bound on each clock's rate drift either way; default the lease's CLOCK_RATE_DRIFT_MAX. */
  clockDriftMax?: number;
}

export interface SimStats {
  seed: number;
  nodeCount: number;
  steps: number;
  livenessTicks: number;
  elections: number;
  proposed: number;
  acknowledged: number;
  committedIndex: number;
  reads: number;
  /** Reads answered on a member that was not the leader then (forwarded ReadIndex). */
  followerReads: number;
  crashes: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  confChangesApplied: number;
  partitions: number;
  pauses: number;
}

export class SimFailure extends Error {
  readonly seed: number;
  readonly invariant: string;

  constructor(
    seed: number,
    invariant: string,
    detail: string,
    context: string,
    replay = `DKV_SEED=${seed} bun test test/raft/sim`,
  ) {
    super(`${invariant}: ${detail}\n  ${context}\n  replay: ${replay}`);
    this.name = "SimFailure";
    this.seed = seed;
    this.invariant = invariant;
  }
}

const msPerStep = 10;
const livenessTicksMax = 600;
const readyRoundsMax = 64;
const outstandingReadsMax = 256;
const nodesExtraMax = 3;
const fullLogCheckEverySteps = 64;

export function pickSwarm(prng: Prng, nodeCount?: number): Swarm {
  // Each knob draws from levels that include "off" and "extreme", so each seed gets its
  // own mix and rare combinations (a leader dying mid catch-up) still come up often.
  const level = (levels: readonly number[]): number => prng.pick(levels);
  const tickSkipRate = level([0, 0, 0.05, 0.2]);
  const checkQuorum = !prng.chance(0.25);
  return {
    nodeCount: nodeCount ?? prng.pick([3, 3, 5]),
    faultSteps: prng.int(800, 2400),
    tickSteps: prng.int(2, 4),
    electionTicks: prng.int(4, 12),
    heartbeatTicks: prng.int(1, 2),
    preVote: !prng.chance(0.25),
    checkQuorum,
    // Leases assume clocks tick at the same rate, so only seeds without tick skips use them.
    readOnly: checkQuorum && tickSkipRate === 0 && prng.chance(0.2) ? "lease" : "safe",
    network: {
      dropRate: level([0, 0.01, 0.05, 0.1, 0.3]),
      duplicateRate: level([0, 0, 0.02, 0.1]),
      delayMaxSteps: prng.int(1, 8),
    },
    partitionRate: level([0, 0.002, 0.01, 0.03]),
    healRate: level([0.005, 0.02, 0.05]),
    crashRate: level([0, 0.002, 0.01, 0.03]),
    leaderCrashRate: level([0, 0, 0.005, 0.02, 0.05]),
    leaderIsolateRate: level([0, 0, 0.005, 0.02]),
    restartRate: level([0.01, 0.05, 0.2, 0.5]),
    crashInReadyRate: level([0, 0, 0.005, 0.03, 0.1]),
    tickSkipRate,
    clockSkewMs: prng.int(0, 2000),
    writeRate: 0.05 + prng.float() * 0.5,
    readRate: level([0, 0.05, 0.2, 0.4]),
    confChangeRate: level([0, 0, 0.005, 0.02]),
    transferRate: level([0, 0, 0, 0.002, 0.01]),
    snapshotEvery: prng.int(3, 60),
    snapshotOverhead: prng.int(0, 20),
    maxSizePerMsgBytes: prng.pick([1, 100, 1 << 20]),
    maxInflightMsgs: prng.pick([1, 4, 256]),
    maxUncommittedBytes: prng.pick([512, 4096]),
    // Drawn last, so the other knobs stay what each seed drew before it existed.
    appendsBeforePersist: !prng.chance(0.25),
    quietHeartbeats: prng.chance(0.5),
    commitNotices: !prng.chance(0.25),
    leaderPairIsolateRate: 0,
  };
}

interface PendingWrite {
  id: string;
  term: number;
}

interface PendingRead {
  node: NodeId;
  incarnation: number;
  ackedCountAtStart: number;
  startStep: number;
  /** When the read index was last asked for; asked again after an election timeout. */
  askedStep: number;
}

interface SimNode {
  readonly id: NodeId;
  raft: RaftNodeApi | null;
  disk: SimStorage;
  register: WriteRegister;
  conf: ConfState;
  role: Role;
  incarnation: number;
  clockOffsetMs: number;
  /**
   * This incarnation's monotonic clock (the read lease's): `monoOriginMs` at step
   * `monoStartStep`, running at `monoRate` of true time (bounded drift, see clockRate).
   */
  monoOriginMs: number;
  monoStartStep: number;
  monoRate: number;
  tickPhase: number;
  lastSnapshotIndex: number;
  /** This node's own proposals by log index; acknowledged once applied there with the same term. */
  pendingWrites: Map<number, PendingWrite>;
  readWaiting: { requestId: string; index: number }[];
  decommissioned: boolean;
  /** SIGSTOPped until this step (0: running): it neither ticks nor handles anything. */
  pausedUntil: number;
  /** What reached it while paused (messages, client and operator requests), handled at resume. */
  pausedInbox: ((raft: RaftNodeApi) => void)[];
}

interface SimClient {
  readonly id: number;
  seq: number;
  guess: NodeId;
}

class Simulation {
  private readonly swarm: Swarm;
  private readonly core: CoreFactory;
  private readonly mutations: Mutations;
  private readonly log: ((line: string) => void) | null;
  private readonly logMessages: boolean;
  private readonly seed: number;
  private readonly prng: Prng;
  private readonly faultPrng: Prng;
  private readonly clientPrng: Prng;
  private readonly nodePrngRoot: Prng;
  private readonly network: SimNetwork;
  /** Its own stream, so the pause fault leaves the other choices of a seed as they were. */
  private readonly pausePrng: Prng;
  private readonly pauseRate: number;
  /** Its own stream: each incarnation's monotonic clock origin and rate. */
  private readonly clockPrng: Prng;
  /** Bound on a clock's rate drift either way (the lease's assumption, unless a test breaks it). */
  private readonly clockDriftMax: number;
  /** RaftConfig.leaseMs for lease seeds, from the core under test. */
  private readonly leaseMs: number;
  private readonly checker = new Checker();
  private readonly nodes: SimNode[] = [];
  private readonly byId = new Map<NodeId, SimNode>();
  private readonly bootstrapConf: ConfState;
  private readonly clients: SimClient[] = [];
  private readonly reads = new Map<string, PendingRead>();
  private readonly snapshotReports: { from: NodeId; to: NodeId; ok: boolean }[] = [];
  private readSeq = 0;
  private step = 0;
  private phase: "faults" | "liveness" = "faults";
  readonly stats: SimStats;

  constructor(options: SimOptions) {
    this.seed = options.seed;
    this.core = options.core;
    this.mutations = options.mutations ?? {};
    this.log = options.log ?? null;
    this.logMessages = options.logMessages ?? false;
    this.prng = new Prng(options.seed);
    this.swarm = { ...pickSwarm(this.prng.derive(1), options.nodeCount), ...options.swarm };
    // The core rejects leases without CheckQuorum; an override may have turned it off.
    if (!this.swarm.checkQuorum) this.swarm.readOnly = "safe";
    this.faultPrng = this.prng.derive(2);
    this.clientPrng = this.prng.derive(3);
    this.nodePrngRoot = this.prng.derive(4);
    this.network = new SimNetwork(this.prng.derive(5), this.swarm.network);
    this.pausePrng = this.prng.derive(6);
    const pauseRate =
      options.pauseRate ?? (this.pausePrng.chance(0.3) ? this.pausePrng.pick([0.002, 0.005, 0.01]) : 0);
    // A paused node ticks once at resume, not once per missed tick; its monotonic clock
    // ran on, and the lease is measured on that clock, so leases face pauses too.
    this.pauseRate = pauseRate;
    this.clockPrng = this.prng.derive(7);
    this.clockDriftMax = options.clockDriftMax ?? CLOCK_RATE_DRIFT_MAX;
    this.leaseMs = this.core.readLeaseMs(this.swarm.tickSteps * msPerStep, this.swarm.electionTicks);
    this.network.onLost = (message) => this.messageLost(message);
    if (this.mutations.forgeVoteGrant || this.mutations.forgeCommit) this.network.tamper = this.tamper;
    this.stats = {
      seed: options.seed,
      nodeCount: this.swarm.nodeCount,
      steps: 0,
      livenessTicks: 0,
      elections: 0,
      proposed: 0,
      acknowledged: 0,
      committedIndex: 0,
      reads: 0,
      followerReads: 0,
      crashes: 0,
      snapshotsTaken: 0,
      snapshotsInstalled: 0,
      confChangesApplied: 0,
      partitions: 0,
      pauses: 0,
    };
    const voters: NodeId[] = [];
    for (let i = 1; i <= this.swarm.nodeCount; i++) voters.push(`n${i}`);
    this.bootstrapConf = { voters, learners: [] };
    for (let i = 0; i < 3; i++) this.clients.push({ id: i, seq: 0, guess: this.clientPrng.pick(voters) });
    this.trace(`swarm ${JSON.stringify(this.swarm)}`);
  }

  run(): SimStats {
    try {
      for (const id of this.bootstrapConf.voters) this.addNode(id);
      for (; this.step < this.swarm.faultSteps; this.step++) {
        this.runStep();
        this.faultActions();
      }
      for (const node of this.nodes) if (node.pausedUntil > 0) this.resume(node);
      this.liveness();
    } catch (error) {
      throw this.failure(error);
    }
    this.stats.steps = this.step;
    this.stats.committedIndex = this.checker.maxCommittedIndex;
    this.stats.acknowledged = this.checker.acked.length;
    return this.stats;
  }

  private failure(error: unknown): SimFailure {
    const context = `seed ${this.seed}, ${this.phase} phase, step ${this.step}, ${this.swarm.nodeCount} nodes`;
    if (error instanceof InvariantViolation) {
      const detail = error.message.slice(error.invariant.length + 2);
      return new SimFailure(this.seed, error.invariant, detail, context);
    }
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    return new SimFailure(this.seed, "core threw", `the core or runtime threw: ${detail}`, context);
  }

  /** Callers on hot paths guard with `this.log !== null` so no string is built when silent. */
  private trace(line: string): void {
    this.log?.(`[${this.step}] ${line}`);
  }

  // ---- the per-step loop ----

  private runStep(): void {
    for (const node of this.nodes)
      if (node.pausedUntil > 0 && node.pausedUntil <= this.step) this.resume(node);
    this.deliver();
    this.tickNodes();
    if (this.phase === "faults") {
      this.clientActions();
      this.operatorActions();
    }
    if (this.step % fullLogCheckEverySteps === 0) this.checkAllLogs();
  }

  private deliver(): void {
    for (const message of this.network.takeDue(this.step)) {
      const target = this.byId.get(message.to);
      if (target === undefined || target.raft === null) {
        this.messageLost(message);
        continue;
      }
      if (this.logMessages) this.trace(describeMessage(message));
      this.input(target, (raft) => raft.step(message));
      if (message.type === MessageType.Snapshot) {
        this.snapshotReports.push({ from: message.from, to: message.to, ok: true });
      }
    }
    // The runtime tells the leader how its snapshot transfers went, so it can resume replication.
    const reports = this.snapshotReports.splice(0, this.snapshotReports.length);
    for (const report of reports) {
      const sender = this.byId.get(report.from);
      if (sender !== undefined) this.input(sender, (raft) => raft.reportSnapshot(report.to, report.ok));
    }
  }

  private messageLost(message: Message): void {
    if (message.type === MessageType.Snapshot) {
      this.snapshotReports.push({ from: message.from, to: message.to, ok: false });
    }
  }

  private tickNodes(): void {
    const nowMs = this.step * msPerStep;
    for (const node of this.nodes) {
      if (node.raft === null || node.pausedUntil > 0) continue;
      if ((this.step + node.tickPhase) % this.swarm.tickSteps !== 0) continue;
      if (this.phase === "faults" && this.faultPrng.chance(this.swarm.tickSkipRate)) continue;
      this.input(node, (raft) => raft.tick(nowMs + node.clockOffsetMs, this.monoMs(node)));
    }
  }

  /** `node`'s monotonic clock now: it drifts from true time at its rate, never goes back. */
  private monoMs(node: SimNode): number {
    return node.monoOriginMs + (this.step - node.monoStartStep) * msPerStep * node.monoRate;
  }

  /** A clock rate within the drift the lease allows, mostly at its extremes (the hard cases). */
  private clockRate(): number {
    const drift = this.clockDriftMax;
    return this.clockPrng.pick([1 - drift, 1 + drift, 1 + drift, 1, 1 - drift / 2]);
  }

  // ---- the runtime: drain Ready exactly per the contract ----

  private input(node: SimNode, act: (raft: RaftNodeApi) => void): void {
    if (node.raft === null) return;
    if (node.pausedUntil > 0) {
      node.pausedInbox.push(act);
      return;
    }
    // As the host does before every input: the lease is checked against the clock now.
    node.raft.observeTime(0, this.monoMs(node));
    act(node.raft);
    this.drain(node);
  }

  private drain(node: SimNode): void {
    for (let round = 0; round < readyRoundsMax; round++) {
      if (node.raft === null || !node.raft.hasReady()) return;
      this.handleReady(node, node.raft);
    }
    if (node.raft?.hasReady()) {
      throw new InvariantViolation(
        "ready contract",
        `${node.id} still has a Ready after ${readyRoundsMax} rounds`,
      );
    }
  }

  private handleReady(node: SimNode, raft: RaftNodeApi): void {
    const ready = raft.ready();
    if (this.crashInReady(node, "before persisting")) return;
    if (ready.messagesBeforePersist.length > 0) {
      // A leader's appends may go first: a crash now loses entries its followers may get.
      this.send(ready.messagesBeforePersist);
      if (this.crashInReady(node, "after sending appends, before persisting")) return;
    }
    if (this.mutations.sendBeforePersist) {
      this.send(ready.messages);
      if (this.crashInReady(node, "after sending, before persisting")) return;
    }
    if (!this.persist(node, ready)) return;
    if (ready.softState !== undefined) this.roleChanged(node, raft, ready.softState);
    if (!this.mutations.sendBeforePersist) {
      if (this.crashInReady(node, "after persisting, before sending")) return;
      this.send(ready.messages);
    }
    if (this.crashInReady(node, "before applying")) return;
    this.apply(node, raft, ready);
    raft.advance();
  }

  private crashInReady(node: SimNode, where: string): boolean {
    if (this.phase !== "faults" || !this.faultPrng.chance(this.swarm.crashInReadyRate / 4)) return false;
    this.crash(node, `inside a Ready, ${where}`);
    return true;
  }

  /** Persists per the contract; false if the node crashed part way. */
  private persist(node: SimNode, ready: Ready): boolean {
    const disk = node.disk;
    if (ready.snapshot !== undefined) disk.applySnapshot(ready.snapshot);
    if (ready.entries.length > 0) {
      disk.append(ready.entries);
      this.checker.persisted(node.id, disk, ready.entries);
    }
    // The contract orders the writes; a crash may fall between them (entries, no hard state).
    if (this.crashInReady(node, "after persisting entries, before the hard state")) return false;
    if (ready.hardState !== undefined) {
      const previous = disk.initialState().hardState;
      const next = ready.hardState;
      if (next.term < previous.term) {
        throw new InvariantViolation(
          "persistence",
          `${node.id}'s hard state term went ${previous.term} → ${next.term}`,
        );
      }
      if (next.commit > disk.lastIndex()) {
        throw new InvariantViolation(
          "persistence",
          `${node.id} persists commit ${next.commit} beyond its last persisted index ${disk.lastIndex()}`,
        );
      }
      disk.setHardState(this.mutations.forgetVote ? { ...next, vote: null } : next);
    }
    if (this.mutations.applyBeforeCommit) this.applySpeculatively(node, ready);
    return true;
  }

  private send(messages: readonly Message[]): void {
    for (const message of messages) this.network.send(message, this.step);
  }

  private roleChanged(node: SimNode, raft: RaftNodeApi, soft: SoftState): void {
    node.role = soft.role;
    if (soft.role !== "leader") return;
    const term = raft.status().term;
    this.stats.elections++;
    this.trace(`${node.id} leads term ${term}`);
    this.checker.leaderElected(node.id, term);
    this.checker.leaderCompleteness(node.id, term, node.disk);
  }

  private apply(node: SimNode, raft: RaftNodeApi, ready: Ready): void {
    if (ready.snapshot !== undefined && ready.snapshot.meta.index > node.register.appliedIndex) {
      const meta = ready.snapshot.meta;
      node.register = WriteRegister.decode(ready.snapshot.data);
      node.conf = meta.conf;
      node.lastSnapshotIndex = meta.index;
      this.checker.snapshotRestored(node.id, meta.index, meta.term, node.register);
      for (const index of node.pendingWrites.keys())
        if (index <= meta.index) node.pendingWrites.delete(index);
      this.stats.snapshotsInstalled++;
      this.trace(`${node.id} installed snapshot ${meta.index}/${meta.term}`);
    }
    for (const entry of ready.committedEntries) {
      if (this.mutations.applyBeforeCommit && entry.index <= node.register.appliedIndex) continue;
      if (entry.index !== node.register.appliedIndex + 1) {
        throw new InvariantViolation(
          "apply order",
          `${node.id} asked to apply ${entry.index} after ${node.register.appliedIndex}`,
        );
      }
      this.applyEntry(node, raft, entry.index, entry.term, entry.kind, entry.data, entry.timeMs);
    }
    for (const state of ready.readStates) {
      const read = this.reads.get(state.requestId);
      if (read !== undefined && read.node === node.id && read.incarnation === node.incarnation) {
        node.readWaiting.push({ requestId: state.requestId, index: state.index });
      }
    }
    this.serveReads(node);
    this.maybeSnapshot(node);
  }

  private applyEntry(
    node: SimNode,
    raft: RaftNodeApi,
    index: number,
    term: number,
    kind: EntryKind,
    data: Uint8Array,
    timeMs: number,
  ): void {
    this.checker.applied(node.id, { index, term, kind, data, timeMs });
    let writeId: string | null = null;
    if (kind === EntryKind.Normal) writeId = decodeWrite(data);
    if (kind === EntryKind.ConfChange) {
      const change = this.core.decodeConfChange(data);
      node.conf = raft.applyConfChange(change);
      this.confChangeApplied(node, change);
    }
    node.register.apply(index, writeId);
    const pending = node.pendingWrites.get(index);
    if (pending === undefined) return;
    node.pendingWrites.delete(index);
    if (pending.term !== term) return; // Replaced by another leader's entry: not applied, never acknowledged.
    if (writeId !== pending.id) {
      throw new InvariantViolation(
        "proposal",
        `${node.id} proposed ${pending.id} at ${index}/${term} but applied ${writeId ?? `kind ${kind}`} there`,
      );
    }
    this.checker.acknowledge(pending.id);
  }

  /** Mutant: applies persisted entries before they commit (stopping at a conf change). */
  private applySpeculatively(node: SimNode, ready: Ready): void {
    if (node.raft === null) return;
    for (const entry of ready.entries) {
      if (entry.index !== node.register.appliedIndex + 1 || entry.kind === EntryKind.ConfChange) return;
      this.applyEntry(node, node.raft, entry.index, entry.term, entry.kind, entry.data, entry.timeMs);
    }
  }

  private serveReads(node: SimNode): void {
    if (node.readWaiting.length === 0) return;
    const applied = node.register.appliedIndex;
    const still: { requestId: string; index: number }[] = [];
    for (const waiting of node.readWaiting) {
      if (waiting.index > applied && !this.mutations.answerReadsEarly) {
        still.push(waiting);
        continue;
      }
      const read = this.reads.get(waiting.requestId);
      this.reads.delete(waiting.requestId);
      if (read === undefined) continue;
      if (this.log !== null) {
        this.trace(
          `read ${waiting.requestId} on ${node.id}: steps ${read.startStep}..${this.step}, ` +
            `read index ${waiting.index}, observed ${node.register.writes.length} writes through ${node.register.appliedIndex}`,
        );
      }
      this.checker.readCompleted(node.id, waiting.requestId, read.ackedCountAtStart, node.register);
      this.stats.reads++;
      if (node.role !== "leader") this.stats.followerReads++;
    }
    node.readWaiting = still;
  }

  private maybeSnapshot(node: SimNode): void {
    const applied = node.register.appliedIndex;
    if (applied - node.lastSnapshotIndex < this.swarm.snapshotEvery) return;
    node.disk.createSnapshot(applied, node.conf, node.register.encode());
    node.lastSnapshotIndex = applied;
    const compactTo = applied - this.swarm.snapshotOverhead;
    if (compactTo > node.disk.firstIndex()) node.disk.compact(compactTo);
    this.stats.snapshotsTaken++;
  }

  private confChangeApplied(node: SimNode, change: ConfChange): void {
    this.stats.confChangesApplied++;
    if (change.type !== "removeNode") return;
    const removed = this.byId.get(change.node);
    // Once the removal commits, the operator shuts the removed server down for good.
    if (removed !== undefined && !removed.decommissioned) {
      this.trace(`${change.node} removed (applied on ${node.id}); decommissioned`);
      removed.decommissioned = true;
      if (removed !== node) this.crash(removed, "decommissioned");
      else removed.raft = null;
    }
  }

  // ---- nodes: creation, crash, restart ----

  private addNode(id: NodeId): SimNode {
    const disk = this.core.createStorage({
      hardState: { term: 0, vote: null, commit: 0 },
      conf: this.bootstrapConf,
    });
    const node: SimNode = {
      id,
      raft: null,
      disk,
      register: new WriteRegister(),
      conf: this.bootstrapConf,
      role: "follower",
      incarnation: 0,
      clockOffsetMs: 0,
      monoOriginMs: 0,
      monoStartStep: 0,
      monoRate: 1,
      tickPhase: this.faultPrng.int(0, this.swarm.tickSteps - 1),
      lastSnapshotIndex: 0,
      pendingWrites: new Map(),
      readWaiting: [],
      decommissioned: false,
      pausedUntil: 0,
      pausedInbox: [],
    };
    this.nodes.push(node);
    this.byId.set(id, node);
    this.start(node);
    return node;
  }

  /** Starts an incarnation from exactly what is on the node's disk. */
  private start(node: SimNode): void {
    const persisted = node.disk;
    const snapshot = persisted.snapshot();
    const hardState = persisted.initialState().hardState;
    const first = persisted.firstIndex();
    const last = persisted.lastIndex();
    const entries = last >= first ? persisted.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
    const conf = snapshot.meta.index > 0 ? snapshot.meta.conf : this.bootstrapConf;
    // A fresh storage object: the new incarnation shares nothing with the crashed one's memory.
    node.disk = this.core.createStorage({
      hardState: { ...hardState },
      conf,
      ...(snapshot.meta.index > 0 ? { snapshot } : {}),
      entries: entries.slice(),
    });
    node.register = snapshot.meta.index > 0 ? WriteRegister.decode(snapshot.data) : new WriteRegister();
    node.conf = conf;
    node.lastSnapshotIndex = snapshot.meta.index;
    node.role = "follower";
    node.incarnation++;
    node.clockOffsetMs = this.faultPrng.int(-this.swarm.clockSkewMs, this.swarm.clockSkewMs);
    // Its own stream, so the other choices of a seed stay as they were.
    node.monoOriginMs = this.clockPrng.int(0, 1_000_000);
    node.monoStartStep = this.step;
    node.monoRate = this.clockRate();
    node.raft = this.core.createNode({
      id: node.id,
      storage: node.disk,
      random: seededRandom(this.nodePrngRoot.derive(node.incarnation)),
      electionTicks: this.swarm.electionTicks,
      heartbeatTicks: this.swarm.heartbeatTicks,
      applied: snapshot.meta.index,
      preVote: this.swarm.preVote,
      checkQuorum: this.swarm.checkQuorum,
      readOnly: this.swarm.readOnly,
      ...(this.swarm.readOnly === "lease" ? { leaseMs: this.leaseMs } : {}),
      maxSizePerMsgBytes: this.swarm.maxSizePerMsgBytes,
      maxInflightMsgs: this.swarm.maxInflightMsgs,
      maxUncommittedBytes: this.swarm.maxUncommittedBytes,
      appendsBeforePersist: this.swarm.appendsBeforePersist,
      quietHeartbeats: this.swarm.quietHeartbeats,
      commitNotices: this.swarm.commitNotices,
      ...(this.log === null ? {} : { logger: this.coreLogger }),
    });
    this.drain(node);
  }

  private crash(node: SimNode, why: string): void {
    if (node.raft === null) return;
    this.trace(`${node.id} crashed (${why})`);
    node.raft = null;
    node.role = "follower";
    node.pausedUntil = 0;
    node.pausedInbox = [];
    node.pendingWrites.clear(); // Unknown outcome: never acknowledged.
    node.readWaiting = [];
    this.stats.crashes++;
  }

  private restart(node: SimNode): void {
    if (node.raft !== null || node.decommissioned) return;
    this.trace(`${node.id} restarts from its disk`);
    this.start(node);
  }

  // ---- actors: clients, operator, faults ----

  private clientActions(): void {
    if (this.clientPrng.chance(this.swarm.writeRate)) this.clientWrite(this.clientPrng.pick(this.clients));
    if (this.clientPrng.chance(this.swarm.readRate) && this.reads.size < outstandingReadsMax)
      this.clientRead();
    if (this.step % 256 === 0) this.expireReads();
    if (this.step % this.swarm.tickSteps === 0) this.askReadsAgain();
  }

  private clientWrite(client: SimClient): void {
    // Now and then a client gives up on its guess (as after a timeout) and tries any node.
    if (this.clientPrng.chance(0.05)) client.guess = this.clientPrng.pick(this.nodes).id;
    const node = this.byId.get(client.guess);
    if (node === undefined || node.raft === null) {
      client.guess = this.clientPrng.pick(this.nodes).id;
      return;
    }
    const id = `c${client.id}-${client.seq++}`;
    this.input(node, (raft) => {
      const result = raft.propose(encodeWrite(id));
      if (result.ok) {
        node.pendingWrites.set(result.index, { id, term: result.term });
        this.stats.proposed++;
      } else {
        client.guess = result.leader ?? this.clientPrng.pick(this.nodes).id;
      }
    });
  }

  private clientRead(): void {
    const node = this.clientPrng.pick(this.nodes);
    if (node.raft === null) return;
    const requestId = `r${this.readSeq++}`;
    this.reads.set(requestId, {
      node: node.id,
      incarnation: node.incarnation,
      ackedCountAtStart: this.checker.acked.length,
      startStep: this.step,
      askedStep: this.step,
    });
    this.input(node, (raft) => raft.readIndex(requestId));
  }

  /**
   * Reads the core silently dropped time out, as a runtime's would; until then a read with
   * no read index yet is asked again with the same id, as the host does after an election
   * timeout (so a leader may see the same request id twice, the second time long after
   * acks of its first round went out).
   */
  private expireReads(): void {
    for (const [requestId, read] of this.reads) {
      if (this.step - read.startStep > 2000) this.reads.delete(requestId);
    }
  }

  private askReadsAgain(): void {
    const timeoutSteps = this.swarm.electionTicks * this.swarm.tickSteps;
    for (const [requestId, read] of this.reads) {
      if (this.step - read.askedStep < timeoutSteps) continue;
      const node = this.byId.get(read.node);
      if (node === undefined || node.raft === null || node.pausedUntil > 0) continue;
      if (node.incarnation !== read.incarnation) continue;
      if (node.readWaiting.some((waiting) => waiting.requestId === requestId)) continue;
      read.askedStep = this.step;
      this.input(node, (raft) => raft.readIndex(requestId));
    }
  }

  private currentLeader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      if (node.raft === null || node.role !== "leader") continue;
      const term = node.raft.status().term;
      if (term > bestTerm) {
        best = node;
        bestTerm = term;
      }
    }
    return best;
  }

  private operatorActions(): void {
    if (this.faultPrng.chance(this.swarm.confChangeRate)) this.changeMembership();
    if (this.faultPrng.chance(this.swarm.transferRate)) {
      const leader = this.currentLeader();
      if (leader?.raft) {
        const others = leader.raft.status().conf.voters.filter((id) => id !== leader.id);
        if (others.length > 0) {
          const to = this.faultPrng.pick(others);
          this.trace(`transfer leadership ${leader.id} → ${to}`);
          this.input(leader, (raft) => raft.transferLeadership(to));
        }
      }
    }
  }

  /** One step of the add-learner → promote → remove-a-voter cycle, proposed on the leader. */
  private changeMembership(): void {
    const leader = this.currentLeader();
    if (leader === null || leader.raft === null) return;
    const conf = leader.raft.status().conf;
    let change: ConfChange;
    let created: SimNode | null = null;
    if (conf.learners.length > 0) {
      change = { type: "addVoter", node: this.faultPrng.pick(conf.learners) };
    } else if (conf.voters.length > this.swarm.nodeCount) {
      const others = conf.voters.filter((id) => id !== leader.id);
      const victim =
        this.faultPrng.chance(0.2) || others.length === 0 ? leader.id : this.faultPrng.pick(others);
      change = { type: "removeNode", node: victim };
    } else if (this.nodes.length < this.swarm.nodeCount + nodesExtraMax) {
      created = this.addNode(`n${this.nodes.length + 1}`);
      change = { type: "addLearner", node: created.id };
    } else {
      return;
    }
    this.input(leader, (raft) => {
      const result = raft.proposeConfChange(change);
      this.trace(
        `propose ${change.type} ${change.node} on ${leader.id}: ${result.ok ? "accepted" : result.reason}`,
      );
      if (!result.ok && created !== null) {
        created.decommissioned = true;
        this.crash(created, "its addLearner was rejected");
      }
    });
  }

  /** SIGCONT: one tick (timers fire once, not per missed tick), then everything buffered, in any order. */
  private resume(node: SimNode): void {
    node.pausedUntil = 0;
    const inbox = node.pausedInbox;
    node.pausedInbox = [];
    if (node.raft === null) return;
    this.trace(`${node.id} resumes with ${inbox.length} inputs waiting`);
    const nowMs = this.step * msPerStep;
    this.input(node, (raft) => raft.tick(nowMs + node.clockOffsetMs, this.monoMs(node)));
    for (let i = inbox.length - 1; i > 0; i--) {
      const j = this.pausePrng.int(0, i);
      [inbox[i], inbox[j]] = [inbox[j]!, inbox[i]!];
    }
    for (const act of inbox) this.input(node, act);
  }

  private maybePause(): void {
    if (this.pauseRate === 0 || !this.pausePrng.chance(this.pauseRate)) return;
    const leader = this.currentLeader();
    const alive = this.nodes.filter((node) => node.raft !== null && node.pausedUntil === 0);
    const target =
      leader !== null && leader.pausedUntil === 0 && this.pausePrng.chance(0.6)
        ? leader
        : alive.length > 0
          ? this.pausePrng.pick(alive)
          : null;
    if (target === null) return;
    const timeoutSteps = this.swarm.electionTicks * this.swarm.tickSteps;
    const steps = this.pausePrng.int(timeoutSteps, 5 * timeoutSteps);
    target.pausedUntil = this.step + steps;
    this.stats.pauses++;
    this.trace(`pause ${target.id} for ${steps} steps`);
  }

  private faultActions(): void {
    this.maybePause();
    const prng = this.faultPrng;
    const active = this.nodes.filter((node) => !node.decommissioned);
    if (prng.chance(this.swarm.crashRate)) {
      const alive = active.filter((node) => node.raft !== null);
      if (alive.length > 0) this.crash(prng.pick(alive), "fault");
    }
    if (prng.chance(this.swarm.leaderCrashRate)) {
      const leader = this.currentLeader();
      if (leader !== null) this.crash(leader, "fault aimed at the leader");
    }
    if (prng.chance(this.swarm.restartRate)) {
      const dead = active.filter((node) => node.raft === null);
      if (dead.length > 0) this.restart(prng.pick(dead));
    }
    if (prng.chance(this.swarm.partitionRate)) this.partition(active.map((node) => node.id));
    if (prng.chance(this.swarm.leaderIsolateRate)) {
      const leader = this.currentLeader();
      if (leader !== null) {
        this.network.heal();
        this.network.partition(
          [leader.id],
          active.filter((node) => node !== leader).map((node) => node.id),
        );
        this.stats.partitions++;
        this.trace(`isolate the leader ${leader.id}`);
      }
    }
    if (this.swarm.leaderPairIsolateRate > 0 && prng.chance(this.swarm.leaderPairIsolateRate)) {
      const leader = this.currentLeader();
      const followers = active.filter((node) => node !== leader && node.raft !== null);
      if (leader !== null && followers.length > 0) {
        const follower = prng.pick(followers);
        this.network.heal();
        this.network.partition(
          [leader.id, follower.id],
          active.filter((node) => node !== leader && node !== follower).map((node) => node.id),
        );
        this.stats.partitions++;
        this.trace(`isolate the leader ${leader.id} with ${follower.id}`);
      }
    }
    const linkCutRate = this.swarm.leaderLinkCutRate ?? 0;
    if (linkCutRate > 0 && prng.chance(linkCutRate)) {
      const leader = this.currentLeader();
      const followers = active.filter((node) => node !== leader && node.raft !== null);
      if (leader !== null && followers.length > 0) {
        const follower = prng.pick(followers);
        this.network.partition([leader.id], [follower.id]);
        this.stats.partitions++;
        this.trace(`cut the link between the leader ${leader.id} and ${follower.id}`);
      }
    }
    if (this.network.cutLinks > 0 && prng.chance(this.swarm.healRate)) {
      this.trace("network healed");
      this.network.heal();
    }
  }

  private partition(ids: NodeId[]): void {
    if (ids.length < 2) return;
    const prng = this.faultPrng;
    this.network.heal();
    this.stats.partitions++;
    const shape = prng.int(0, 3);
    if (shape === 0) {
      const shuffled = ids.slice();
      shuffle(shuffled, prng);
      const cut = prng.int(1, shuffled.length - 1);
      this.network.partition(shuffled.slice(0, cut), shuffled.slice(cut));
      this.trace(`partition ${shuffled.slice(0, cut)} | ${shuffled.slice(cut)}`);
    } else if (shape === 1) {
      const isolated = prng.pick(ids);
      this.network.partition(
        [isolated],
        ids.filter((id) => id !== isolated),
      );
      this.trace(`isolate ${isolated}`);
    } else if (shape === 2) {
      // Asymmetric: the node hears everyone but nobody hears it, or the reverse.
      const node = prng.pick(ids);
      const outbound = prng.chance(0.5);
      for (const other of ids) {
        if (other === node) continue;
        if (outbound) this.network.cutLink(node, other);
        else this.network.cutLink(other, node);
      }
      this.trace(`one-way partition: ${node} ${outbound ? "cannot send" : "cannot receive"}`);
    } else {
      const links = prng.int(1, ids.length);
      for (let i = 0; i < links; i++) {
        const from = prng.pick(ids);
        const to = prng.pick(ids);
        if (from !== to) this.network.cutLink(from, to);
      }
      this.trace(`${links} random one-way links cut`);
    }
  }

  private checkAllLogs(): void {
    checkLogsMatch(this.nodes.map((node) => ({ id: node.id, storage: node.disk })));
  }

  // ---- liveness ----

  /** Heal everything; a leader must emerge and a new write commit on every live member in time. */
  private liveness(): void {
    this.phase = "liveness";
    this.network.heal();
    this.network.faults = calmNetwork;
    for (const node of this.nodes) this.restart(node);
    this.trace("liveness phase: network healed, all nodes restarted");
    let barrier: { node: SimNode; incarnation: number; index: number; term: number; id: string } | null =
      null;
    let attempts = 0;
    const stepsMax = livenessTicksMax * this.swarm.tickSteps;
    for (let i = 0; i < stepsMax; i++, this.step++) {
      this.runStep();
      this.stats.livenessTicks = Math.ceil(i / this.swarm.tickSteps);
      if (barrier !== null && this.barrierFailed(barrier)) barrier = null;
      if (barrier === null) {
        const leader = this.currentLeader();
        if (leader === null || leader.raft === null) continue;
        const id = `barrier-${attempts++}`;
        let accepted: { index: number; term: number } | null = null;
        this.input(leader, (raft) => {
          const result = raft.propose(encodeWrite(id));
          if (!result.ok) return;
          accepted = { index: result.index, term: result.term };
          leader.pendingWrites.set(result.index, { id, term: result.term });
        });
        if (accepted === null) continue;
        const { index, term } = accepted;
        barrier = { node: leader, incarnation: leader.incarnation, index, term, id };
        this.trace(`barrier ${id} proposed on ${leader.id} at ${index}/${term}`);
      }
      if (this.converged(barrier)) return;
    }
    const states = this.nodes.map(
      (node) =>
        `${node.id}:${node.decommissioned ? "gone" : node.raft === null ? "down" : node.role}` +
        `@${node.register.appliedIndex}`,
    );
    throw new InvariantViolation(
      "liveness",
      `no convergence within ${livenessTicksMax} ticks after healing (barrier ${barrier?.id ?? "none"}; ${states.join(" ")})`,
    );
  }

  /** The barrier's proposer crashed, lost leadership before committing it, or applied another entry there. */
  private barrierFailed(barrier: { node: SimNode; incarnation: number; index: number; id: string }): boolean {
    const node = barrier.node;
    if (node.raft === null || node.incarnation !== barrier.incarnation) return true;
    if (this.checker.isAcknowledged(barrier.id)) return false;
    return node.role !== "leader" || node.register.appliedIndex >= barrier.index;
  }

  private converged(barrier: { node: SimNode; index: number; id: string }): boolean {
    const leader = barrier.node;
    if (leader.raft === null || !this.checker.isAcknowledged(barrier.id)) return false;
    const conf = leader.raft.status().conf;
    const members = [...conf.voters, ...conf.learners];
    for (const id of members) {
      const node = this.byId.get(id);
      if (node === undefined || node.raft === null) return false;
      if (node.register.appliedIndex < barrier.index) return false;
    }
    this.checkAllLogs();
    for (const id of members) {
      const node = this.byId.get(id)!;
      this.checker.allAcknowledgedIn(id, node.register);
    }
    this.trace(`converged: ${members.join(",")} applied through ${barrier.index}`);
    return true;
  }

  private readonly coreLogger = {
    debug: (_message: string): void => {},
    info: (message: string): void => this.trace(`core: ${message}`),
    warn: (message: string): void => this.trace(`core warn: ${message}`),
  };

  private readonly tamper = (message: Message): Message => {
    const prng = this.faultPrng;
    if (this.mutations.forgeVoteGrant && message.type === MessageType.VoteResp && message.reject) {
      if (prng.chance(0.5)) return { ...message, reject: false };
    }
    if (this.mutations.forgeCommit && message.type === MessageType.Append && message.entries.length > 0) {
      const last = message.entries[message.entries.length - 1]!;
      if (last.index > message.commit) return { ...message, commit: last.index };
    }
    return message;
  };
}

const messageTypeNames = new Map<number, string>(
  Object.entries(MessageType).map(([name, code]) => [code, name]),
);

function describeMessage(m: Message): string {
  const entries =
    m.entries.length > 0 ? ` entries ${m.entries[0]?.index}..${m.entries[m.entries.length - 1]?.index}` : "";
  return (
    `${m.from}→${m.to} ${messageTypeNames.get(m.type)} t${m.term} logTerm ${m.logTerm} index ${m.index}` +
    ` commit ${m.commit}${m.reject ? ` reject(hint ${m.rejectHint}/${m.rejectHintTerm})` : ""}${entries}` +
    `${m.snapshot ? ` snapshot ${m.snapshot.meta.index}/${m.snapshot.meta.term}` : ""}${m.context ? ` ctx ${m.context}` : ""}`
  );
}

function seededRandom(prng: Prng): () => number {
  return () => prng.float();
}

/** Runs one seeded simulation; throws `SimFailure` (with the replay line) on any violation. */
export function runSimulation(options: SimOptions): SimStats {
  return new Simulation(options).run();
}

/**
 * The deterministic simulator over the REAL runtime: each simulated process runs a real
 * RaftHost (its RaftGroup, waiters, forwarding, re-asked reads, snapshots while applying)
 * with the dstore state machine, through the host's injected seams — a scheduler whose ticks,
 * deferrals and monotonic clock are the simulator's, a NodeTransport over a seeded network,
 * and storage over a simulated disk. One seed decides everything; everything that would be
 * I/O is a promise the simulator settles, and each step ends when the microtask queue is empty,
 * so a seed replays exactly.
 *
 * Faults: message drops, duplicates, delays, partitions (one- and two-way), leader isolation,
 * crashes (a torn tail of unsynced frames survives), process pauses (SIGSTOP: no ticks, no
 * I/O, inputs queue), fsync errors (→ onFatal → the process dies), a lying disk that loses
 * its last fsynced frame, leadership transfers. Clients write (retrying through other members
 * with the same request id), read linearizably on any member, and send invalid commands
 * through followers. The invariants are in checker.ts.
 */
import type { Clock } from "../../../../src/clock.ts";
import { DkvError } from "../../../../src/errors.ts";
import { CLOCK_RATE_DRIFT_MAX } from "../../../../src/raft/core/reads.ts";
import { type Entry, type Message, MessageType, type NodeId } from "../../../../src/raft/core/types.ts";
import type { GroupOptions } from "../../../../src/raft/host/group-env.ts";
import type { RaftHost } from "../../../../src/raft/host/raft-host.ts";
import type { HostScheduler } from "../../../../src/raft/host/runtime.ts";
import type { RaftHostConfig, StateMachine } from "../../../../src/raft/host/types.ts";
import type { NodeTransport, NodeTransportHandlers } from "../../../../src/raft/transport/types.ts";
import { decodeCommand, encodeCommand, Op } from "../../../../src/store/replicated/command.ts";
import { InvariantViolation } from "../checker.ts";
import { calmNetwork, type NetworkFaults, shuffle } from "../network.ts";
import { Prng } from "../prng.ts";
import { SimFailure } from "../simulator.ts";
import { HostChecker, payloadOf } from "./checker.ts";
import { SimDisk } from "./disk.ts";
import { type Envelope, HostNetwork } from "./network.ts";

/** The public face of RaftHost the simulator drives (a mutated copy has the same shape). */
export type HostApi = Pick<
  RaftHost,
  "start" | "addGroup" | "propose" | "proposeTo" | "read" | "status" | "transferLeadership"
>;

export interface DStoreMachine extends StateMachine {
  db: { get(key: string, nowMs: number): Uint8Array | undefined };
}

/** What the simulator runs: the repo's host and state machine, or mutated copies (runtime mutants). */
export interface RuntimeFactory {
  createHost(config: RaftHostConfig): HostApi;
  createStateMachine(): DStoreMachine;
}

export async function loadRuntime(srcRoot?: string): Promise<RuntimeFactory> {
  const root = srcRoot ?? new URL("../../../../src", import.meta.url).pathname;
  const hostModule = (await import(`${root}/raft/host/raft-host.ts`)) as {
    RaftHost: new (config: RaftHostConfig) => HostApi;
  };
  const smModule = (await import(`${root}/store/replicated/state-machine.ts`)) as {
    DStoreStateMachine: new () => DStoreMachine;
  };
  return {
    createHost: (config) => new hostModule.RaftHost(config),
    createStateMachine: () => new smModule.DStoreStateMachine(),
  };
}

export interface HostSwarm {
  nodeCount: number;
  faultSteps: number;
  tickSteps: number;
  electionTicks: number;
  heartbeatTicks: number;
  network: NetworkFaults;
  partitionRate: number;
  healRate: number;
  leaderIsolateRate: number;
  crashRate: number;
  leaderCrashRate: number;
  restartRate: number;
  pauseRate: number;
  /** Per step and member with writes waiting, the chance its disk fsyncs now. */
  syncRate: number;
  /** Per fsync, the chance it fails (EIO). */
  fsyncFailRate: number;
  /** Per crash, the chance the disk also loses its last fsynced frame (only when a quorum of others holds it). */
  lyingDiskRate: number;
  tickSkipRate: number;
  transferRate: number;
  writeRate: number;
  readRate: number;
  invalidRate: number;
  snapshotEntries: number;
  compactionOverheadEntries: number;
  /** Deadline of a client call, in ticks. */
  requestTimeoutTicks: number;
  keys: number;
  /** Concurrent clients (each with one call at a time). */
  clients: number;
  /** Snapshot cadence by applied log bytes (0: by entries only), and the log's byte bound (0: none). */
  snapshotBytes: number;
  raftLogMaxBytes: number;
  /**
   * Per step, the chance of a write to a second Raft group hosted on every member
   * (0: no second group). Its frames share each member's disk with the checked group's,
   * as every group shares the process's one log: one fsync covers both, a crash tears
   * across both, a lying disk may lose either's frame. Only the first group is checked.
   */
  bystanderWriteRate: number;
  /**
   * How many such other groups each member hosts (ids 2, 3, ...; default 1); each
   * bystander write goes to one of them. With many, every Ready pass of the host
   * (raft/host/ready-pass.ts) carries several groups' Readys in one disk batch.
   */
  bystanderGroups: number;
  /**
   * Members run lease reads (RaftHostConfig.readLease). Not drawn with the other knobs:
   * each seed draws it from its own stream, so the others stay what they were.
   */
  readLease?: boolean;
  /** The members' log budget over all their groups (RaftHostConfig.raftLogBudgetBytes); absent: off. Not drawn. */
  raftLogBudgetBytes?: number;
  /**
   * Clients write through `RaftHost.proposeTo` with a receiver (the server's write path:
   * DStore.setTo), not `propose`'s promise, and a receiver told twice fails "every waiter
   * settles once" (a promise would hide the second settlement). Off unless asked for, so
   * seeds replay as before.
   */
  writesThroughReceivers?: boolean;
}

export interface HostSimOptions {
  seed: number;
  runtime: RuntimeFactory;
  swarm?: Partial<HostSwarm>;
  log?: (line: string) => void;
}

export interface HostSimStats {
  seed: number;
  nodeCount: number;
  steps: number;
  writesOk: number;
  writesNotApplied: number;
  writesUnknown: number;
  retries: number;
  forwarded: number;
  reads: number;
  invalidRefused: number;
  crashes: number;
  fsyncFailures: number;
  lyingDiskLosses: number;
  pauses: number;
  snapshotsRestored: number;
  maxAppliedIndex: number;
  /** Writes to the second group (bystanderWriteRate) that succeeded. */
  bystanderWritesOk: number;
}

const msPerStep = 10;
const GROUP = 1;
/** The first other group of `bystanderWriteRate` (then 3, 4, ...), and the client id of their writes. */
const BYSTANDER_GROUP = 2;
const BYSTANDER_CLIENT_ID = new Uint8Array(16).fill(0xbb);
const livenessStepsMax = 6000;
/** A call settles within this many ticks of its member after its deadline. */
const settleGraceTicks = 3;
const attemptsMax = 3;

export function pickHostSwarm(prng: Prng): HostSwarm {
  const level = (levels: readonly number[]): number => prng.pick(levels);
  const electionTicks = prng.int(5, 12);
  return {
    nodeCount: prng.pick([3, 3, 5]),
    faultSteps: prng.int(400, 1200),
    tickSteps: prng.int(2, 4),
    electionTicks,
    heartbeatTicks: prng.int(1, 2),
    network: {
      dropRate: level([0, 0.01, 0.05, 0.1]),
      duplicateRate: level([0, 0, 0.02, 0.1]),
      delayMaxSteps: prng.int(1, 6),
    },
    partitionRate: level([0, 0.002, 0.01, 0.02]),
    healRate: level([0.01, 0.03, 0.08]),
    leaderIsolateRate: level([0, 0.005, 0.01, 0.02]),
    crashRate: level([0, 0.002, 0.005, 0.01]),
    leaderCrashRate: level([0, 0, 0.003, 0.01]),
    restartRate: level([0.02, 0.1, 0.3]),
    pauseRate: level([0, 0, 0.003, 0.01]),
    syncRate: level([0.3, 0.6, 1]),
    fsyncFailRate: level([0, 0, 0.001, 0.005]),
    lyingDiskRate: 0,
    tickSkipRate: level([0, 0, 0.05, 0.2]),
    transferRate: level([0, 0, 0.002, 0.01]),
    writeRate: 0.1 + prng.float() * 0.5,
    readRate: level([0.05, 0.2, 0.4]),
    invalidRate: level([0, 0.005, 0.02]),
    snapshotEntries: prng.pick([0, 5, 20, 60]),
    compactionOverheadEntries: prng.int(0, 10),
    requestTimeoutTicks: prng.int(electionTicks, 4 * electionTicks),
    keys: prng.int(1, 5),
    // Drawn last, so the other knobs stay what each seed drew before it existed.
    clients: prng.pick([3, 3, 6]),
    ...logBytes(prng),
    bystanderWriteRate: 0,
    bystanderGroups: 1,
  };
}

/** Drawn after every other knob (they stay what each seed drew before these existed). */
function logBytes(prng: Prng): { snapshotBytes: number; raftLogMaxBytes: number } {
  const snapshotBytes = prng.pick([0, 0, 300, 2000]);
  const raftLogMaxBytes = snapshotBytes === 0 ? 0 : snapshotBytes * prng.pick([0, 2, 4]);
  return { snapshotBytes, raftLogMaxBytes };
}

/** Time and scheduling of one simulated process. */
class SimScheduler implements HostScheduler {
  onTick: (() => void) | undefined;
  deferred: (() => void)[] = [];
  constructor(private readonly now: () => number) {}
  startTicks(_tickMs: number, onTick: () => void): () => void {
    this.onTick = onTick;
    return () => {
      this.onTick = undefined;
    };
  }
  later(run: () => void): void {
    this.deferred.push(run);
  }
  monotonicMs(): number {
    return this.now();
  }
}

class SimTransport implements NodeTransport {
  handlers: NodeTransportHandlers | undefined;
  constructor(
    readonly self: NodeId,
    private readonly out: (envelope: Envelope) => void,
  ) {}
  async start(handlers: NodeTransportHandlers): Promise<void> {
    this.handlers = handlers;
  }
  sendRaft(to: NodeId, groupId: number, message: Message): void {
    this.out({ kind: "raft", from: this.self, to, groupId, message });
  }
  sendHost(to: NodeId, payload: Uint8Array): void {
    this.out({ kind: "host", from: this.self, to, payload });
  }
  setPeers(): void {}
  async close(): Promise<void> {
    this.handlers = undefined;
  }
}

/** The dstore state machine as the checker sees it: every apply and restore reported. */
class ProbeMachine implements StateMachine {
  lastIndex = 0;
  lastTerm = 0;
  constructor(
    readonly inner: DStoreMachine,
    private readonly node: NodeId,
    private readonly checker: HostChecker,
    private readonly stats: HostSimStats,
    /** Violations seen inside the host (which would catch them) go here too. */
    private readonly sink: (error: unknown) => void,
    private readonly trace: ((line: string) => void) | undefined,
  ) {}
  apply(entry: Entry): Uint8Array {
    try {
      if (entry.index <= this.lastIndex) {
        throw new InvariantViolation(
          "apply order",
          `${this.node} applied ${entry.index} after ${this.lastIndex}`,
        );
      }
      // The entries between the last Normal one and this were no-ops: the host applies them without us.
      for (let index = this.lastIndex + 1; index < entry.index; index++)
        this.checker.appliedOther(this.node, index);
      this.checker.applied(this.node, entry);
      this.trace?.(
        `${this.node} applies ${entry.index}/${entry.term} ${payloadOf(entry.data).kind === "write" ? (payloadOf(entry.data) as { attempt: string }).attempt : "invalid"}`,
      );
    } catch (error) {
      this.sink(error);
      throw error;
    }
    this.lastIndex = entry.index;
    this.lastTerm = entry.term;
    return this.inner.apply(entry);
  }
  snapshot(): AsyncIterable<Uint8Array> | Uint8Array {
    const header = new Uint8Array(16);
    const view = new DataView(header.buffer);
    view.setFloat64(0, this.lastIndex, true);
    view.setFloat64(8, this.lastTerm, true);
    const inner = this.inner.snapshot();
    return (async function* () {
      yield header;
      if (inner instanceof Uint8Array) yield inner;
      else yield* inner;
    })();
  }
  async restore(data: Uint8Array): Promise<void> {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const index = view.getFloat64(0, true);
    const term = view.getFloat64(8, true);
    try {
      this.checker.restored(this.node, index, term);
    } catch (error) {
      this.sink(error);
      throw error;
    }
    await this.inner.restore(data.subarray(16));
    this.lastIndex = index;
    this.lastTerm = term;
    this.stats.snapshotsRestored++;
  }
}

interface SimProcess {
  readonly id: NodeId;
  readonly disk: SimDisk;
  incarnation: number;
  host: HostApi | null;
  machine: ProbeMachine | null;
  transport: SimTransport | null;
  scheduler: SimScheduler | null;
  pausedUntil: number;
  /** Inputs that arrived while paused, run at resume. */
  inbox: (() => void)[];
  tickPhase: number;
  clockOffsetMs: number;
  /** This incarnation's monotonic clock: its origin, the step it started, its rate (drift). */
  monoOriginMs: number;
  monoStartStep: number;
  monoRate: number;
}

type CallOutcome<T> = { ok: true; value: T } | { ok: false; error: unknown } | { lost: true };

interface Call {
  node: SimProcess;
  incarnation: number;
  what: string;
  deadlineMs: number;
  settled: boolean;
  lost: boolean;
  /** Ticks its member has had since the deadline passed: it must settle on one of the first few. */
  ticksPastDeadline: number;
  /** Told when its member died first (the client's connection broke). */
  onLost(): void;
}

interface SimClient {
  readonly id: number;
  readonly clientId: Uint8Array;
  busy: boolean;
  seq: number;
  guess: NodeId;
}

class HostSimulation {
  private readonly swarm: HostSwarm;
  private readonly prng: Prng;
  private readonly faultPrng: Prng;
  private readonly clientPrng: Prng;
  private readonly diskPrng: Prng;
  /** Each incarnation's monotonic clock (origin, rate) and whether members run lease reads. */
  private readonly clockPrng: Prng;
  private readonly bystanderPrng: Prng | null;
  private bystanderWrites = 0;
  private readonly network: HostNetwork;
  private readonly checker = new HostChecker();
  private readonly nodes: SimProcess[] = [];
  private readonly byId = new Map<NodeId, SimProcess>();
  private readonly members: Map<NodeId, string>;
  private readonly clients: SimClient[] = [];
  private readonly calls = new Set<Call>();
  private readonly invalidTargets = new Map<string, NodeId>();
  private readonly log: ((line: string) => void) | null;
  private step = 0;
  private phase: "faults" | "liveness" = "faults";
  readonly stats: HostSimStats;

  constructor(private readonly options: HostSimOptions) {
    this.prng = new Prng(options.seed);
    this.swarm = { ...pickHostSwarm(this.prng.derive(1)), ...options.swarm };
    this.faultPrng = this.prng.derive(2);
    this.clientPrng = this.prng.derive(3);
    this.diskPrng = this.prng.derive(4);
    // Drawn only when used, so the streams (and runs) of seeds without it stay the same.
    this.bystanderPrng = this.swarm.bystanderWriteRate > 0 ? this.prng.derive(7) : null;
    this.network = new HostNetwork(this.prng.derive(5), this.swarm.network);
    this.clockPrng = this.prng.derive(8);
    this.swarm.readLease ??= this.clockPrng.chance(0.5);
    this.log = options.log ?? null;
    this.stats = {
      seed: options.seed,
      nodeCount: this.swarm.nodeCount,
      steps: 0,
      writesOk: 0,
      writesNotApplied: 0,
      writesUnknown: 0,
      retries: 0,
      forwarded: 0,
      reads: 0,
      invalidRefused: 0,
      crashes: 0,
      fsyncFailures: 0,
      lyingDiskLosses: 0,
      pauses: 0,
      snapshotsRestored: 0,
      maxAppliedIndex: 0,
      bystanderWritesOk: 0,
    };
    const ids = Array.from({ length: this.swarm.nodeCount }, (_, i) => `n${i + 1}`);
    this.members = new Map(ids.map((id) => [id, `sim:${id}`]));
    const nodePrng = this.prng.derive(6);
    for (const id of ids) {
      const node: SimProcess = {
        id,
        disk: new SimDisk(id),
        incarnation: 0,
        host: null,
        machine: null,
        transport: null,
        scheduler: null,
        pausedUntil: 0,
        inbox: [],
        tickPhase: nodePrng.int(0, this.swarm.tickSteps - 1),
        clockOffsetMs: nodePrng.int(0, 500),
        monoOriginMs: 0,
        monoStartStep: 0,
        monoRate: 1,
      };
      this.nodes.push(node);
      this.byId.set(id, node);
    }
    for (let i = 0; i < this.swarm.clients; i++) {
      const clientId = new Uint8Array(16);
      clientId[0] = i + 1;
      this.clients.push({ id: i, clientId, busy: false, seq: 1, guess: this.clientPrng.pick(ids) });
    }
    this.trace(`swarm ${JSON.stringify(this.swarm)}`);
  }

  async run(): Promise<HostSimStats> {
    try {
      for (const node of this.nodes) await this.start(node);
      for (; this.step < this.swarm.faultSteps; this.step++) {
        await this.runStep();
        this.faultActions();
      }
      await this.liveness();
    } catch (error) {
      throw this.failure(error);
    }
    this.stats.steps = this.step;
    this.stats.maxAppliedIndex = this.checker.maxAppliedIndex;
    return this.stats;
  }

  private failure(error: unknown): SimFailure {
    const context = `seed ${this.options.seed}, ${this.phase} phase, step ${this.step}, ${this.swarm.nodeCount} nodes`;
    const replay = `DKV_HOST_SEED=${this.options.seed} bun test test/raft/sim/host-sim.test.ts`;
    if (error instanceof InvariantViolation) {
      return new SimFailure(
        this.options.seed,
        error.invariant,
        error.message.slice(error.invariant.length + 2),
        context,
        replay,
      );
    }
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    return new SimFailure(this.options.seed, "runtime threw", detail, context, replay);
  }

  private trace(line: string): void {
    this.log?.(`[${this.step}] ${line}`);
  }

  private nowMs(): number {
    return this.step * msPerStep;
  }

  private get tickMs(): number {
    return this.swarm.tickSteps * msPerStep;
  }

  // ---- processes ----------------------------------------------------------------------

  private async start(node: SimProcess): Promise<void> {
    if (node.host !== null) return;
    node.incarnation++;
    const incarnation = node.incarnation;
    // Each incarnation's monotonic clock starts anywhere and runs at its own rate, within
    // the drift the read lease allows (mostly at its extremes, the hard cases).
    node.monoOriginMs = this.clockPrng.int(0, 1_000_000);
    node.monoStartStep = this.step;
    node.monoRate = this.clockPrng.pick([1 - CLOCK_RATE_DRIFT_MAX, 1 + CLOCK_RATE_DRIFT_MAX, 1]);
    const scheduler = new SimScheduler(
      () => node.monoOriginMs + (this.step - node.monoStartStep) * msPerStep * node.monoRate,
    );
    const transport = new SimTransport(node.id, (envelope) => this.send(node, incarnation, envelope));
    const clock: Clock = {
      now: () => this.nowMs() + node.clockOffsetMs,
      sleep: () => new Promise(() => {}),
    };
    const nodePrng = this.prng.derive(100 + node.incarnation);
    const host = this.options.runtime.createHost({
      self: node.id,
      members: this.members,
      dataDir: "(simulated)",
      tickMs: this.tickMs,
      electionTicks: this.swarm.electionTicks,
      heartbeatTicks: this.swarm.heartbeatTicks,
      snapshotEntries: this.swarm.snapshotEntries,
      compactionOverheadEntries: this.swarm.compactionOverheadEntries,
      snapshotBytes: this.swarm.snapshotBytes,
      raftLogMaxBytes: this.swarm.raftLogMaxBytes,
      ...(this.swarm.raftLogBudgetBytes === undefined
        ? {}
        : { raftLogBudgetBytes: this.swarm.raftLogBudgetBytes }),
      readLease: this.swarm.readLease === true,
      clock,
      transport,
      random: () => nodePrng.float(),
      requestTimeoutMs: this.swarm.requestTimeoutTicks * this.tickMs,
      scheduler,
      ...(this.log === null
        ? {}
        : {
            logger: {
              debug: () => {},
              info: (message: string) => this.trace(`${node.id}: ${message}`),
              warn: (message: string) => this.trace(`${node.id} warn: ${message}`),
            },
          }),
      openStorage: async (groupId, initialConf) => node.disk.open(groupId, initialConf),
      onFatal: (error) => this.onFatal(node, incarnation, error),
    });
    node.host = host;
    node.scheduler = scheduler;
    node.transport = transport;
    const machine = new ProbeMachine(
      this.options.runtime.createStateMachine(),
      node.id,
      this.checker,
      this.stats,
      this.sink,
      this.log === null ? undefined : (line) => this.trace(line),
    );
    node.machine = machine;
    await host.start();
    const options: GroupOptions = { validateProposal };
    await host.addGroup(GROUP, machine, options);
    if (this.bystanderPrng !== null) {
      for (let i = 0; i < this.swarm.bystanderGroups; i++) {
        await host.addGroup(BYSTANDER_GROUP + i, this.options.runtime.createStateMachine(), options);
      }
    }
    this.trace(`${node.id} started (incarnation ${incarnation})`);
  }

  private onFatal(node: SimProcess, incarnation: number, error: Error): void {
    if (node.incarnation !== incarnation || node.host === null) return;
    const kind = (error as { kind?: string }).kind;
    if (kind !== "persistence" || !node.disk.failed) {
      this.sink(
        new InvariantViolation(
          "fatal",
          `${node.id} reported a fatal error without a disk fault: ${error.message}`,
        ),
      );
      return;
    }
    this.trace(`${node.id} onFatal: ${error.message.slice(0, 80)}`);
    this.crash(node, "fsync failed → onFatal → exit");
  }

  private crash(node: SimProcess, why: string): void {
    if (node.host === null) return;
    this.trace(`${node.id} crashes (${why})`);
    node.host = null;
    node.machine = null;
    if (node.transport !== null) node.transport.handlers = undefined;
    node.transport = null;
    if (node.scheduler !== null) {
      node.scheduler.onTick = undefined;
      node.scheduler.deferred = [];
    }
    node.scheduler = null;
    node.pausedUntil = 0;
    node.inbox = [];
    const keep = this.diskPrng.int(0, node.disk.unsynced.length);
    const lie = this.diskPrng.chance(this.swarm.lyingDiskRate) && this.lastFrameHeldByQuorum(node);
    if (lie) {
      this.stats.lyingDiskLosses++;
      this.trace(`${node.id}'s disk loses its last fsynced frame`);
    }
    node.disk.crash(keep, lie);
    for (const call of this.calls) {
      if (call.node !== node || call.settled || call.lost) continue;
      call.lost = true;
      this.lostCalls.push(call.onLost);
    }
    this.stats.crashes++;
  }

  /**
   * Raft cannot survive a disk that forgets acknowledged entries on a quorum, so the lying
   * disk only forgets a frame whose entries a quorum of the other members holds on disk and
   * whose hard state keeps the same term and vote (forgetting a vote allows two leaders).
   */
  private lastFrameHeldByQuorum(node: SimProcess): boolean {
    const frames = node.disk.synced;
    const last = frames[frames.length - 1];
    if (last === undefined || last.kind !== "append") return false;
    if (last.hardState !== undefined) {
      let previous: { term: number; vote: string | null } = { term: 0, vote: null };
      for (let i = frames.length - 2; i >= 0; i--) {
        const frame = frames[i]!;
        if (frame.groupId === last.groupId && frame.kind === "append" && frame.hardState !== undefined) {
          previous = frame.hardState;
          break;
        }
      }
      if (previous.term !== last.hardState.term || previous.vote !== last.hardState.vote) return false;
    }
    const quorum = Math.floor(this.nodes.length / 2) + 1;
    for (const entry of last.entries) {
      let holders = 0;
      for (const other of this.nodes) {
        if (other === node) continue;
        if (diskHolds(other.disk, last.groupId, entry.index, entry.term)) holders++;
      }
      if (holders < quorum) return false;
    }
    return true;
  }

  private pause(node: SimProcess, steps: number): void {
    node.pausedUntil = this.step + steps;
    this.stats.pauses++;
    this.trace(`pause ${node.id} for ${steps} steps`);
  }

  private resume(node: SimProcess): void {
    node.pausedUntil = 0;
    const inbox = node.inbox;
    node.inbox = [];
    this.trace(`${node.id} resumes with ${inbox.length} inputs waiting`);
    // The timer's tick fires among what waited, not necessarily first: a read asked before
    // it must still see the time the pause took (the read lease's clock).
    inbox.push(() => node.scheduler?.onTick?.());
    shuffle(inbox, this.faultPrng);
    for (const input of inbox) {
      if (node.host === null) return;
      input();
    }
  }

  /** Runs `input` on `node` now, or at resume if it is paused; never if it is down. */
  private input(node: SimProcess, input: () => void): void {
    if (node.host === null) return;
    if (node.pausedUntil > 0) node.inbox.push(input);
    else input();
  }

  // ---- network ------------------------------------------------------------------------

  private send(node: SimProcess, incarnation: number, envelope: Envelope): void {
    if (node.incarnation !== incarnation || node.host === null) return; // a dead process sends nothing
    if (envelope.kind === "host") this.stats.forwarded++;
    if (
      !this.network.send(envelope, this.step) &&
      envelope.kind === "raft" &&
      envelope.message.type === MessageType.Snapshot
    ) {
      this.report(node, (handlers) => handlers.onSnapshotSent?.(envelope.to, envelope.groupId, false));
    }
  }

  private report(node: SimProcess, act: (handlers: NodeTransportHandlers) => void): void {
    this.input(node, () => {
      const handlers = node.transport?.handlers;
      if (handlers !== undefined) act(handlers);
    });
  }

  private deliver(): void {
    for (const envelope of this.network.takeDue(this.step)) {
      const target = this.byId.get(envelope.to)!;
      const sender = this.byId.get(envelope.from)!;
      const isSnapshot = envelope.kind === "raft" && envelope.message.type === MessageType.Snapshot;
      if (target.host === null || this.network.isCut(envelope.from, envelope.to)) {
        // The connection is down: the sender's transport says so.
        this.report(sender, (handlers) => {
          if (isSnapshot && envelope.kind === "raft")
            handlers.onSnapshotSent?.(envelope.to, envelope.groupId, false);
          handlers.onUnreachable(envelope.to);
        });
        continue;
      }
      this.input(target, () => {
        const handlers = target.transport?.handlers;
        if (handlers === undefined) return;
        if (envelope.kind === "raft") handlers.onRaft(envelope.from, envelope.groupId, envelope.message);
        else handlers.onHost(envelope.from, envelope.payload);
      });
      if (isSnapshot && envelope.kind === "raft") {
        this.report(sender, (handlers) => handlers.onSnapshotSent?.(envelope.to, envelope.groupId, true));
      }
    }
  }

  // ---- the step -----------------------------------------------------------------------

  private async runStep(): Promise<void> {
    for (const node of this.pendingStarts.splice(0)) await this.start(node);
    for (const lost of this.lostCalls.splice(0)) lost();
    for (const node of this.nodes)
      if (node.pausedUntil > 0 && node.pausedUntil <= this.step) this.resume(node);
    for (const node of this.nodes) {
      if (node.scheduler === null || node.pausedUntil > 0 || node.scheduler.deferred.length === 0) continue;
      const deferred = node.scheduler.deferred;
      node.scheduler.deferred = [];
      for (const run of deferred) run();
    }
    this.deliver();
    this.tickNodes();
    this.syncDisks();
    if (this.phase === "faults") this.clientActions();
    await settle();
    if (this.violation !== undefined) throw this.violation;
    this.checkFailedDisksEnded();
    if (this.step % this.swarm.tickSteps === 0) this.observeRoles();
    this.checkCalls();
  }

  private tickNodes(): void {
    for (const node of this.nodes) {
      if (node.scheduler === null || node.pausedUntil > 0) continue;
      if ((this.step + node.tickPhase) % this.swarm.tickSteps !== 0) continue;
      if (this.phase === "faults" && this.faultPrng.chance(this.swarm.tickSkipRate)) continue;
      node.scheduler.onTick?.();
      for (const call of this.calls) {
        if (call.node === node && !call.settled && call.deadlineMs <= this.nowMs()) call.ticksPastDeadline++;
      }
    }
  }

  private syncDisks(): void {
    for (const node of this.nodes) {
      if (node.host === null || node.pausedUntil > 0 || !node.disk.hasPending) continue;
      if (!this.diskPrng.chance(this.phase === "faults" ? this.swarm.syncRate : 1)) continue;
      const fail = this.phase === "faults" && this.diskPrng.chance(this.swarm.fsyncFailRate);
      if (fail) {
        this.stats.fsyncFailures++;
        this.trace(`${node.id}: fsync fails`);
      }
      node.disk.sync(fail);
    }
  }

  private observeRoles(): void {
    for (const node of this.nodes) {
      if (node.host === null) continue;
      const status = node.host.status(GROUP).raft;
      if (status.role === "leader") this.checker.leaderSeen(node.id, status.term);
    }
  }

  /** A failed fsync ends the process (onFatal), not only the group: no member runs on a failed disk. */
  private checkFailedDisksEnded(): void {
    for (const node of this.nodes) {
      if (node.host !== null && node.disk.failed) {
        throw new InvariantViolation(
          "a failed fsync ends the process",
          `${node.id}'s fsync failed, and the process still runs (no onFatal)`,
        );
      }
    }
  }

  /**
   * Every waiter settles: a call on a running member settles by the first few ticks its
   * member gets after the call's deadline (ticks, not time: a paused or tick-skipping member
   * checks deadlines only when it ticks).
   */
  private checkCalls(): void {
    for (const call of this.calls) {
      if (call.settled || call.lost) {
        this.calls.delete(call);
        continue;
      }
      if (call.ticksPastDeadline > settleGraceTicks) {
        throw new InvariantViolation(
          "every waiter settles",
          `${call.what} on ${call.node.id} is still waiting ${call.ticksPastDeadline} ticks (${this.nowMs() - call.deadlineMs} ms) after its deadline`,
        );
      }
    }
  }

  /** Runs a client call on `node` and hands its outcome to `done` exactly once. */
  private track<T>(
    node: SimProcess,
    what: string,
    timeoutMs: number,
    promise: () => Promise<T>,
    done: (outcome: CallOutcome<T>) => void,
  ): void {
    if (node.host === null) {
      this.lostCalls.push(() => done({ lost: true }));
      return;
    }
    const call: Call = {
      node,
      incarnation: node.incarnation,
      what,
      deadlineMs: this.nowMs() + timeoutMs,
      settled: false,
      lost: false,
      ticksPastDeadline: 0,
      onLost: () => done({ lost: true }),
    };
    this.calls.add(call);
    this.input(node, () => {
      // Deadline from when the member sees the request (a paused member sees it at resume).
      call.deadlineMs = this.nowMs() + timeoutMs;
      promise().then(
        (value) => {
          call.settled = true;
          if (!call.lost) this.guard(() => done({ ok: true, value }));
        },
        (error: unknown) => {
          call.settled = true;
          if (!call.lost) this.guard(() => done({ ok: false, error }));
        },
      );
    });
  }

  private violation: unknown;
  private readonly sink = (error: unknown): void => {
    this.violation ??= error;
  };

  private guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.sink(error);
    }
  }

  /** Outcomes of calls whose member died, delivered at the next step (not inside the crash). */
  private readonly lostCalls: (() => void)[] = [];

  // ---- clients ------------------------------------------------------------------------

  private clientActions(): void {
    const prng = this.clientPrng;
    if (prng.chance(this.swarm.writeRate)) {
      const client = prng.pick(this.clients);
      if (!client.busy) this.write(client);
    }
    if (prng.chance(this.swarm.readRate)) {
      const client = prng.pick(this.clients);
      if (!client.busy) this.read(client);
    }
    if (prng.chance(this.swarm.invalidRate)) this.sendInvalid();
    if (this.bystanderPrng?.chance(this.swarm.bystanderWriteRate)) this.writeBystander(this.bystanderPrng);
  }

  /** One write to the second group through a random live member; its outcome only counts. */
  private writeBystander(prng: Prng): void {
    const alive = this.nodes.filter((node) => node.host !== null);
    if (alive.length === 0) return;
    const target = prng.pick(alive);
    // One group needs no draw: seeds of one bystander group replay as before.
    const groupId =
      this.swarm.bystanderGroups > 1
        ? BYSTANDER_GROUP + prng.int(0, this.swarm.bystanderGroups - 1)
        : BYSTANDER_GROUP;
    const requestId = this.bystanderWrites++;
    const command = encodeCommand({
      op: Op.Set,
      key: `b${prng.int(1, this.swarm.keys)}`,
      value: new TextEncoder().encode(`bystander-${requestId}`),
      expireInMs: 0,
      deleteInMs: 0,
      origin: { clientId: BYSTANDER_CLIENT_ID, requestId },
    });
    const timeoutMs = this.swarm.requestTimeoutTicks * this.tickMs;
    this.track(
      target,
      `bystander write ${requestId}`,
      timeoutMs,
      () => target.host!.propose(groupId, command, { timeoutMs }),
      (outcome) => {
        if (!("lost" in outcome) && outcome.ok) this.stats.bystanderWritesOk++;
      },
    );
  }

  private write(client: SimClient): void {
    const prng = this.clientPrng;
    client.busy = true;
    const requestId = client.seq++;
    const writeId = `c${client.id}-${requestId}`;
    const key = `k${prng.int(1, this.swarm.keys)}`;
    const attempt = (n: number, target: SimProcess): void => {
      const attemptId = `${writeId}#${n}`;
      this.checker.registerAttempt(attemptId, writeId, key);
      this.trace(`client ${client.id}: ${attemptId} (${key}) to ${target.id}`);
      const command = encodeCommand({
        op: Op.Set,
        key,
        value: new TextEncoder().encode(attemptId),
        expireInMs: 0,
        deleteInMs: 0,
        origin: { clientId: client.clientId, requestId },
      });
      const timeoutMs = this.swarm.requestTimeoutTicks * this.tickMs;
      this.track(
        target,
        `write ${attemptId}`,
        timeoutMs,
        () =>
          this.swarm.writesThroughReceivers === true
            ? this.proposeThroughReceiver(target, attemptId, command, timeoutMs)
            : target.host!.propose(GROUP, command, { timeoutMs }),
        (outcome) => {
          if ("lost" in outcome) return retry(n, "its member is down");
          if (outcome.ok) {
            this.trace(`client ${client.id}: ${attemptId} ok on ${target.id}`);
            this.checker.writeOk(attemptId, this.step);
            this.stats.writesOk++;
            client.busy = false;
            return;
          }
          const error = outcome.error;
          if (!isDkvError(error)) throw error;
          if (error.outcome === "not-applied") {
            this.trace(`client ${client.id}: ${attemptId} not applied on ${target.id}: ${error.message}`);
            this.checker.notApplied(attemptId);
            this.stats.writesNotApplied++;
          } else {
            this.stats.writesUnknown++;
          }
          retry(n, `${error.code}/${error.outcome}`);
        },
      );
    };
    const retry = (n: number, why: string): void => {
      if (n >= attemptsMax || this.phase !== "faults") {
        client.busy = false;
        return;
      }
      // Through another member, with the same request id: it applies at most once.
      const others = this.nodes.filter((node) => node.host !== null);
      if (others.length === 0) {
        client.busy = false;
        return;
      }
      const next = this.clientPrng.pick(others);
      this.stats.retries++;
      this.trace(`client ${client.id} retries ${writeId} on ${next.id} (${why})`);
      attempt(n + 1, next);
    };
    const target = this.byId.get(client.guess)!;
    if (target.host === null || prng.chance(0.1)) client.guess = prng.pick(this.nodes).id;
    const first = this.byId.get(client.guess)!;
    if (first.host === null) {
      client.busy = false;
      return;
    }
    attempt(1, first);
  }

  /** `host.proposeTo` with a receiver that must be told exactly once, as a promise. */
  private proposeThroughReceiver(
    node: SimProcess,
    attemptId: string,
    command: Uint8Array,
    timeoutMs: number,
  ): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      let told = 0;
      node.host!.proposeTo(GROUP, command, timeoutMs, {
        proposalSettled: (error, result) => {
          if (++told > 1) {
            this.sink(
              new InvariantViolation(
                "every waiter settles once",
                `write ${attemptId} on ${node.id}: its receiver was told ${told} times (now ${error === undefined ? "ok" : `${error.code}/${error.outcome}`})`,
              ),
            );
            return;
          }
          if (error === undefined) resolve(result);
          else reject(error);
        },
      });
    });
  }

  private read(client: SimClient): void {
    const node = this.clientPrng.pick(this.nodes);
    if (node.host === null || node.machine === null) return;
    client.busy = true;
    const key = `k${this.clientPrng.int(1, this.swarm.keys)}`;
    const startStep = this.step;
    const machine = node.machine;
    const timeoutMs = this.swarm.requestTimeoutTicks * this.tickMs;
    const decoder = new TextDecoder();
    this.trace(`client ${client.id}: read ${key} on ${node.id}`);
    this.track(
      node,
      `read ${key}`,
      timeoutMs,
      () => node.host!.read(GROUP, (nowMs) => machine.inner.db.get(key, nowMs)?.slice(), { timeoutMs }),
      (outcome) => {
        client.busy = false;
        if ("lost" in outcome || !outcome.ok) return;
        this.stats.reads++;
        const value = outcome.value === undefined ? undefined : decoder.decode(outcome.value);
        this.checker.readDone(node.id, key, value, startStep);
      },
    );
  }

  /** A follower forwards a command that does not decode: the leader must refuse it. */
  private sendInvalid(): void {
    const followers = this.nodes.filter(
      (node) =>
        node.host !== null && node.pausedUntil === 0 && node.host.status(GROUP).raft.role !== "leader",
    );
    if (followers.length === 0) return;
    const node = this.clientPrng.pick(followers);
    const bytes = new Uint8Array(40);
    bytes[0] = 0xee; // no such op
    new DataView(bytes.buffer).setFloat64(8, this.step, true);
    bytes[16] = this.clientPrng.int(0, 255);
    const tag = Buffer.from(bytes).toString("hex");
    this.invalidTargets.set(tag, node.id);
    const timeoutMs = this.swarm.requestTimeoutTicks * this.tickMs;
    this.track(
      node,
      "invalid command",
      timeoutMs,
      () => node.host!.propose(GROUP, bytes, { timeoutMs }),
      (outcome) => {
        if (
          !("lost" in outcome) &&
          !outcome.ok &&
          isDkvError(outcome.error) &&
          outcome.error.code === "BAD_REQUEST"
        )
          this.stats.invalidRefused++;
      },
    );
  }

  // ---- faults -------------------------------------------------------------------------

  private leader(): SimProcess | null {
    let best: SimProcess | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      if (node.host === null) continue;
      const status = node.host.status(GROUP).raft;
      if (status.role === "leader" && status.term > bestTerm) {
        best = node;
        bestTerm = status.term;
      }
    }
    return best;
  }

  private faultActions(): void {
    const prng = this.faultPrng;
    const alive = this.nodes.filter((node) => node.host !== null);
    if (prng.chance(this.swarm.crashRate) && alive.length > 0) this.crash(prng.pick(alive), "fault");
    if (prng.chance(this.swarm.leaderCrashRate)) {
      const leader = this.leader();
      if (leader !== null) this.crash(leader, "fault aimed at the leader");
    }
    if (prng.chance(this.swarm.restartRate)) {
      const dead = this.nodes.filter((node) => node.host === null);
      if (dead.length > 0) this.pendingStarts.push(prng.pick(dead));
    }
    if (prng.chance(this.swarm.pauseRate)) {
      const running = alive.filter((node) => node.pausedUntil === 0 && node.host !== null);
      const leader = this.leader();
      const target =
        leader !== null && leader.pausedUntil === 0 && prng.chance(0.6)
          ? leader
          : running.length > 0
            ? prng.pick(running)
            : null;
      if (target !== null) {
        const timeoutSteps = this.swarm.electionTicks * this.swarm.tickSteps;
        this.pause(target, prng.int(timeoutSteps, 4 * timeoutSteps));
      }
    }
    const ids = this.nodes.map((node) => node.id);
    if (prng.chance(this.swarm.partitionRate)) {
      this.network.heal();
      const shuffled = ids.slice();
      shuffle(shuffled, prng);
      const cut = prng.int(1, shuffled.length - 1);
      if (prng.chance(0.5)) {
        this.network.partition(shuffled.slice(0, cut), shuffled.slice(cut));
        this.trace(`partition ${shuffled.slice(0, cut)} | ${shuffled.slice(cut)}`);
      } else {
        const node = shuffled[0]!;
        for (const other of shuffled.slice(1)) this.network.cutLink(node, other);
        this.trace(`one-way: ${node} cannot send`);
      }
    }
    if (prng.chance(this.swarm.leaderIsolateRate)) {
      const leader = this.leader();
      if (leader !== null) {
        this.network.heal();
        this.network.partition(
          [leader.id],
          ids.filter((id) => id !== leader.id),
        );
        this.trace(`isolate the leader ${leader.id}`);
      }
    }
    if (this.network.cutLinks > 0 && prng.chance(this.swarm.healRate)) {
      this.network.heal();
      this.trace("network healed");
    }
    if (prng.chance(this.swarm.transferRate)) {
      const leader = this.leader();
      if (leader?.host && leader.pausedUntil === 0) {
        const to = prng.pick(ids.filter((id) => id !== leader.id));
        this.trace(`transfer leadership ${leader.id} → ${to}`);
        leader.host.transferLeadership(GROUP, to);
      }
    }
  }

  private pendingStarts: SimProcess[] = [];

  // ---- liveness -----------------------------------------------------------------------

  /** Heal everything and restart every member: a write must commit and every member must converge. */
  private async liveness(): Promise<void> {
    for (const node of this.pendingStarts.splice(0)) await this.start(node);
    this.phase = "liveness";
    this.network.heal();
    this.network.faults = calmNetwork;
    for (const node of this.nodes) {
      if (node.pausedUntil > 0) this.resume(node);
      await this.start(node);
    }
    this.trace("liveness phase: network healed, every member running");
    let barrier: { done: boolean; ok: boolean } | null = null;
    let attempts = 0;
    const end = this.step + livenessStepsMax;
    for (; this.step < end; this.step++) {
      await this.runStep();
      if (barrier === null || (barrier.done && !barrier.ok)) {
        const leader = this.leader();
        if (leader === null || leader.host === null) continue;
        const state = { done: false, ok: false };
        barrier = state;
        const writeId = `barrier-${attempts++}`;
        const attemptId = `${writeId}#1`;
        this.checker.registerAttempt(attemptId, writeId, "barrier");
        const command = encodeCommand({
          op: Op.Set,
          key: "barrier",
          value: new TextEncoder().encode(attemptId),
          expireInMs: 0,
          deleteInMs: 0,
          origin: undefined,
        });
        const timeoutMs = 4 * this.swarm.electionTicks * this.tickMs;
        this.track(
          leader,
          `barrier ${attemptId}`,
          timeoutMs,
          () => leader.host!.propose(GROUP, command, { timeoutMs }),
          (outcome) => {
            state.done = true;
            state.ok = !("lost" in outcome) && outcome.ok;
            if (state.ok) this.checker.writeOk(attemptId, this.step);
          },
        );
        continue;
      }
      if (barrier.ok && this.converged()) {
        // Every call made on a running member must have settled by now.
        for (
          let i = 0;
          i <
            settleGraceTicks * this.swarm.tickSteps + this.swarm.requestTimeoutTicks * this.swarm.tickSteps &&
          this.calls.size > 0;
          i++, this.step++
        ) {
          await this.runStep();
        }
        this.checkFinalState();
        return;
      }
    }
    const states = this.nodes.map((node) => {
      if (node.host === null) return `${node.id}:down`;
      const status = node.host.status(GROUP);
      return `${node.id}:${status.raft.role} t${status.raft.term} commit ${status.raft.commit} applied ${status.appliedIndex} last ${status.raft.lastIndex}`;
    });
    throw new InvariantViolation(
      "liveness",
      `no convergence within ${livenessStepsMax} steps after healing (${states.join("; ")})`,
    );
  }

  private converged(): boolean {
    const target = this.checker.maxAppliedIndex;
    for (const node of this.nodes) {
      if (node.host === null || node.machine === null) return false;
      if (node.host.status(GROUP).appliedIndex < target || node.machine.lastIndex < target) return false;
    }
    return true;
  }

  /** Every acknowledged write survives: each member's dstore holds exactly the committed state. */
  private checkFinalState(): void {
    for (const node of this.nodes) {
      const machine = node.machine!;
      const expected = this.checker.expectedState(machine.lastIndex);
      for (const [key, attempt] of expected) {
        const held = machine.inner.db.get(key, Number.MAX_SAFE_INTEGER / 2);
        const value = held === undefined ? undefined : new TextDecoder().decode(held);
        if (value !== attempt) {
          throw new InvariantViolation(
            "acknowledged writes survive",
            `${node.id} holds ${key}=${value}; the log says ${attempt}`,
          );
        }
      }
    }
    for (const { tag, term } of this.checker.invalidApplied) {
      const target = this.invalidTargets.get(tag);
      // Proposed locally on its target while that member led (not forwarded): not validated, by design.
      // A term whose leader no observation caught cannot be judged.
      const leader = this.checker.leaderOf(term);
      if (target === undefined || (leader !== undefined && leader !== target)) {
        throw new InvariantViolation(
          "forwarded commands are validated",
          `an invalid command sent to ${target} entered the log in term ${term} (led by ${this.checker.leaderOf(term)})`,
        );
      }
    }
  }
}

function diskHolds(disk: SimDisk, groupId: number, index: number, term: number): boolean {
  // The last frame of the group that mentions `index` decides what the disk holds there.
  for (let i = disk.synced.length - 1; i >= 0; i--) {
    const frame = disk.synced[i]!;
    if (frame.groupId !== groupId) continue;
    if (frame.kind === "snapshot") {
      if (frame.snapshot.meta.index >= index) return true; // covered by a snapshot: committed
      continue;
    }
    const first = frame.entries[0];
    if (first === undefined || first.index > index) continue;
    const entry = frame.entries[index - first.index];
    if (entry === undefined) return false; // truncated at or before index, nothing after
    return entry.term === term;
  }
  return false;
}

/** A DkvError from this tree or from a mutated copy of it (another class, the same shape). */
function isDkvError(error: unknown): error is { code: string; outcome: string; message: string } {
  return (
    error instanceof Error &&
    error.name === "DkvError" &&
    typeof (error as { code?: unknown }).code === "string" &&
    typeof (error as { outcome?: unknown }).outcome === "string"
  );
}

function validateProposal(command: Uint8Array): DkvError | null {
  try {
    decodeCommand(command);
    return null;
  } catch (error) {
    return new DkvError("BAD_REQUEST", `invalid command: ${String(error)}`);
  }
}

/** Lets every microtask (promise continuation) run: the step's I/O is done. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export async function runHostSimulation(options: HostSimOptions): Promise<HostSimStats> {
  return new HostSimulation(options).run();
}

export { payloadOf };

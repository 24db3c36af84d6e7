import { DkvError } from "../../errors.ts";
import type { ReadState } from "../core/types.ts";
import type { GroupEnv } from "./group-env.ts";
import { assert } from "./runtime.ts";
import type { StageTrace } from "./types.ts";

/** What the reads need of their group's environment. */
type ReadsEnv = Pick<GroupEnv, "nowMs" | "monotonicMs" | "electionTicks" | "readsPendingMax" | "observer">;

/** What the reads ask of their group's RaftNode. */
export interface ReadIndexSource {
  observeTime(wallMs: number, monotonicMs: number): void;
  readIndex(requestId: string): void;
}

interface ReadWaiter {
  evaluate(nowMs: number): void;
  reject(error: DkvError): void;
  deadlineMs: number;
  timeoutMs: number;
  trace: StageTrace | undefined;
}

/**
 * Reads that share one read index: every read that arrived while the previous batch's
 * read index was being taken (or in the same turn) goes out together as one ReadIndex
 * request, so one heartbeat round (on a follower: one forwarded request) serves them all,
 * as etcd's server does. A batch is asked only after each of its reads arrived, so the
 * index it gets is linearizable for all of them.
 */
interface ReadBatch {
  readonly id: string;
  readonly waiters: ReadWaiter[];
  /** Ticks since the read index was (re)requested; it is asked again after an election timeout. */
  ticksWaited: number;
  /** Set once the read index is known; the batch waits for apply to reach it. */
  state: ReadState | undefined;
  /** Asked again (its round may be lost): no longer holds back the queued reads. */
  reasked: boolean;
}

/**
 * Read batches whose read index is being taken at once (no state yet, not re-asked);
 * reads arriving meanwhile wait for the next batch. One, as etcd's server: the fewest
 * heartbeat rounds per read, for at most one round more of waiting (a read that just
 * missed a round waits for it, then for its own). Two was not measurably different on
 * a loaded 2-core machine.
 */
const READ_ROUNDS_IN_FLIGHT_MAX = 1;

/**
 * One group's linearizable reads (RaftGroup.read): queued, asked for a read index in
 * batches, expired at their deadlines (checked in ticks), asked again when a round may be
 * lost, and answered once the group has applied their index. The group tells it what
 * happens (ticks, read states, applies, leader changes, failure); it never touches the
 * group's other state.
 */
export class GroupReads {
  /** Read batches asked for a read index (in asking order), by request id. */
  private readonly batches = new Map<string, ReadBatch>();
  /** Reads not yet asked for: they go out as one batch once fewer rounds are in flight. */
  private queued: ReadWaiter[] = [];
  /** Reads waiting here in all (queued and in batches): bounded by readsPendingMax. */
  private count = 0;
  private nextId = 0;

  /**
   * `idPrefix`: read ids are `<self>/<incarnation>-<n>`, so a leader's answer to a read
   * forwarded by an earlier incarnation of this member (queued for it, delivered after a
   * restart) cannot match a new read, whose index it may predate.
   */
  constructor(
    private readonly groupId: number,
    private readonly idPrefix: string,
    private readonly env: ReadsEnv,
    private readonly node: ReadIndexSource,
  ) {}

  /** Queues a read for the next batch; refused (UNAVAILABLE) past readsPendingMax. */
  add<T>(evaluate: (nowMs: number) => T, timeoutMs: number): Promise<T> {
    if (this.count >= this.env.readsPendingMax) {
      return Promise.reject(
        new DkvError(
          "UNAVAILABLE",
          `group ${this.groupId} has ${this.count} reads waiting; retry later or lower the load`,
        ),
      );
    }
    const deadlineMs = this.env.monotonicMs() + timeoutMs;
    const trace = this.env.observer?.currentTrace?.();
    if (trace !== undefined) trace.readRequestedMs = this.env.monotonicMs();
    const promise = new Promise<T>((resolve, reject) => {
      this.queued.push({
        evaluate: (nowMs) => {
          try {
            resolve(evaluate(nowMs));
          } catch (error) {
            reject(error);
          }
        },
        reject,
        deadlineMs,
        timeoutMs,
        trace,
      });
    });
    this.count++;
    return promise;
  }

  /**
   * Asks one read index for every queued read, unless READ_ROUNDS_IN_FLIGHT_MAX batches are
   * still waiting for theirs (then the queue goes out when one is answered). A batch that
   * waited an election timeout is asked again and no longer counts: its round may be lost.
   */
  askQueued(): void {
    if (this.queued.length === 0) return;
    let inFlight = 0;
    for (const batch of this.batches.values()) {
      if (batch.state === undefined && !batch.reasked) inFlight++;
    }
    if (inFlight >= READ_ROUNDS_IN_FLIGHT_MAX) return;
    const id = `${this.idPrefix}-${this.nextId++}`;
    this.batches.set(id, { id, waiters: this.queued, ticksWaited: 0, state: undefined, reasked: false });
    this.queued = [];
    // Taken after every read of the batch arrived: a lease that holds now covers them all.
    this.node.observeTime(this.env.nowMs(), this.env.monotonicMs());
    this.node.readIndex(id);
  }

  /**
   * A tick: a read index request unanswered for an election timeout is asked again (it can
   * be dropped silently: no leader, a leader change).
   */
  tick(): void {
    for (const batch of this.batches.values()) {
      if (batch.state === undefined && ++batch.ticksWaited >= this.env.electionTicks) this.reask(batch);
    }
  }

  /** A new leader: read indexes asked of the old one are lost with it, ask it now. */
  reaskUnanswered(): void {
    for (const batch of this.batches.values()) if (batch.state === undefined) this.reask(batch);
  }

  /** The read indexes a Ready brought (one per batch, once). */
  indexesKnown(states: readonly ReadState[]): void {
    const tracing = this.env.observer?.currentTrace !== undefined;
    for (const state of states) {
      const batch = this.batches.get(state.requestId);
      if (batch === undefined || batch.state !== undefined) continue;
      batch.state = state;
      if (tracing) {
        const nowMs = this.env.monotonicMs();
        for (const read of batch.waiters) if (read.trace !== undefined) read.trace.readIndexMs = nowMs;
      }
    }
  }

  /**
   * Answers every batch whose read index is applied (`appliedIndex`), at the leader's time
   * of the read but not before `appliedTimeMs` (the applied state may hold writes stamped
   * after the read index).
   */
  answer(appliedIndex: number, appliedTimeMs: number): void {
    for (const [id, batch] of this.batches) {
      const state = batch.state;
      if (state === undefined || state.index > appliedIndex) continue;
      this.batches.delete(id);
      this.count -= batch.waiters.length;
      // A peer whose transport does not carry the leader's time (0) is read at our clock.
      const readTimeMs = state.timeMs > 0 ? state.timeMs : this.env.nowMs();
      const evaluateAtMs = Math.max(readTimeMs, appliedTimeMs);
      const appliedMs = this.env.observer?.currentTrace === undefined ? 0 : this.env.monotonicMs();
      for (const read of batch.waiters) {
        if (read.trace !== undefined) read.trace.appliedMs = appliedMs;
        read.evaluate(evaluateAtMs);
      }
    }
  }

  /** Fails every read waiting here with `error` (the group stopped). */
  failAll(error: DkvError): void {
    const readError = new DkvError(error.code, error.message);
    for (const batch of this.batches.values()) for (const read of batch.waiters) read.reject(readError);
    for (const read of this.queued) read.reject(readError);
    this.batches.clear();
    this.queued = [];
    this.count = 0;
  }

  /** Asks `batch`'s read index again under the same id (the core answers an id once per round). */
  private reask(batch: ReadBatch): void {
    batch.ticksWaited = 0;
    batch.reasked = true;
    this.node.observeTime(this.env.nowMs(), this.env.monotonicMs());
    this.node.readIndex(batch.id);
  }

  /** Reads past their deadline (monotonic ms) fail with TIMEOUT. */
  expire(nowMs: number): void {
    const expired = (read: ReadWaiter) => {
      if (read.deadlineMs > nowMs) return false;
      read.reject(
        new DkvError(
          "TIMEOUT",
          `group ${this.groupId}: no read index within ${read.timeoutMs} ms (no leader reachable, or no quorum?); retry once the cluster has a leader and a majority up (dkv cluster status shows both)`,
        ),
      );
      return true;
    };
    const before = this.count;
    for (const [id, batch] of this.batches) {
      if (!batch.waiters.some((read) => read.deadlineMs <= nowMs)) continue;
      const kept = batch.waiters.filter((read) => !expired(read));
      this.count -= batch.waiters.length - kept.length;
      if (kept.length === 0) this.batches.delete(id);
      else batch.waiters.splice(0, batch.waiters.length, ...kept);
    }
    if (this.queued.some((read) => read.deadlineMs <= nowMs)) {
      const kept = this.queued.filter((read) => !expired(read));
      this.count -= this.queued.length - kept.length;
      this.queued = kept;
    }
    if (this.count < 0 || this.count > before)
      assert(false, `group ${this.groupId}: read count ${this.count}`);
  }
}

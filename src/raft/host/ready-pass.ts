/**
 * The Ready passes of every group of a host (instead of one Ready loop per group). A group
 * with work asks for a pass; a pass, run at the end of the current task (a microtask, so
 * everything that arrived in this turn joins it), starts one Ready in each group that
 * asked. A Ready that must persist first writes into the shared log's next batch (one
 * write and one fsync for every group's Readys queued meanwhile, whose commits all get the
 * batch's one promise); the pass goes on without waiting for it. Once a batch is durable,
 * one synchronous stretch finishes all its groups' Readys (acks, commits, applies,
 * answers) and starts every Ready asked for meanwhile.
 *
 * So a pass never waits for another group's fsync: a leader's appends go out when its
 * proposals arrive, a follower writes an append into the next batch when it arrives, and
 * a commit (nothing to persist) is applied and answered at once. (Earlier, while one batch
 * was being written, everything that arrived waited for it before its own pass: a write
 * spread over many groups then waited for an unrelated fsync at the leader, at the
 * follower and again at the leader, and a member's batch carried ~16 writes instead of
 * ~50.) Each stretch runs between the host's `hold` and `release` (see PassHooks), so what
 * all groups send in it leaves as one frame per peer.
 */

/** Passes run back to back in one stretch before pending I/O goes first (a group asking again in each). */
const PASSES_MAX = 64;

/**
 * What startReady started: false, nothing (no Ready, one in flight, or one that runs
 * detached: a snapshot install, which must not hold up every other group); true, a Ready
 * that needs no wait; or the promise of its persistence (it may reject: finishReady then
 * gets the error). Groups whose Readys went into one log batch return the same promise
 * (the log's group commit resolves a batch with one), and the pass waits for each
 * distinct promise once. Either way the group asks for another pass itself when it has
 * more work.
 */
export type ReadyStart = boolean | Promise<void>;

/** Why a Ready's persistence failed (so that an `undefined` rejection is still a failure). */
export interface PersistFailure {
  error: unknown;
}

/** What a pass needs of a group (RaftGroup). */
export interface ReadyParticipant {
  /** Starts one Ready (up to its persistence) if the group has one and none is in flight. */
  startReady(): ReadyStart;
  /**
   * Finishes the Ready startReady started (sends, apply, answers), or fails the group if
   * its persistence failed; never throws.
   */
  finishReady(failure?: PersistFailure): void;
}

/**
 * Around every synchronous stretch of a pass: `hold` before, `release` after. The host
 * holds the groups' outgoing messages meanwhile and sends them at `release`, so what all
 * groups send in a stretch (and the answers to forwarded proposals that their applies
 * settle) leaves together: one frame per peer (see raft-host.ts).
 */
export interface PassHooks {
  hold(): void;
  release(): void;
}

const noHooks: PassHooks = { hold() {}, release() {} };

export class ReadyPasses {
  /** Groups that asked for a pass: at most one entry per group, so bounded by the groups hosted. */
  private readonly wanting = new Set<ReadyParticipant>();
  /**
   * Groups whose Ready waits for its persistence, by the promise it waits for (one per log
   * batch): bounded by the groups hosted, each having at most one Ready in flight.
   */
  private readonly awaiting = new Map<Promise<void>, ReadyParticipant[]>();
  /** Batches that became durable (or failed), to finish in the next stretch; bounded as awaiting. */
  private settled: { groups: ReadyParticipant[]; failure: PersistFailure | undefined }[] = [];
  /** A stretch is queued (a microtask, or `later` after PASSES_MAX passes). */
  private stretchQueued = false;
  private inStretch = false;
  /**
   * Passes since pending I/O last ran: counted across stretches chained by microtasks (a
   * batch that is durable at once queues the next stretch as a microtask), reset by a
   * `later` queued at the first pass, so a chain that never lets I/O in stops at PASSES_MAX.
   */
  private passesSinceIo = 0;
  private readonly ioRan = (): void => {
    this.passesSinceIo = 0;
  };

  /** `later` runs a function after pending I/O (the host scheduler's deferral). */
  constructor(
    private readonly later: (run: () => void) => void,
    private readonly hooks: PassHooks = noHooks,
  ) {}

  /** `group` has work: it gets a Ready in this turn's pass (or the running stretch's next). */
  request(group: ReadyParticipant): void {
    this.wanting.add(group);
    this.queueStretch();
  }

  private queueStretch(): void {
    // During a stretch its own loop takes new requests.
    if (this.stretchQueued || this.inStretch) return;
    this.stretchQueued = true;
    // A microtask: everything that arrives in this turn joins the same pass.
    queueMicrotask(this.stretch);
  }

  /**
   * One synchronous stretch: finish the Readys of the batches that became durable, then
   * run passes (start a Ready in each group that asked; one with nothing to persist is
   * finished at once, and a group that has another Ready then starts it in the next pass)
   * until no group asks — at most PASSES_MAX, then pending I/O goes first.
   */
  private readonly stretch = (): void => {
    this.stretchQueued = false;
    this.inStretch = true;
    this.hooks.hold();
    try {
      const settled = this.settled;
      this.settled = [];
      for (const { groups, failure } of settled) for (const group of groups) group.finishReady(failure);
      while (this.passesSinceIo < PASSES_MAX && this.wanting.size > 0) {
        if (this.passesSinceIo++ === 0) this.later(this.ioRan);
        this.pass();
      }
    } finally {
      this.inStretch = false;
      this.hooks.release();
    }
    if (this.wanting.size > 0) {
      // Work left after PASSES_MAX passes since I/O last ran: let it in first (ioRan,
      // queued before, resets the count).
      this.stretchQueued = true;
      this.later(this.stretch);
    } else if (this.settled.length > 0) this.queueStretch();
  };

  private pass(): void {
    const groups = [...this.wanting];
    this.wanting.clear();
    const now: ReadyParticipant[] = [];
    for (const group of groups) {
      const begun = group.startReady();
      if (begun === false) continue;
      if (begun === true) {
        now.push(group);
        continue;
      }
      // Usually every group of a pass (and of the passes until that batch is written)
      // shares its log batch's promise: one wait.
      const cohort = this.awaiting.get(begun);
      if (cohort !== undefined) cohort.push(group);
      else {
        this.awaiting.set(begun, [group]);
        begun.then(
          () => this.durable(begun, undefined),
          (error: unknown) => this.durable(begun, { error }),
        );
      }
    }
    for (const group of now) group.finishReady();
  }

  /** `batch` is durable (or failed): its groups finish in the next stretch, with any batch settled meanwhile. */
  private durable(batch: Promise<void>, failure: PersistFailure | undefined): void {
    const groups = this.awaiting.get(batch);
    if (groups === undefined) return;
    this.awaiting.delete(batch);
    this.settled.push({ groups, failure });
    this.queueStretch();
  }
}

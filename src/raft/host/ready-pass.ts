/**
 * One Ready pass at a time for every group of the host (instead of one Ready loop per
 * group). A group with work asks for a pass; the pass starts one Ready in each group that
 * asked (persisting all of them into the same shared-log batch, so one write and one
 * fsync), and while it waits for that fsync everything that arrives for any group gathers
 * for the next pass. Once it is durable, one synchronous stretch finishes all those
 * Readys (acks, commits, applies, answers) and starts the next pass's, between the host's
 * `hold` and `release` (see PassHooks): so what a member sends between two fsyncs — a
 * follower's acks, a leader's appends and commits, the replies of all groups — leaves in
 * one socket write per peer, as one busy group's already did.
 */

/** Passes run back to back before yielding to pending I/O (one that fsyncs yields anyway). */
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
  private running = false;
  /** A start is queued (a microtask, or `later` after PASSES_MAX passes). */
  private startQueued = false;

  /** `later` runs a function after pending I/O (the host scheduler's deferral). */
  constructor(
    private readonly later: (run: () => void) => void,
    private readonly hooks: PassHooks = noHooks,
  ) {}

  /** `group` has work: it gets a Ready in the next pass (this turn's, if none is running). */
  request(group: ReadyParticipant): void {
    this.wanting.add(group);
    if (this.running || this.startQueued) return;
    this.startQueued = true;
    // A microtask: everything that arrives in this turn joins the same pass.
    queueMicrotask(this.start);
  }

  private readonly start = (): void => {
    this.startQueued = false;
    if (this.running) return;
    this.running = true;
    void this.run();
  };

  /**
   * Each step: wait until what the last pass persisted is durable, then in one synchronous
   * stretch finish those groups' Readys (acks, commits, applies, answers) and start the
   * next pass's (appends, persistence) — so what a member sends after one fsync and
   * before the next leaves in one flush per peer. A Ready with nothing to wait for is
   * finished in the stretch that started it (it must not wait for others' fsync), and a
   * group that has another Ready then starts it in the same stretch.
   */
  private async run(): Promise<void> {
    let waiting: ReadyParticipant[] = [];
    // The distinct persistence promises of `waiting`, and for each group the index of its own.
    let waits: Promise<void>[] = [];
    let waitOf: number[] = [];
    let passes = 0;
    try {
      do {
        const failures = waits.length > 0 ? await settled(waits) : undefined;
        const finishing = waiting;
        const finishingWaitOf = waitOf;
        waiting = [];
        waits = [];
        waitOf = [];
        this.hooks.hold();
        try {
          for (let i = 0; i < finishing.length; i++)
            finishing[i]!.finishReady(failures?.[finishingWaitOf[i]!]);
          // Bounded by PASSES_MAX passes.
          while (passes < PASSES_MAX && this.wanting.size > 0) {
            passes++;
            const groups = [...this.wanting];
            this.wanting.clear();
            const now: ReadyParticipant[] = [];
            for (const group of groups) {
              const begun = group.startReady();
              if (begun === false) continue;
              if (begun === true) now.push(group);
              else {
                waiting.push(group);
                // Usually every group of a pass shares its log batch's promise: one wait.
                if (waits.length === 0 || waits[waits.length - 1] !== begun) waits.push(begun);
                waitOf.push(waits.length - 1);
              }
            }
            for (const group of now) group.finishReady();
          }
        } finally {
          this.hooks.release();
        }
      } while (waiting.length > 0);
    } finally {
      this.running = false;
    }
    if (this.wanting.size === 0 || this.startQueued) return;
    // Work left after PASSES_MAX passes without an fsync: let pending I/O in first.
    this.startQueued = true;
    this.later(this.start);
  }
}

/** Waits for every promise; for each, undefined if it resolved, or why it rejected. */
async function settled(waits: readonly Promise<void>[]): Promise<(PersistFailure | undefined)[]> {
  if (waits.length === 1) {
    try {
      await waits[0];
      return [undefined];
    } catch (error) {
      return [{ error }];
    }
  }
  const results = await Promise.allSettled(waits);
  return results.map((result) => (result.status === "rejected" ? { error: result.reason } : undefined));
}

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
 * that needs no wait; or a promise (never rejects) of its persistence. Either way the
 * group asks for another pass itself when it has more work.
 */
export type ReadyStart = boolean | Promise<void>;

/** What a pass needs of a group (RaftGroup). */
export interface ReadyParticipant {
  /** Starts one Ready (up to its persistence) if the group has one and none is in flight. */
  startReady(): ReadyStart;
  /** Finishes the Ready startReady started (sends, apply, answers); never throws. */
  finishReady(): void;
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
    let waits: Promise<void>[] = [];
    let passes = 0;
    try {
      do {
        if (waits.length > 0) await Promise.all(waits);
        const finishing = waiting;
        waiting = [];
        waits = [];
        this.hooks.hold();
        try {
          for (const group of finishing) group.finishReady();
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
                waits.push(begun);
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

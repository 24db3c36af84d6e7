/**
 * Ready stretches for every group of the host (instead of one Ready loop per group). A
 * group with work asks; at the end of the task a stretch starts one Ready in each group
 * that asked, persisting all of them into the same shared-log batch (one write and one
 * fsync). Once that is durable, one synchronous stretch finishes all those Readys (acks,
 * commits, applies, answers) and starts the Readys of whatever groups asked meanwhile, between
 * the host's `hold` and `release` (see PassHooks): so what a member sends in a stretch —
 * a follower's acks, a leader's appends and commits, the replies of all groups — leaves
 * in one socket write per peer.
 *
 * A group that asks while other groups' Readys wait for an fsync does not wait for it:
 * see `stretch`. (A group has at most one Ready in flight: `startReady` returns false
 * while one is.)
 */

/** Rounds of starts run back to back in one stretch before yielding to pending I/O. */
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
  /** Groups that asked for a Ready: at most one entry per group, so bounded by the groups hosted. */
  private readonly wanting = new Set<ReadyParticipant>();
  /** A start is queued (a microtask, or `later` after PASSES_MAX rounds). */
  private startQueued = false;
  /** The queued start waits for `later` (PASSES_MAX rounds ran): until it runs, stretches only finish. */
  private deferred = false;
  /** A stretch runs: what groups ask for meanwhile joins its next round. */
  private inStretch = false;

  /** `later` runs a function after pending I/O (the host scheduler's deferral). */
  constructor(
    private readonly later: (run: () => void) => void,
    private readonly hooks: PassHooks = noHooks,
  ) {}

  /** `group` has work: it gets a Ready in a stretch at the end of this task. */
  request(group: ReadyParticipant): void {
    this.wanting.add(group);
    if (this.inStretch || this.startQueued) return;
    this.startQueued = true;
    // A microtask: everything that arrives in this task joins the same stretch.
    queueMicrotask(this.start);
  }

  private readonly start = (): void => {
    this.startQueued = false;
    this.deferred = false;
    if (this.wanting.size > 0) this.stretch(NO_GROUPS);
  };

  /**
   * One synchronous stretch between `hold` and `release`: finish the Readys whose
   * persistence just became durable (`finishing`), then start a Ready in every group that
   * asked. A Ready with nothing to wait for is finished in the same stretch (and a group
   * that then has another starts it here too, up to PASSES_MAX rounds); the others are
   * finished together in one later stretch once what they persisted is durable.
   *
   * A group's Ready starts as soon as it asks, even while other groups' Readys wait for
   * an fsync: its persistence joins the shared log's next batch (group-commit.ts writes
   * one batch at a time, so this costs no extra fsync while one is in flight), a leader's
   * appends leave at once (its followers write them meanwhile), and a Ready that needs no
   * fsync (a commit: apply and answer) does not wait for one that is not its own. Waiting
   * for the fsync in flight instead cost writes spread over many groups up to one fsync
   * of latency per step (leader append, follower append, commit), where one busy group's
   * steps line up with the fsyncs anyway.
   */
  private stretch(finishing: readonly ReadyParticipant[]): void {
    const waiting: ReadyParticipant[] = [];
    const waits: Promise<void>[] = [];
    this.inStretch = true;
    this.hooks.hold();
    try {
      for (const group of finishing) group.finishReady();
      // Bounded by PASSES_MAX rounds.
      for (let round = 0; round < PASSES_MAX && !this.deferred && this.wanting.size > 0; round++) {
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
      this.inStretch = false;
      this.hooks.release();
    }
    if (waiting.length > 0) {
      // The promises never reject (see ReadyStart); batches become durable in order.
      const durable = waits.length === 1 ? waits[0]! : Promise.all(waits);
      void durable.then(() => this.stretch(waiting));
    }
    if (this.wanting.size === 0 || this.startQueued) return;
    // Work left after PASSES_MAX rounds without an fsync: let pending I/O in first.
    this.startQueued = true;
    this.deferred = true;
    this.later(this.start);
  }
}

const NO_GROUPS: readonly ReadyParticipant[] = [];

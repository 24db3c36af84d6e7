/**
 * One Ready pass at a time for every group of the host (instead of one Ready loop per
 * group). A group with work asks for a pass; the pass starts one Ready in each group that
 * asked (persisting all of them into the same shared-log batch, so one write and one
 * fsync), and while it waits for that fsync everything that arrives for any group gathers
 * for the next pass. So the messages of many groups leave in the same event-loop turn
 * (the transport then writes them to each peer in one socket write), and a follower's
 * acks, a leader's appends and the replies of all groups go out together — as one busy
 * group already did on its own.
 */

/** Passes run back to back before yielding to pending I/O (one that fsyncs yields anyway). */
const PASSES_MAX = 64;

/** What a pass needs of a group (RaftGroup). */
export interface ReadyParticipant {
  /**
   * Starts one Ready if the group has one and none is in flight. Returns its completion
   * (never rejects), or undefined when nothing started or the Ready runs detached (a
   * snapshot install, which must not hold up every other group); the group asks for
   * another pass itself when it has more work.
   */
  startReady(): Promise<void> | undefined;
}

export class ReadyPasses {
  /** Groups that asked for a pass: at most one entry per group, so bounded by the groups hosted. */
  private readonly wanting = new Set<ReadyParticipant>();
  private running = false;
  /** A start is queued (a microtask, or `later` after PASSES_MAX passes). */
  private startQueued = false;

  /** `later` runs a function after pending I/O (the host scheduler's deferral). */
  constructor(private readonly later: (run: () => void) => void) {}

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

  private async run(): Promise<void> {
    try {
      for (let pass = 0; pass < PASSES_MAX && this.wanting.size > 0; pass++) {
        const groups = [...this.wanting];
        this.wanting.clear();
        const inFlight: Promise<void>[] = [];
        for (const group of groups) {
          const done = group.startReady();
          if (done !== undefined) inFlight.push(done);
        }
        if (inFlight.length > 0) await Promise.all(inFlight);
      }
    } finally {
      this.running = false;
    }
    if (this.wanting.size === 0 || this.startQueued) return;
    // Work left after PASSES_MAX passes without an fsync: let pending I/O in first.
    this.startQueued = true;
    this.later(this.start);
  }
}

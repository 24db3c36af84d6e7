import { majorityIndex, type VoteResult, voteResult } from "./quorum.ts";
import type { ConfChange, ConfState, NodeId } from "./types.ts";

/**
 * Appends sent to one follower and not yet acknowledged: a ring of (last index, bytes).
 * Bounded by count and by bytes; the arrays grow lazily so idle groups stay small.
 */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private start = 0;
  count = 0;
  bytes = 0;

  constructor(
    readonly capacity: number,
    readonly bytesMax: number,
  ) {}

  add(lastIndex: number, bytes: number): void {
    let slot = this.start + this.count;
    if (slot >= this.capacity) slot -= this.capacity;
    this.lastIndexes[slot] = lastIndex;
    this.sizes[slot] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every append whose last index is <= `index` (the follower acked it). */
  freeLE(index: number): void {
    while (this.count > 0 && this.lastIndexes[this.start]! <= index) {
      this.bytes -= this.sizes[this.start]!;
      this.start++;
      if (this.start === this.capacity) this.start = 0;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  full(): boolean {
    return this.count >= this.capacity || (this.bytesMax > 0 && this.bytes >= this.bytesMax);
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}

export type ProgressState = "probe" | "replicate" | "snapshot";

/** `Progress.leaseAckMs` of a member that acked none of this leader's rounds. */
export const LEASE_NO_ACK = Number.NEGATIVE_INFINITY;

/** The leader's view of one member's log (etcd's tracker.Progress). */
export class Progress {
  match = 0;
  next = 1;
  state: ProgressState = "probe";
  /** Index of the snapshot in flight while state is "snapshot". */
  pendingSnapshot = 0;
  /** Heard from within the current election timeout (CheckQuorum). */
  recentActive = false;
  /** Accepted an append since the last periodic heartbeat (RaftConfig.quietHeartbeats). */
  ackedSinceHeartbeat = false;
  /** Probe: one append is outstanding; Replicate: inflights were full at the last send. */
  paused = false;
  /** Send an append even if it carries nothing (a heartbeat showed the follower lagging). */
  forceSend = false;
  /** Highest commit index sent, so a commit advance is propagated once. */
  sentCommit = 0;
  /** A read index answered to this follower (RaftConfig.holdCommitNotices): commit notices up to it go at once. */
  commitWanted = 0;
  /** The leader's monotonic send time of the latest round (heartbeat or vote) this member acked. */
  leaseAckMs = LEASE_NO_ACK;
  /** Probe index of one unconfirmed rejection suggesting lost entries (0: none); see maybeLostAcked. */
  lostSuspectIndex = 0;
  readonly inflights: Inflights;

  constructor(
    public learner: boolean,
    inflightMsgsMax: number,
    inflightBytesMax: number,
  ) {
    this.inflights = new Inflights(inflightMsgsMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.paused = false;
    this.forceSend = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.lostSuspectIndex = 0;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An ack for `index`; false when it is stale (nothing new learned). */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.paused = false;
      this.lostSuspectIndex = 0;
    }
    if (this.next < index + 1) this.next = index + 1;
    return updated;
  }

  /**
   * A rejection of the append whose previous index was `rejected`; `matchHint` is the
   * highest index that might still match. False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.paused = false;
    return true;
  }

  /**
   * A rejection of the probe just sent (`rejected` is next - 1) whose hint lies below
   * match: the follower may no longer hold entries it acknowledged — a torn write lost them
   * after the ack, which Raft assumes cannot happen. Without this the leader would probe at
   * match forever, since next never goes below match + 1.
   *
   * A reordered or duplicated rejection of an earlier probe at the same index looks the
   * same (messages carry no sequence number), so the first one only arms the check: the
   * caller re-probes, and a follower that has the entries acks, which disarms it. A second
   * such rejection at the same index, with no ack between, confirms the loss.
   *
   * Then match drops to the follower's commit index, the one prefix it provably still
   * shares with us (a hint can point into a stale tail that a lost write had replaced, and
   * match bounds the commit index we send it); the caller probes from the hint. The
   * leader's own commit index is untouched. True if match was lowered.
   */
  maybeLostAcked(rejected: number, rejectHint: number, followerCommit: number): boolean {
    if (this.state !== "probe" || this.next - 1 !== rejected || rejectHint >= this.match) return false;
    if (this.lostSuspectIndex !== rejected) {
      this.lostSuspectIndex = rejected;
      return false;
    }
    this.lostSuspectIndex = 0;
    this.match = Math.min(followerCommit, rejectHint);
    return true;
  }

  sentEntries(entryCount: number, lastIndex: number, bytes: number): void {
    if (this.state === "replicate") {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
      this.paused = this.inflights.full();
    } else if (this.state === "probe") {
      this.paused = true;
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.paused;
      case "replicate":
        // A heartbeat response clears `paused`, letting one append through even when
        // inflights are full, so lost appends cannot stall the follower forever.
        return this.paused;
      default:
        return true;
    }
  }

  reset(lastIndex: number): void {
    this.resetState("probe");
    this.match = 0;
    this.next = lastIndex + 1;
    this.recentActive = false;
    this.ackedSinceHeartbeat = false;
    this.sentCommit = 0;
    this.commitWanted = 0;
    this.leaseAckMs = LEASE_NO_ACK;
  }
}

/** Membership (single voter set + learners), per-member progress and election votes. */
export class ProgressTracker {
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  private readonly matchScratch: number[] = [];

  constructor(
    readonly inflightMsgsMax: number,
    private readonly inflightBytesMax: number,
  ) {}

  setConf(conf: ConfState, lastIndex: number): void {
    this.voters = [...conf.voters];
    this.learners = conf.learners.filter((id) => !conf.voters.includes(id));
    this.progress.clear();
    for (const id of this.voters) this.addProgress(id, false, lastIndex);
    for (const id of this.learners) this.addProgress(id, true, lastIndex);
  }

  private addProgress(id: NodeId, learner: boolean, lastIndex: number): void {
    const pr = new Progress(learner, this.inflightMsgsMax, this.inflightBytesMax);
    pr.reset(lastIndex);
    // A member that just joined is presumed live so CheckQuorum does not fire at once.
    pr.recentActive = true;
    this.progress.set(id, pr);
  }

  /** Applies one single-server change; the caller has checked the one-at-a-time rule. */
  applyChange(change: ConfChange, lastIndex: number): void {
    const { node } = change;
    const pr = this.progress.get(node);
    switch (change.type) {
      case "addVoter":
        if (pr === undefined) this.addProgress(node, false, lastIndex);
        else pr.learner = false;
        if (!this.voters.includes(node)) this.voters.push(node);
        this.learners = this.learners.filter((id) => id !== node);
        break;
      case "addLearner":
        if (pr === undefined) this.addProgress(node, true, lastIndex);
        else pr.learner = true;
        this.voters = this.voters.filter((id) => id !== node);
        if (!this.learners.includes(node)) this.learners.push(node);
        break;
      case "removeNode":
        this.progress.delete(node);
        this.voters = this.voters.filter((id) => id !== node);
        this.learners = this.learners.filter((id) => id !== node);
        break;
    }
  }

  confState(): ConfState {
    return { voters: [...this.voters], learners: [...this.learners] };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id);
  }

  isSingleton(): boolean {
    return this.voters.length === 1;
  }

  /** The highest index replicated on a quorum of voters. */
  committedIndex(): number {
    const scratch = this.matchScratch;
    const count = this.voters.length;
    for (let i = 0; i < count; i++) scratch[i] = this.progress.get(this.voters[i]!)?.match ?? 0;
    return majorityIndex(scratch, count);
  }

  /**
   * The latest send time (monotonic ms) that a quorum of the current voters acked (self
   * counts as acking `nowMs`): what the read lease is anchored to. LEASE_NO_ACK if no
   * quorum acked any round.
   */
  leaseAnchorMs(self: NodeId, nowMs: number): number {
    const scratch = this.matchScratch;
    const count = this.voters.length;
    for (let i = 0; i < count; i++) {
      const id = this.voters[i]!;
      scratch[i] = id === self ? nowMs : (this.progress.get(id)?.leaseAckMs ?? LEASE_NO_ACK);
    }
    return count === 0 ? LEASE_NO_ACK : majorityIndex(scratch, count);
  }

  hasQuorum(members: ReadonlySet<NodeId>): boolean {
    let count = 0;
    for (const id of this.voters) if (members.has(id)) count++;
    return count >= (this.voters.length >> 1) + 1;
  }

  /** Are voters `a` and `b` (distinct) together a quorum? True only with two or three voters. */
  pairIsQuorum(a: NodeId, b: NodeId): boolean {
    if (a === b || !this.isVoter(a) || !this.isVoter(b)) return false;
    return 2 >= (this.voters.length >> 1) + 1;
  }

  /** CheckQuorum: did a quorum of voters (self counts) talk to us this election timeout? */
  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.voters) if (id === self || this.progress.get(id)?.recentActive) active++;
    return active >= (this.voters.length >> 1) + 1;
  }

  resetRecentActive(self: NodeId): void {
    for (const [id, pr] of this.progress) pr.recentActive = id === self;
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tally(): VoteResult {
    return voteResult(this.voters, this.votes);
  }
}

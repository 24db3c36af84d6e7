import { flushAppends } from "./appends.ts";
import { assert } from "./assert.ts";
import { NO_ENTRIES } from "./entries.ts";
import { reduceUncommitted } from "./proposals.ts";
import { maybeCommit, onCommitAdvanced } from "./replication.ts";
import { DEFAULTS, type NodeState } from "./state.ts";
import {
  type HardState,
  type Message,
  MessageType,
  type ReadState,
  type Ready,
  type SoftState,
} from "./types.ts";

const NO_MESSAGES: Message[] = [];
Object.freeze(NO_MESSAGES);
const NO_READ_STATES: ReadState[] = [];
Object.freeze(NO_READ_STATES);

/**
 * Hands the node's output to the runtime as Readys and learns at advance() what is now on
 * disk: remembers what the last Ready carried, since advance() receives nothing back.
 */
export class ReadyTracker {
  private prevSoft: SoftState = { leader: null, role: "follower" };
  private prevHard: HardState;
  private readyInFlight = false;
  private readyLastIndex = 0;
  private readyLastTerm = 0;
  private readySnapshotIndex = 0;
  private readyHard: HardState | undefined;
  private readyAppliedTo = 0;

  constructor(private readonly s: NodeState) {
    this.prevHard = { term: s.term, vote: s.vote, commit: s.log.committed };
  }

  hasReady(): boolean {
    const s = this.s;
    if (s.appendsDue) flushAppends(s);
    return (
      s.msgs.length > 0 ||
      s.readStates.length > 0 ||
      s.log.hasUnstable() ||
      s.log.hasNextCommitted() ||
      this.softChanged() ||
      this.hardChanged()
    );
  }

  ready(): Ready {
    const s = this.s;
    assert(!this.readyInFlight, "ready() called again before advance()");
    if (s.appendsDue) flushAppends(s);
    const log = s.log;
    const entries = log.unstableEntries.length === 0 ? NO_ENTRIES : log.unstableEntries.slice();
    const snapshot = log.unstableSnapshot;
    const committedEntries = log.nextCommitted(DEFAULTS.maxCommittedBytesPerReady);
    const hard = this.hardChanged() ? { term: s.term, vote: s.vote, commit: log.committed } : undefined;
    const mustSync =
      entries.length > 0 ||
      snapshot !== undefined ||
      (hard !== undefined && (hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote));
    // The Ready takes the outbox and the read states and leaves fresh ones: what the node is
    // stepped into while this Ready is persisted belongs to the next Ready (a vote granted
    // or an append acked meanwhile must wait for *that* Ready's fsync). An empty one is
    // handed out as a frozen constant, never as the node's own array.
    const msgs = s.msgs.length === 0 ? NO_MESSAGES : s.msgs;
    const readStates = s.readStates.length === 0 ? NO_READ_STATES : s.readStates;
    if (msgs !== NO_MESSAGES) s.msgs = [];
    if (readStates !== NO_READ_STATES) s.readStates = [];
    const { messages, messagesBeforePersist } = this.splitMessages(msgs);
    const rd: Ready = {
      entries,
      committedEntries,
      messages,
      messagesBeforePersist,
      readStates,
      mustSync,
    };
    if (this.softChanged()) {
      this.prevSoft = { leader: s.lead, role: s.role };
      rd.softState = { leader: s.lead, role: s.role };
    }
    if (hard !== undefined) rd.hardState = hard;
    if (snapshot !== undefined) rd.snapshot = snapshot;

    this.readyInFlight = true;
    this.readyHard = hard;
    this.readySnapshotIndex = snapshot === undefined ? 0 : snapshot.meta.index;
    const last = entries[entries.length - 1];
    this.readyLastIndex = last === undefined ? 0 : last.index;
    this.readyLastTerm = last === undefined ? 0 : last.term;
    const lastCommitted = committedEntries[committedEntries.length - 1];
    this.readyAppliedTo = lastCommitted === undefined ? 0 : lastCommitted.index;
    if (s.role === "leader" && committedEntries.length > 0) reduceUncommitted(s, committedEntries);
    return rd;
  }

  advance(): void {
    const s = this.s;
    assert(this.readyInFlight, "advance() called without a ready()");
    this.readyInFlight = false;
    const log = s.log;
    if (this.readySnapshotIndex > 0) {
      log.stableSnapTo(this.readySnapshotIndex);
      if (log.applied < this.readySnapshotIndex) log.applied = this.readySnapshotIndex;
    }
    if (this.readyLastIndex > 0) log.stableTo(this.readyLastIndex, this.readyLastTerm);
    if (this.readyHard !== undefined) this.prevHard = this.readyHard;
    if (this.readyAppliedTo > log.applied) log.applied = this.readyAppliedTo;
    if (s.role === "leader") {
      // The leader counts its own copy only once it is on disk.
      const self = s.trk.progress.get(s.id);
      if (self?.maybeUpdate(log.persistedIndex()) && maybeCommit(s)) {
        onCommitAdvanced(s);
      }
    }
  }

  /**
   * A leader's Append/Snapshot of its current term may go before this Ready is persisted,
   * but only once that term and its vote are on disk (`prevHard` is what the last advanced
   * Ready persisted): a leader that crashed with them unpersisted could lead the same term
   * again after restarting (a group of one does not wait for votes) and send other entries
   * under it. Everything else — acks, votes, heartbeats, read answers — waits.
   */
  private splitMessages(msgs: Message[]): { messages: Message[]; messagesBeforePersist: Message[] } {
    const s = this.s;
    if (
      !s.appendsBeforePersist ||
      s.role !== "leader" ||
      msgs.length === 0 ||
      s.term !== this.prevHard.term ||
      s.vote !== this.prevHard.vote
    ) {
      return { messages: msgs, messagesBeforePersist: NO_MESSAGES };
    }
    const messages: Message[] = [];
    const messagesBeforePersist: Message[] = [];
    for (const m of msgs) {
      const early =
        (m.type === MessageType.Append || m.type === MessageType.Snapshot || m.type === MessageType.Commit) &&
        m.from === s.id &&
        m.term === s.term;
      (early ? messagesBeforePersist : messages).push(m);
    }
    return { messages, messagesBeforePersist };
  }

  private softChanged(): boolean {
    const s = this.s;
    return s.lead !== this.prevSoft.leader || s.role !== this.prevSoft.role;
  }

  private hardChanged(): boolean {
    const s = this.s;
    const prev = this.prevHard;
    return s.term !== prev.term || s.vote !== prev.vote || s.log.committed !== prev.commit;
  }
}

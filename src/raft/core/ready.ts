import { flushAppends } from "./appends.ts";
import { NO_ENTRIES } from "./entries.ts";
import { reduceUncommitted } from "./proposals.ts";
import { maybeCommit, onCommitAdvanced } from "./replication.ts";
import { DEFAULTS, type NodeState } from "./state.ts";
import type { HardState, Ready, SoftState } from "./types.ts";

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
    if (this.readyInFlight) throw new Error("ready() called again before advance()");
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
    const rd: Ready = {
      entries,
      committedEntries,
      messages: s.msgs,
      readStates: s.readStates,
      mustSync,
    };
    if (this.softChanged()) {
      this.prevSoft = { leader: s.lead, role: s.role };
      rd.softState = { leader: s.lead, role: s.role };
    }
    if (hard !== undefined) rd.hardState = hard;
    if (snapshot !== undefined) rd.snapshot = snapshot;
    if (s.msgs.length > 0) s.msgs = [];
    if (s.readStates.length > 0) s.readStates = [];

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
    if (!this.readyInFlight) throw new Error("advance() called without a ready()");
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

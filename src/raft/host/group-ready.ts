/**
 * A Raft group's Ready loop (RaftGroup, group.ts): the host's pass (ready-pass.ts) starts
 * one Ready at a time (a leader's appends go out, entries and hard state persist), finishes
 * it once durable (send the rest, apply, answer reads, advance), and runs a snapshot
 * install's Ready on its own; the soft state it carries, held commit notices
 * (commit-notice-hold.ts), and the snapshots the applied log calls for (group-snapshots.ts).
 */
import { decodeConfChange } from "../core/confchange.ts";
import { entrySizeBytes } from "../core/entries.ts";
import {
  type ConfState,
  type Entry,
  EntryKind,
  type NodeId,
  type Ready,
  type Role,
  type Snapshot,
  type SnapshotMeta,
} from "../core/types.ts";
import { testFaults } from "../storage/test-faults.ts";
import { PersistenceFailure, persisted } from "./group-failure.ts";
import { RaftGroupState } from "./group-state.ts";
import type { PersistFailure, ReadyStart } from "./ready-pass.ts";
import { assert } from "./runtime.ts";

const EMPTY = new Uint8Array(0);

/**
 * The Ready contract (send a leader's appends, persist, then send the rest, then apply,
 * then answer reads, then advance), at most one Ready in flight; see the file's header.
 */
export abstract class RaftGroupReadyLoop extends RaftGroupState {
  /**
   * Asks the host for a Ready pass (ready-pass.ts); messages and proposals arriving until
   * it runs batch into one Ready, and every group's Ready of that pass is persisted in one
   * batch.
   */
  schedule(): void {
    if (this.readyRequested || this.closed) return;
    this.readyRequested = true;
    this.env.requestReady(this);
  }

  /**
   * The host's pass: starts one Ready if there is one and none is in flight (see
   * ReadyParticipant): everything up to its persistence runs now; the pass calls
   * finishReady once that is durable, together with every other group's.
   */
  startReady(): ReadyStart {
    this.readyRequested = false;
    if (!this.closed) this.reads.askQueued();
    if (this.draining || this.closed) return false;
    const hasReady = this.node.hasReady();
    this.noteHeldNotices();
    if (!hasReady) return false;
    this.draining = true;
    let rd: Ready;
    try {
      rd = this.node.ready();
    } catch (error) {
      // The core's Ready contract broken (an AssertionError): fatal ends the process.
      this.fatal(error);
      this.draining = false;
      return false;
    }
    if (rd.snapshot !== undefined) {
      // A snapshot install streams to disk and restores the state machine: it runs on its
      // own, so the other groups need not wait for it.
      this.snapshotReadyDone = this.handleSnapshotReady(rd).then(
        () => this.readyDone(),
        (error: unknown) => {
          this.fatal(error);
          this.readyDone();
        },
      );
      return false;
    }
    this.startedReady = rd;
    try {
      this.beginReady(rd);
      // The storage's own promise (shared by every group of the log batch), or undefined.
      return this.persistReady(rd) ?? true;
    } catch (error) {
      this.persistFailure = { error };
      return true;
    }
  }

  /**
   * The rest of the Ready startReady began, once its persistence is durable (the pass's
   * call), or the group's end if that failed (`failure`).
   */
  finishReady(failure?: PersistFailure): void {
    const rd = this.startedReady;
    const finished = this.readyFinished;
    const thrown = this.persistFailure;
    this.startedReady = undefined;
    this.readyFinished = undefined;
    this.persistFailure = undefined;
    if (rd === undefined) return;
    try {
      if (thrown !== undefined) throw thrown.error;
      if (failure !== undefined) {
        throw failure.error instanceof PersistenceFailure
          ? failure.error
          : new PersistenceFailure(failure.error);
      }
      if (!this.closed) {
        // 2. send the rest (acks, votes, heartbeats, read answers): only now that it is durable
        for (const message of rd.messages) this.env.send(this.groupId, message);
        this.applyReady(rd);
      }
    } catch (error) {
      this.fatal(error);
    }
    this.readyDone();
    finished?.();
  }

  private readyDone(): void {
    this.draining = false;
    if (this.closed) return;
    if (this.node.hasReady()) this.schedule();
    this.noteHeldNotices();
  }

  /** The core holds commit notices (hasReady/ready builds them): the host sends them shortly. */
  private noteHeldNotices(): void {
    if (this.node.commitNoticesHeld()) this.env.holdCommitNotices?.(this);
  }

  /** The host's hold is over: the notices still owed go out (commit-notice-hold.ts). */
  releaseCommitNotices(): void {
    if (this.closed) return;
    this.node.sendHeldCommitNotices();
    this.schedule();
  }

  /** Trace stamps, the soft state, and a leader's appends (sent while we persist: see Ready). */
  private beginReady(rd: Ready): void {
    if (this.env.observer?.currentTrace !== undefined) {
      this.proposals.stamp(rd.committedEntries, "committedMs");
      this.proposals.stamp(rd.entries, "persistingMs");
    }
    if (rd.softState !== undefined) this.onSoftState(rd.softState.leader, rd.softState.role);
    // 0. a leader's appends go out now: followers write them while we do (see Ready).
    for (const message of rd.messagesBeforePersist) this.env.send(this.groupId, message);
  }

  /**
   * 1. persist the entries and hard state; returns what must be durable before the rest of
   * the Ready goes on (a failure rejects it: fatal), or undefined when nothing must wait.
   */
  private persistReady(rd: Ready): Promise<void> | undefined {
    if (rd.entries.length === 0 && rd.hardState === undefined) return undefined;
    assertContiguous(this.groupId, rd.entries);
    const write = this.storage.append(rd.entries, rd.hardState);
    // A commit-index-only change need not be on disk before we go on (Raft recovers it).
    // (A test build's ack-before-fsync fault skips the wait: see storage/test-faults.ts.)
    if (!rd.mustSync || testFaults.ackBeforeFsync) {
      write.catch((error: unknown) => this.fatal(new PersistenceFailure(error)));
      return undefined;
    }
    const observer = this.env.observer;
    // Not wrapped: the pass hands a failure to finishReady, which wraps it.
    if (observer === undefined) return write;
    const durable = persisted(write);
    const syncStartMs = this.env.monotonicMs();
    return durable.then(() => {
      observer.walSynced(this.groupId, this.env.monotonicMs() - syncStartMs);
      if (observer.currentTrace !== undefined) this.proposals.stamp(rd.entries, "durableMs");
    });
  }

  /** A Ready carrying a snapshot to install: persisted and applied on its own (see startReady). */
  private async handleSnapshotReady(rd: Ready): Promise<void> {
    this.beginReady(rd);
    // Never two snapshot saves at once: ours may still be streaming.
    await this.snapshots.saving;
    const installStartMs = this.env.monotonicMs();
    await persisted(this.storage.saveSnapshot(rd.snapshot!.meta, rd.snapshot!.data));
    this.env.observer?.snapshotDone(this.groupId, "install", this.env.monotonicMs() - installStartMs, true);
    const durable = this.persistReady(rd);
    if (durable !== undefined) await persisted(durable);
    if (this.closed) return;
    for (const message of rd.messages) this.env.send(this.groupId, message);
    await this.restore(rd.snapshot!);
    this.applyReady(rd);
  }

  /** 3. apply, 4. answer reads, 5. advance. */
  private applyReady(rd: Ready): void {
    for (const entry of rd.committedEntries) this.apply(entry);
    this.reads.indexesKnown(rd.readStates);
    this.reads.answer(this.appliedIndex, this.appliedTimeMs);
    // The reads that arrived while those rounds were out: one batch for all of them.
    if (!this.closed) this.reads.askQueued();
    this.node.advance();
    this.maybeSnapshot();
  }

  private apply(entry: Entry): void {
    if (entry.index <= this.appliedIndex) return;
    if (entry.index !== this.appliedIndex + 1)
      assert(
        false,
        `group ${this.groupId}: committed entry ${entry.index} after applied ${this.appliedIndex} leaves a gap`,
      );
    let result: Uint8Array = EMPTY;
    if (entry.kind === EntryKind.ConfChange) {
      const change = decodeConfChange(entry.data);
      const conf = this.node.applyConfChange(change);
      this.env.logger.info(`group ${this.groupId}: configuration now ${describeConf(conf)}`);
      this.env.onConfChange?.(this.groupId, change, conf);
    } else if (entry.kind === EntryKind.Normal) {
      result = this.stateMachine.apply(entry);
    }
    this.appliedIndex = entry.index;
    this.appliedTerm = entry.term;
    if (entry.timeMs > this.appliedTimeMs) this.appliedTimeMs = entry.timeMs;
    this.snapshots.entryApplied(entrySizeBytes(entry));
    this.proposals.applied(entry, result);
  }

  private async restore(snapshot: Snapshot): Promise<void> {
    await this.stateMachine.restore(snapshot.data);
    const { index, term, timeMs } = snapshot.meta;
    this.appliedIndex = index;
    this.appliedTerm = term;
    if (timeMs > this.appliedTimeMs) this.appliedTimeMs = timeMs;
    this.snapshots.restored(index, snapshot.data.byteLength);
    this.proposals.snapshotInstalled(snapshot.meta.index);
  }

  /** Snapshots when the cadence says so (./snapshot-cadence.ts); then compacts the log behind it (group-snapshots.ts). */
  protected override maybeSnapshot(): void {
    if (!this.snapshots.takeDue(this.appliedIndex)) return;
    const meta: SnapshotMeta = {
      index: this.appliedIndex,
      term: this.appliedTerm,
      timeMs: this.appliedTimeMs,
      conf: this.node.status().conf,
    };
    // Captured now, at exactly the applied index; the bytes stream while we go on applying.
    this.snapshots.save(meta, this.stateMachine.snapshot());
  }

  private onSoftState(leader: NodeId | null, role: Role): void {
    assert(
      (role === "leader") === (leader === this.env.self),
      () => `group ${this.groupId}: role ${role} with leader ${leader} on ${this.env.self}`,
    );
    const changed = leader !== this.leader;
    this.leader = leader;
    this.role = role;
    if (changed) {
      this.env.logger.info(
        `group ${this.groupId}: leader is now ${leader ?? "unknown"} (${this.env.self} is ${role})`,
      );
      this.leaderWatchers.wakeAll();
      // Read indexes asked of the old leader are lost with it: ask the new one now
      // rather than after an election timeout.
      if (leader !== null) {
        this.reads.reaskUnanswered();
      }
    }
  }
}

function assertContiguous(groupId: number, entries: readonly Entry[]): void {
  const first = entries[0];
  if (first === undefined) return;
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.index !== first.index + i)
      assert(
        false,
        `group ${groupId}: Ready entries not contiguous at position ${i} (${entries[i]!.index} after ${first.index})`,
      );
  }
}

function describeConf(conf: ConfState): string {
  const learners = conf.learners.length > 0 ? ` learners [${conf.learners.join(", ")}]` : "";
  return `voters [${conf.voters.join(", ")}]${learners}`;
}

import { DkvError } from "../../errors.ts";
import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import { RecordTag, type WalRecord } from "./codec.ts";
import { EntryLog } from "./entry-log.ts";
import { walCorruption } from "./wal.ts";

/**
 * Rebuilds the log from WAL records in write order. The rules mirror how they were
 * written: an entry at index i replaces everything from i on (that is how conflicts are
 * recorded — no separate truncation record), the last hard state wins, and a snapshot
 * marker (i, t) replaces the whole log by that point. Markers are written only when the
 * writer did just that (a leader's snapshot our log did not contain), so replaying one
 * needs no judgement — which matters once compaction has removed the entries around it.
 */
export class LogReplay {
  private entries: Entry[] = [];
  /** Index of entries[0]; meaningful when entries is non-empty. */
  private first = 0;
  /** Set by a snapshot marker that replaced the log: entries continue right after it. */
  private markerBase: { index: number; term: number } | null = null;
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  records = 0;
  /**
   * Set by finish() when it dropped replayed entries because they contradict the
   * snapshot (a crash between saving a leader's snapshot and its marker). The caller
   * must then write the marker, or later appends would replay onto those entries.
   */
  droppedForSnapshot = false;

  readonly visit = (record: WalRecord, path: string, offset: number): void => {
    this.records++;
    if (record.tag === RecordTag.Entry) this.addEntry(record.entry, path, offset);
    else if (record.tag === RecordTag.HardState) this.hardState = record.hardState;
    else if (record.tag === RecordTag.SnapshotMarker) this.addSnapshotMarker(record.index, record.term);
    else
      throw walCorruption(
        path,
        offset,
        `a shared-log group record (group ${record.groupId}) in a one-group WAL`,
      );
  };

  private lastIndex(): number {
    return this.first + this.entries.length - 1;
  }

  private addEntry(entry: Entry, path: string, offset: number): void {
    const index = entry.index;
    const base = this.markerBase;
    if (base !== null && index <= base.index) {
      throw walCorruption(
        path,
        offset,
        `entry ${index} rewrites the log below a snapshot marker at ${base.index}`,
      );
    }
    if (this.entries.length > 0 && index >= this.first) {
      const last = this.lastIndex();
      if (index > last + 1)
        throw walCorruption(path, offset, `entry ${index} leaves a gap after entry ${last}`);
      this.entries.length = index - this.first;
      this.entries.push(entry);
      return;
    }
    // An empty log, or a rewrite reaching below the first replayed entry: the entries
    // before it were in segments compaction removed, which it only does once they are
    // covered by a snapshot; finish() checks that the result joins that snapshot.
    if (base !== null && index !== base.index + 1) {
      throw walCorruption(
        path,
        offset,
        `entry ${index} follows a snapshot marker at ${base.index}; expected ${base.index + 1}`,
      );
    }
    this.entries = [entry];
    this.first = index;
  }

  private addSnapshotMarker(index: number, term: number): void {
    this.markerBase = { index, term };
    this.entries = [];
  }

  /**
   * Joins the replayed log to the snapshot it must continue from (Raft §7: keep the
   * entries after the snapshot point only if the log holds that point with the same term)
   * and keeps at most `overheadEntries` entries at or below the snapshot index.
   */
  finish(walDir: string, snapshot: SnapshotMeta | null, overheadEntries: number): EntryLog {
    const snapIndex = snapshot?.index ?? 0;
    const snapTerm = snapshot?.term ?? 0;
    const missing = (what: string) =>
      new DkvError(
        "CORRUPT",
        `${walDir}: ${what} — restore this member from a snapshot or remove its data dir to rejoin`,
      );
    const marker = this.markerBase;
    if (this.entries.length === 0) {
      if (marker !== null && marker.index > snapIndex) {
        throw missing(
          `the log continues from a snapshot at index ${marker.index}, but the newest valid snapshot is at ${snapIndex}`,
        );
      }
      return new EntryLog(snapIndex, snapTerm, []);
    }
    const first = this.first;
    const last = this.lastIndex();
    let log: EntryLog;
    if (first <= snapIndex && snapIndex <= last) {
      if (this.entries[snapIndex - first]!.term !== snapTerm) {
        this.droppedForSnapshot = true;
        return new EntryLog(snapIndex, snapTerm, []);
      }
      // The first entry becomes the base: its own term is known, its predecessor's may not be.
      log = new EntryLog(first, this.entries[0]!.term, this.entries.slice(1));
    } else if (last < snapIndex) {
      this.droppedForSnapshot = true; // the snapshot supersedes the whole log
      return new EntryLog(snapIndex, snapTerm, []);
    } else if (first === snapIndex + 1) {
      if (marker !== null && marker.index === snapIndex && marker.term !== snapTerm) {
        throw missing(
          `a snapshot marker says index ${snapIndex} has term ${marker.term}, the snapshot file says ${snapTerm}`,
        );
      }
      log = new EntryLog(snapIndex, snapTerm, this.entries);
    } else {
      throw missing(
        `the log starts at index ${first}, but the newest valid snapshot is at ${snapIndex}, so entries ${snapIndex + 1}..${first - 1} are missing`,
      );
    }
    const keepFrom = snapIndex - overheadEntries;
    if (keepFrom > log.baseIndex) log.compactTo(keepFrom);
    return log;
  }
}

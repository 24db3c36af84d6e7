import { assert } from "./assert.ts";
import { limitBySize } from "./entries.ts";
import type { ConfState, Entry, HardState, LogStorage, Snapshot } from "./types.ts";

/** Everything a node persists; what a crash leaves behind and a restart starts from. */
export interface PersistedState {
  hardState: HardState;
  /** The configuration as of the state machine's applied index (the snapshot's on restart). */
  conf: ConfState;
  snapshot?: Snapshot;
  /** Entries after the snapshot index (earlier ones are dropped). */
  entries?: Entry[];
}

function emptySnapshot(conf: ConfState): Snapshot {
  return { meta: { index: 0, term: 0, timeMs: 0, conf }, data: new Uint8Array(0) };
}

/**
 * An in-memory LogStorage that the runtime (or a simulator) writes while draining
 * Readys. Entries are kept in one array after a "compaction point" whose term is still
 * known, so `term(firstIndex() - 1)` always answers.
 */
export class MemoryLogStorage implements LogStorage {
  private hardState: HardState;
  private conf: ConfState;
  private snap: Snapshot;
  /** Index of the last compacted entry; `ents[0]` has index `compactedIndex + 1`. */
  private compactedIndex: number;
  private compactedTerm: number;
  private ents: Entry[];

  constructor(
    init: PersistedState = {
      hardState: { term: 0, vote: null, commit: 0 },
      conf: { voters: [], learners: [] },
    },
  ) {
    this.hardState = { ...init.hardState };
    this.snap = init.snapshot ?? emptySnapshot(init.conf);
    this.conf = init.conf;
    this.compactedIndex = this.snap.meta.index;
    this.compactedTerm = this.snap.meta.term;
    const entries = init.entries ?? [];
    this.ents = entries.filter((entry) => entry.index > this.compactedIndex);
    for (let i = 0; i < this.ents.length; i++) {
      assert(
        this.ents[i]!.index === this.compactedIndex + 1 + i,
        () => `entries must be contiguous after snapshot index ${this.compactedIndex}`,
      );
    }
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return {
      hardState: { ...this.hardState },
      conf: { voters: [...this.conf.voters], learners: [...this.conf.learners] },
    };
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    // The log asks only for what it knows is here (RaftLog.slice checks firstIndex first).
    assert(lo > this.compactedIndex, () => `entry ${lo} is compacted (first index ${this.firstIndex()})`);
    assert(hi <= this.lastIndex() + 1, () => `entry ${hi - 1} is beyond last index ${this.lastIndex()}`);
    const from = lo - this.compactedIndex - 1;
    const to = hi - this.compactedIndex - 1;
    return this.ents.slice(from, limitBySize(this.ents, from, to, maxBytes));
  }

  term(index: number): number {
    if (index === this.compactedIndex) return this.compactedTerm;
    if (index < this.compactedIndex)
      throw new RangeError(`entry ${index} is compacted (first index ${this.firstIndex()})`);
    const entry = this.ents[index - this.compactedIndex - 1];
    if (entry === undefined) throw new RangeError(`entry ${index} is beyond last index ${this.lastIndex()}`);
    return entry.term;
  }

  firstIndex(): number {
    return this.compactedIndex + 1;
  }

  lastIndex(): number {
    return this.compactedIndex + this.ents.length;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Persists a Ready's entries, replacing any suffix from the first new index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(
      first <= this.lastIndex() + 1,
      () => `append at ${first} leaves a gap after last index ${this.lastIndex()}`,
    );
    // Entries already covered by compaction are committed and identical; skip them.
    let from = 0;
    while (from < entries.length && entries[from]!.index <= this.compactedIndex) from++;
    if (from === entries.length) return;
    this.ents.length = entries[from]!.index - this.compactedIndex - 1;
    for (let i = from; i < entries.length; i++) this.ents.push(entries[i]!);
  }

  setHardState(hardState: HardState): void {
    this.hardState = { ...hardState };
  }

  /** Records the configuration the state machine has applied (restart resumes from it). */
  setConfState(conf: ConfState): void {
    this.conf = { voters: [...conf.voters], learners: [...conf.learners] };
  }

  /** Installs a leader's snapshot (Ready.snapshot): the whole log is replaced by it. */
  applySnapshot(snapshot: Snapshot): void {
    assert(
      snapshot.meta.index > this.snap.meta.index,
      () => `snapshot ${snapshot.meta.index} is not newer than ${this.snap.meta.index}`,
    );
    this.snap = snapshot;
    this.conf = snapshot.meta.conf;
    this.compactedIndex = snapshot.meta.index;
    this.compactedTerm = snapshot.meta.term;
    this.ents = [];
    if (this.hardState.commit < snapshot.meta.index)
      this.hardState = { ...this.hardState, commit: snapshot.meta.index };
  }

  /** Records the state machine's snapshot at applied `index` (its bytes and configuration). */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index)
      throw new RangeError(`snapshot ${index} is not newer than ${this.snap.meta.index}`);
    if (index > this.lastIndex())
      throw new RangeError(`snapshot ${index} is beyond last index ${this.lastIndex()}`);
    const entry = this.ents[index - this.compactedIndex - 1];
    if (entry === undefined) throw new RangeError(`entry ${index} is compacted`);
    this.snap = {
      meta: {
        index,
        term: entry.term,
        timeMs: entry.timeMs,
        conf: { voters: [...conf.voters], learners: [...conf.learners] },
      },
      data,
    };
    return this.snap;
  }

  /**
   * Drops entries up to `index`, which must be covered by the snapshot (so a lagging
   * follower can still be served). Keeping an overhead of entries is the caller's choice.
   */
  compact(index: number): void {
    if (index <= this.compactedIndex) return;
    assert(
      index <= this.snap.meta.index,
      () => `compact ${index} is beyond the snapshot index ${this.snap.meta.index}`,
    );
    const count = index - this.compactedIndex;
    this.compactedTerm = this.ents[count - 1]!.term;
    this.ents = this.ents.slice(count);
    this.compactedIndex = index;
  }

  /**
   * What survives a crash, for `new MemoryLogStorage(state)` on restart with `applied` =
   * the snapshot index: the state machine restarts from the snapshot, so the configuration
   * is the snapshot's and later ConfChange entries are applied again. Entries between the
   * compaction point and the snapshot index are dropped (the snapshot covers them).
   */
  persistedState(): PersistedState {
    const conf = this.snap.meta.conf;
    return {
      hardState: { ...this.hardState },
      conf: { voters: [...conf.voters], learners: [...conf.learners] },
      snapshot: this.snap,
      entries: this.ents.filter((entry) => entry.index > this.snap.meta.index),
    };
  }
}

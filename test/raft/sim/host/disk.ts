/**
 * A simulated disk for one member, shaped like raft/storage's SharedLog: one ordered list of
 * frames for all its Raft groups (what one `append` or snapshot save wrote, tagged with the
 * group), some fsynced, the newest maybe not; one fsync makes every group's written frames
 * durable at once. It outlives process incarnations; `SimGroupStorage` is one
 * incarnation's view of one group, with the semantics of RaftStorage (the in-memory view
 * changes at call time; writes resolve once durable; a snapshot not ours resets the log).
 *
 * Faults: an fsync that fails (every write waiting on it, of any group, rejects and the
 * storage refuses later writes, as the shared log does); a crash keeps only a prefix of the
 * unsynced frames across groups (a torn tail); a lying disk also loses its last fsynced frame.
 */
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "../../../../src/raft/core/types.ts";
import type { GroupStorage } from "../../../../src/raft/host/runtime.ts";

export type Frame =
  | { kind: "append"; groupId: number; entries: Entry[]; hardState: HardState | undefined }
  | { kind: "snapshot"; groupId: number; snapshot: Snapshot };

interface PendingSync {
  resolve(): void;
  reject(error: Error): void;
}

export class SimDisk {
  /** Frames on the platter, oldest first. */
  readonly synced: Frame[] = [];
  /** Written, not yet fsynced: a crash keeps a prefix of these. */
  unsynced: Frame[] = [];
  private waiters: PendingSync[] = [];
  /** The incarnation whose storage may write; older ones are dead processes. */
  private incarnation = 0;
  /** The incarnation that opened a group last: the first open of a new process clears a failure. */
  private openedBy = -1;
  failed = false;

  constructor(readonly name: string) {}

  /** Someone waits for an fsync (frames written unawaited start none: they go with the next). */
  get hasPending(): boolean {
    return this.waiters.length > 0;
  }

  /**
   * Opens group `groupId` for the running process (each crash starts a new incarnation):
   * replays that group's frames into a fresh view.
   */
  open(groupId: number, initialConf: ConfState): SimGroupStorage {
    // Another group of the same process shares its incarnation (and its failure).
    if (this.openedBy !== this.incarnation) {
      this.failed = false;
      this.openedBy = this.incarnation;
    }
    const view = new LogView(initialConf);
    for (const frame of this.synced) if (frame.groupId === groupId) view.replay(frame);
    return new SimGroupStorage(this, this.incarnation, groupId, view);
  }

  write(incarnation: number, frame: Frame): Promise<void> {
    if (incarnation !== this.incarnation) return new Promise(() => {}); // a dead process: never returns
    if (this.failed) return Promise.reject(new Error(`${this.name}: the disk failed earlier; restart`));
    this.unsynced.push(frame);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /**
   * A frame nobody waits for (RaftStorage's hard state that only raised the commit index):
   * written now, durable with the next fsync, or lost to a crash before it like any other.
   */
  writeUnawaited(incarnation: number, frame: Frame): Promise<void> {
    if (incarnation !== this.incarnation) return new Promise(() => {});
    if (this.failed) return Promise.reject(new Error(`${this.name}: the disk failed earlier; restart`));
    this.unsynced.push(frame);
    return Promise.resolve();
  }

  /** A write that needs no new frame (nothing new to append): durable with what came before. */
  barrier(incarnation: number): Promise<void> {
    if (incarnation !== this.incarnation) return new Promise(() => {});
    if (this.failed) return Promise.reject(new Error(`${this.name}: the disk failed earlier; restart`));
    if (this.waiters.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** fsync: everything written so far becomes durable, or (failing) nothing more ever does. */
  sync(fail: boolean): void {
    const waiters = this.waiters;
    this.waiters = [];
    if (fail) {
      this.failed = true;
      const error = new Error(`${this.name}: fsync failed (EIO)`);
      for (const waiter of waiters) waiter.reject(error);
      return;
    }
    this.synced.push(...this.unsynced);
    this.unsynced = [];
    for (const waiter of waiters) waiter.resolve();
  }

  /**
   * The process died: its storage is dead, unsynced frames survive only as a prefix of
   * `keepUnsynced` of them (0: all lost), and a lying disk drops its last synced frame.
   */
  crash(keepUnsynced: number, loseLastSynced: boolean): void {
    this.incarnation++;
    this.waiters = [];
    // A lost frame cuts the log there: nothing written after it survives either.
    if (loseLastSynced) this.synced.pop();
    else this.synced.push(...this.unsynced.slice(0, keepUnsynced));
    this.unsynced = [];
  }
}

/** One process's storage over a SimDisk. */
export class SimGroupStorage implements GroupStorage {
  private closed = false;

  constructor(
    private readonly disk: SimDisk,
    private readonly incarnation: number,
    private readonly groupId: number,
    private readonly view: LogView,
  ) {}

  initialState(): { hardState: HardState; conf: ConfState } {
    return this.view.initialState();
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.view.entries(lo, hi, maxBytes);
  }
  term(index: number): number {
    return this.view.term(index);
  }
  firstIndex(): number {
    return this.view.firstIndex();
  }
  lastIndex(): number {
    return this.view.lastIndex();
  }
  snapshot(): Snapshot {
    return this.view.snapshot();
  }

  append(entries: readonly Entry[], hardState?: HardState): Promise<void> {
    if (this.closed) return Promise.reject(new Error("storage closed"));
    if (this.disk.failed) return Promise.reject(new Error(`${this.disk.name}: the disk failed earlier`));
    const frame: Frame = {
      kind: "append",
      groupId: this.groupId,
      entries: entries.slice(),
      hardState: hardState === undefined ? undefined : { ...hardState },
    };
    if (entries.length === 0 && hardState === undefined) return this.disk.barrier(this.incarnation);
    const before = this.view.currentHardState();
    const commitOnly =
      entries.length === 0 &&
      hardState !== undefined &&
      hardState.term === before.term &&
      hardState.vote === before.vote;
    this.view.replay(frame);
    // As RaftStorage: a commit-only hard state resolves at once and rides with the next write.
    if (commitOnly) return this.disk.writeUnawaited(this.incarnation, frame);
    return this.disk.write(this.incarnation, frame);
  }

  async saveSnapshot(meta: SnapshotMeta, data: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
    const bytes = data instanceof Uint8Array ? data : await concat(data);
    if (this.closed) throw new Error("storage closed");
    const current = this.view.snapshot().meta.index;
    if (meta.index < current) throw new RangeError(`snapshot ${meta.index} is older than ${current}`);
    const frame: Frame = { kind: "snapshot", groupId: this.groupId, snapshot: { meta, data: bytes } };
    const durable = this.disk.write(this.incarnation, frame);
    this.view.replay(frame);
    await durable;
  }

  async compact(index: number): Promise<void> {
    this.view.compact(index);
  }

  async loadLatestSnapshot(): Promise<Snapshot | null> {
    const snapshot = this.view.snapshot();
    return snapshot.meta.index > 0 ? snapshot : null;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

async function concat(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of chunks) {
    parts.push(chunk);
    length += chunk.byteLength;
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** The log as RaftStorage's in-memory view keeps it: entries after a base point, a snapshot, a hard state. */
class LogView {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot;
  private baseIndex = 0;
  private baseTerm = 0;
  private ents: Entry[] = [];

  constructor(private readonly initialConf: ConfState) {
    this.snap = { meta: { index: 0, term: 0, timeMs: 0, conf: initialConf }, data: new Uint8Array(0) };
  }

  replay(frame: Frame): void {
    if (frame.kind === "snapshot") {
      const { meta } = frame.snapshot;
      this.snap = frame.snapshot;
      // Ours (the log holds its point): keep the log. A leader's: the log restarts there.
      if (this.termAt(meta.index) !== meta.term) {
        this.baseIndex = meta.index;
        this.baseTerm = meta.term;
        this.ents = [];
      }
      return;
    }
    const first = frame.entries[0];
    if (first !== undefined) {
      let from = 0;
      while (from < frame.entries.length && frame.entries[from]!.index <= this.baseIndex) from++;
      if (from < frame.entries.length) {
        const start = frame.entries[from]!.index;
        if (start > this.lastIndex() + 1) {
          throw new RangeError(`append at ${start} leaves a gap after ${this.lastIndex()}`);
        }
        this.ents.length = start - this.baseIndex - 1;
        for (let i = from; i < frame.entries.length; i++) this.ents.push(frame.entries[i]!);
      }
    }
    if (frame.hardState !== undefined) this.hardState = { ...frame.hardState };
  }

  currentHardState(): HardState {
    return this.hardState;
  }

  compact(index: number): void {
    const cut = Math.min(index, this.snap.meta.index, this.lastIndex());
    if (cut <= this.baseIndex) return;
    const count = cut - this.baseIndex;
    this.baseTerm = this.ents[count - 1]!.term;
    this.ents = this.ents.slice(count);
    this.baseIndex = cut;
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    const hardState = { ...this.hardState };
    if (hardState.commit < this.snap.meta.index) hardState.commit = this.snap.meta.index;
    if (hardState.commit > this.lastIndex()) hardState.commit = this.lastIndex();
    const conf = this.snap.meta.index > 0 ? this.snap.meta.conf : this.initialConf;
    return { hardState, conf: { voters: [...conf.voters], learners: [...conf.learners] } };
  }

  private termAt(index: number): number | undefined {
    if (index === this.baseIndex) return this.baseTerm;
    return this.ents[index - this.baseIndex - 1]?.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.baseIndex) throw new RangeError(`entry ${lo} is compacted (first ${this.firstIndex()})`);
    if (hi > this.lastIndex() + 1) throw new RangeError(`entry ${hi - 1} is beyond ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let index = lo; index < hi; index++) {
      const entry = this.ents[index - this.baseIndex - 1]!;
      bytes += entry.data.byteLength;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(entry);
    }
    return out;
  }

  term(index: number): number {
    const term = this.termAt(index);
    if (term !== undefined) return term;
    if (index === this.snap.meta.index) return this.snap.meta.term;
    throw new RangeError(`entry ${index} is not in the log [${this.firstIndex()}, ${this.lastIndex()}]`);
  }

  firstIndex(): number {
    return this.baseIndex + 1;
  }

  lastIndex(): number {
    return this.baseIndex + this.ents.length;
  }

  snapshot(): Snapshot {
    return this.snap;
  }
}

import type { KeyRange } from "../kvdb.ts";
import { RunConverter } from "./key-runs.ts";
import { OrderedKeys } from "./ordered-keys.ts";
import { OrderedKeysBuilder } from "./ordered-keys-builder.ts";

/**
 * Least notes a DeferredOrder keeps before it may drop them (see `note`); above it, twice
 * the settled keys.
 */
export const NOTES_MIN = 4096;
/**
 * Work units one slice of a build or fold does by default (a unit ≈ one key read or moved,
 * see OrderedKeysBuilder.step): one leaf's worth; measured with test/bench/data-api.ts
 * `--first-list` at a few ms of the JS thread's CPU per slice on a 1M-key build.
 */
export const SLICE_UNITS = 4096;
/**
 * How often (in notes) a write checks the bounds that ask `keyCount` (a sum over the
 * shards): every CHECK_EVERY notes past NOTES_MIN.
 */
export const CHECK_EVERY = 256;
/**
 * Units a slice plans per note cost (see noteCost): a fold slice takes notes of about
 * sliceUnits / this in cost (1024 short keys by default; two or three of 32 KB) and those
 * of long keys that came since the slice before (LONG_PER_UNIT), a fold is due once that
 * much cost waits, and `ready` means at most sliceUnits / this notes are left. Half of a
 * slice is the notes themselves (NOTE_UNITS), half the merges they lead to (see `slice`).
 */
const FOLD_UNITS_PER_NOTE = 4;
/**
 * Long keys' share of note cost (the 1 per 64 bytes of noteCost) per slice unit: a fold
 * slice also takes up to this much of the long keys that came since the slice before (so
 * a writer of long keys is kept up with, up to ~512 KiB of key bytes — sixteen 32 KB keys
 * — a turn by default, and a burst drains at that pace: no backlog builds for a reader to
 * wait behind; above that, a waiting reader's slices escalate, see `slice`), and `ready`
 * allows this much of them left, folded by the reader's own call (~512 KiB, a few ms: at
 * most about what one slice folds). Such a slice gives the merges as much as its notes,
 * so it does up to ~2 · (1/2 + 2 · NOTE_UNITS) ≈ 9 slices' units, by what the writer's
 * turn cost. Before stop 31 `ready` counted notes: 1024 notes of 32 KB keys (~32 MB, ~160
 * ms) were "ready", and a list folded them in its call.
 */
const LONG_PER_UNIT = 2;
/**
 * Units one note cost is when folded (a short key: a check; its bytes encoded and sorted
 * into a run: ~100 ns). A note costs 1, and 1 more per 64 of its key's code units (see
 * noteCost).
 */
const NOTE_UNITS = 2;

/**
 * What folding a noted key costs, in notes of a short key: 1, and 1 more per 64 bytes of
 * its key in UTF-8 (its long part). Bytes, not code units (before stop 32: a non-ASCII key
 * was charged up to 3x less than the bytes KeyRuns folds). A key under 64 code units is
 * charged 1 without counting (at most 189 bytes: within what `ready` allows for 1024
 * notes); a longer one asks Buffer.byteLength (native: ~0.5 us for 32 KB of Latin-1) and
 * is charged min(3 · length, 2 · UTF-8 bytes - length): an upper bound of what KeyRuns
 * writes (key-bytes.ts), exact for ASCII and for surrogate pairs (4 UTF-8 bytes, 6 there;
 * revidx32 F3), 1.5x over for 2-byte units, 5/3 for 3-byte ones.
 */
export function noteCost(key: string): number {
  if (key.length < 64) return 1;
  return 1 + (Math.min(3 * key.length, 2 * Buffer.byteLength(key, "utf8") - key.length) >>> 6);
}
/**
 * A waiting reader's escalation takes up to 2^ESCALATION_MAX bases a slice (8k short keys,
 * ~512 KiB of long ones), or twice what came between two slices lately if more (see
 * `slice`). With no cap one escalated slice folded about half of whatever backlog a writer
 * had left (revidx32 F2: 0.5-0.7 s of one turn at 1M notes).
 */
const ESCALATION_MAX = 3;
/** Doublings counted at most (the cap may be twice a recent turn's notes: 2^30 bases is past any). */
const ESCALATION_DOUBLINGS_MAX = 30;
/**
 * Entries a merge moves (KeyRuns.advance counts them, and one more per 64 bytes) per work
 * unit. A unit is about a key read or moved as a JS string (OrderedKeysBuilder: 48-83 ns
 * a unit on a 1M-key build); a merge copies an entry's bytes in order: 11-12 ns (1M keys,
 * 8.2M entries merged).
 */
const MERGE_ENTRIES_PER_UNIT = 6;
/**
 * How long background folds wait before they check whether the writes have paused (see
 * `kickLater`). Checking at the next turn instead made a server fold a few dozen notes at
 * a time: between its reads of a socket a turn often brings no write (1M new keys through
 * a server: 67 notes a fold; runs that short cost every key ~4 more merges).
 */
const PAUSE_MS = 1;
/** Notes a list is emptied in place up to (see dropNotes): a turn's worth, a few slices. */
const NOTES_KEPT_MAX = 4 * SLICE_UNITS;
/**
 * Restarts of one build (its notes outgrew their bound while it ran) before the next
 * build runs in one piece: under a write rate that outruns the slices, a reader waiting
 * for the order still gets it.
 */
const BUILD_RESTARTS_MAX = 2;

/**
 * Keys that start with this (NUL, the least code unit) form the reserved space: the lock
 * wait queues (src/store/lock-queue.ts). They sort before every key but "", are few (at
 * most LOCK_WAITERS_MAX per lock) and are listed inside a deterministic Raft apply, where
 * nothing may wait for a build: so they are also kept in a small index of their own,
 * sorted on every write (see DeferredOrder, "Reserved keys").
 */
export const RESERVED_KEY_START = "\u0000";

/**
 * Whether every key a scan of this range may visit lies in the reserved space, so the
 * reserved keys' index can answer it: a prefix in the space, or `[from, to)` with `from`
 * in it and `to` no later than its end.
 */
export function inReservedSpace(range: KeyRange): boolean {
  if (range.prefix !== undefined) return range.prefix.startsWith(RESERVED_KEY_START);
  return (
    range.from?.startsWith(RESERVED_KEY_START) === true &&
    range.to !== undefined &&
    (range.to.startsWith(RESERVED_KEY_START) || range.to === "\u0001")
  );
}

export interface DeferredOrderOptions {
  /**
   * Keep the settled index as blocks of the keys' strings (OrderedKeys) instead of runs of
   * their bytes (KeyRuns): for an engine whose maps hold every key's string anyway
   * (MapleDB), where the runs save no memory and their merges cost more CPU a new key
   * (test/bench/data-api.ts insertTurns: 2.7-3.9x the engine before the data API with
   * runs, 1.9-2.8x with blocks, 100k keys).
   */
  stringIndex?: boolean;
  /** Work units per slice (default SLICE_UNITS); at least OrderedKeysBuilder's LEAF_UNITS_MAX is sensible. */
  sliceUnits?: number;
  /**
   * Runs a slice after the event loop's pending work (default: setImmediate), and the
   * checks for paused writes (default: after PAUSE_MS; with `schedule` given, through it).
   * Tests pass their own.
   */
  schedule?: (run: () => void) => void;
  /**
   * How many keys are present (the maps' sizes summed), for the notes' bound; without
   * it, the settled index's size (a bulk load in one turn then folds in one piece sooner).
   */
  keyCount?: () => number;
}

/** What the order has done; for tests and monitoring. */
export interface OrderStats {
  /** Slices run between event-loop turns. */
  slices: number;
  /** The most work units one slice did. */
  maxSliceUnits: number;
  /** Builds finished (in slices or in one piece). */
  builds: number;
  /** Builds or folds done in one piece because a reader needed the order synchronously. */
  syncSettles: number;
  /** Folds done in one piece because the notes outgrew their bound within one turn (see `note`). */
  boundFolds: number;
  /** Notes folded into a built index (in slices or in one piece). */
  folded: number;
  /** Builds started over because their notes outgrew the bound. */
  restarts: number;
  /** Slices run with no reader waiting: notes folded into a built index in the background. */
  backgroundSlices: number;
  /** Scans answered from the reserved keys' own index (no build, ready or not). */
  reservedScans: number;
}

/** What DeferredOrder folds its notes into and scans: KeyRuns, or BlockIndex. */
export interface SettledIndex {
  readonly size: number;
  /** Entries read by scans (see KeyRuns.work). */
  readonly work: number;
  /** Whether `advance` has work (merges under way). */
  readonly pending: boolean;
  /**
   * Adds keys none of which it holds; moves merges on by up to `budget` entries; returns
   * the entries moved. With `gather`, KeyRuns may keep the last few unsorted until more
   * come or a read needs them (see KeyRuns.insertBatch).
   */
  insertBatch(keys: readonly string[], from: number, end: number, budget?: number, gather?: boolean): number;
  /** Removes keys all of which it holds; as insertBatch. */
  removeBatch(keys: readonly string[], from: number, end: number, budget?: number): number;
  advance(budget: number): number;
  has(key: string): boolean;
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void;
  keys(): string[];
}

/** OrderedKeys as a SettledIndex: inserts and removals in place, nothing left to merge. */
class BlockIndex implements SettledIndex {
  readonly pending = false;

  constructor(private readonly blocks: OrderedKeys) {}

  get size(): number {
    return this.blocks.size;
  }

  get work(): number {
    return this.blocks.work;
  }

  insertBatch(keys: readonly string[], from: number, end: number): number {
    this.blocks.insertBatch(keys, from, end);
    return 0;
  }

  removeBatch(keys: readonly string[], from: number, end: number): number {
    for (let i = from; i < end; i++) this.blocks.remove(keys[i]!);
    return 0;
  }

  advance(): number {
    return 0;
  }

  has(key: string): boolean {
    return this.blocks.has(key);
  }

  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.blocks.scan(from, exclusive, visit);
  }

  keys(): string[] {
    return this.blocks.keys();
  }
}

interface Waiting {
  promise: Promise<void>;
  wake: () => void;
}

/**
 * The ordered index with its upkeep taken off the write path and out of any one
 * event-loop turn. Kept from the first write: a MapleDB starts with an empty, built index
 * and a snapshot load hands it one built from the snapshot (see MapleDB.load), so every
 * store's first page costs O(log n + page) like the pages after it. States:
 *
 * - Built: a write notes the key it added or removed in an unsorted buffer (one array
 *   push), and the notes are folded in between event-loop turns, one slice at a time
 *   (a slice's adds become a sorted run of key bytes, its removals mark entries dead;
 *   merges and rewrites of the runs go on in the same slices, bounded: see KeyRuns; or,
 *   with `stringIndex`, the keys go into OrderedKeys' blocks). A background fold waits
 *   for a slice's worth of notes unless a reader waits or the writes paused. A reader
 *   folds what is left: at once when it is little (`ready`), else in slices first.
 * - Unbuilt: only after `dropped` (the database is being replaced or closed): writes note
 *   nothing, and a reader that still comes builds the index from the hash maps
 *   (`sources`: live iterators) with an OrderedKeysBuilder, one slice of at most
 *   `sliceUnits` work per event-loop turn, writes meanwhile noted; the finished
 *   OrderedKeys is converted into one run of KeyRuns in more such slices (RunConverter;
 *   its strings let go after), or kept as it is with `stringIndex`.
 *
 * Readers: `whenReady` resolves once the index is built and its notes are few enough to
 * fold within one slice; every caller waiting meanwhile shares the work. The reader then
 * reads synchronously (`scan`), which folds the last notes, so the answer is exact at
 * the moment it is given. `scan` called while not ready (a caller that cannot wait, e.g.
 * a deterministic state machine step) finishes the work in one piece: correct, and
 * counted in `syncSettles`.
 *
 * Why notes, not a sorted insert per write: the index's insert costs about what the hash
 * map's does (test/bench/data-api.ts), so a write would pay twice; a note is one push,
 * and the fold runs when the event loop is otherwise idle.
 *
 * Bounds: the notes never exceed max(NOTES_MIN, twice the keys present): past that (a
 * turn whose writes outrun the folds: a bulk load in one turn, churn of a few keys) they
 * are folded in one piece there and then (`boundFolds`), which costs O(log n) per noted
 * write, paid by the turn that made them. A build (unbuilt state only) whose notes pass
 * twice the keys it read starts over, at most BUILD_RESTARTS_MAX times before one runs in
 * one piece. `close` drops everything.
 *
 * Truth: a fold asks `isPresent` (the hash maps) for each noted key that was removed
 * since the notes were last all folded (`removedKeys`), or for every key when a build read
 * the maps while they changed, so any interleaving of adds and removes of one key (add,
 * remove, add again, ...) ends as the maps say. Any other noted key was added once and
 * not removed since the index last matched the maps: it is new and distinct (the maps
 * hold a key once), so it is not looked up (nor in the index). A key a build did not read and no note names was present
 * throughout the build (unchanged since it started), so the build read it: the sources
 * yield every key present when the build starts and still present when read (and, being
 * bounded by the keys present at the start, end however fast writers add keys).
 *
 * Reserved keys (RESERVED_KEY_START, the lock queues): also kept, in every state, in a
 * small OrderedKeys of their own, updated on each add and remove (O(log r), r of them). A
 * scan of a range inside that space (`scanRange`, see inReservedSpace) reads it and never
 * builds or folds the full index: a lock-queue step applied inside Raft must not wait
 * for the folds of a burst of writes (nor for a build, on an order that was dropped).
 */
export class DeferredOrder {
  private settled: SettledIndex | null;
  /** Keys added or removed, in arrival order (while built or building); those before `folded` are in. */
  private notes: string[] = [];
  private folded = 0;
  /** The notes' cost not folded yet (noteCost of `notes[folded, length)`, summed): what `ready` and a fold's due-ness count. */
  private notesCost = 0;
  /** The long part of the cost of the notes made since the last slice ran (see LONG_PER_UNIT). */
  private arrivedLong = 0;
  /** The cost of the notes made since the last slice ran, in all (see `slice`). */
  private arrivedCost = 0;
  /**
   * The most cost noted between two slices lately: the largest `arrivedCost` a slice saw,
   * halved at each slice after (see `slice`, the escalation's cap).
   */
  private recentCost = 0;
  /**
   * The waiting reader's escalation (see `slice`): its fold slices take notes of up to
   * 2^escalation times a slice's base; reset when it is woken.
   */
  private escalation = 0;
  /** The notes' cost left after the waiting reader's last fold slice (+Infinity before its first). */
  private backlogAtWait = Number.POSITIVE_INFINITY;
  /**
   * Keys noted as removed since the notes were last all folded (and dropped): a noted key
   * not among them was added once and never removed since the index last matched the
   * maps, so it is new to the index and its fold needs no check (see `apply`).
   */
  private removedKeys = new Set<string>();
  /** The notes may name keys already in the index (a build read the maps while they changed). */
  private checkNotes = false;
  private builder: OrderedKeysBuilder | null = null;
  /** Notes made in all, and at the last check for paused writes (see kickLater). */
  private noted = 0;
  private notedAtCheck = 0;
  private checkArmed = false;
  /** A finished build's index being converted into KeyRuns, in slices (then `settled`). */
  private converter: RunConverter | null = null;
  private buildRestarts = 0;
  private waiting: Waiting | null = null;
  private scheduled = false;
  private closed = false;
  private readonly isPresent: (key: string) => boolean;
  private readonly sources: () => Iterator<string>[];
  private readonly sliceUnits: number;
  private readonly schedule: (run: () => void) => void;
  private readonly scheduleCheck: (run: () => void) => void;
  private readonly keyCount: () => number;
  private readonly counters: OrderStats = {
    slices: 0,
    maxSliceUnits: 0,
    builds: 0,
    syncSettles: 0,
    boundFolds: 0,
    folded: 0,
    restarts: 0,
    backgroundSlices: 0,
    reservedScans: 0,
  };
  /** The reserved keys present (see the class comment), always exact. */
  private readonly reserved: OrderedKeys;
  private readonly options: DeferredOrderOptions;
  private readonly stringIndex: boolean;

  /**
   * `sources`: iterators over every present key (live ones: see OrderedKeysBuilder);
   * `settled`: an index of every present key, built already (an empty one for an empty
   * database, or a snapshot load's; an OrderedKeys is kept with `stringIndex`, else
   * converted into KeyRuns: a slice's worth at once, the rest in slices as a build's is,
   * meanwhile noting writes); without it the order is unbuilt (see `dropped`), and no
   * reserved key may be present yet unless `reserved` holds them.
   */
  constructor(
    isPresent: (key: string) => boolean,
    sources: () => Iterator<string>[],
    settled?: OrderedKeys | SettledIndex,
    options: DeferredOrderOptions = {},
    reserved?: OrderedKeys,
  ) {
    this.isPresent = isPresent;
    this.sources = sources;
    this.stringIndex = options.stringIndex === true;
    this.sliceUnits = options.sliceUnits ?? SLICE_UNITS;
    this.settled = null;
    if (settled instanceof OrderedKeys) {
      if (this.stringIndex) this.settled = new BlockIndex(settled);
      else {
        // A slice's worth of the conversion now (all of a small index: a new database's),
        // the rest in slices.
        const converter = new RunConverter(settled);
        let units = 0;
        while (!converter.done && units < this.sliceUnits)
          units += Math.max(1, converter.step(this.sliceUnits - units));
        if (converter.done) this.settled = converter.result();
        else this.converter = converter;
      }
    } else if (settled !== undefined) this.settled = settled;
    this.schedule = options.schedule ?? ((run) => setImmediate(run));
    const check = (run: () => void): void => {
      setTimeout(run, PAUSE_MS).unref();
    };
    this.scheduleCheck = options.schedule ?? check;
    this.keyCount = options.keyCount ?? (() => this.settled?.size ?? 0);
    this.options = options;
    this.reserved =
      reserved ??
      (settled instanceof OrderedKeys
        ? reservedOf(settled)
        : this.settled === null
          ? new OrderedKeys()
          : reservedOf(this.settled));
    if (this.converter !== null) this.kick();
  }

  /**
   * Closes this order (as `close`) and returns a fresh, unbuilt one over the same maps
   * that keeps the reserved keys' index (the maps still hold those keys).
   */
  dropped(): DeferredOrder {
    const reserved = this.reserved;
    this.close();
    return new DeferredOrder(this.isPresent, this.sources, undefined, this.options, reserved);
  }

  /** A key not present before is now (the caller's map already holds it). */
  added(key: string): void {
    if (key.startsWith(RESERVED_KEY_START)) this.reserved.insert(key);
    if (this.tracking) this.note(key);
  }

  /** A present key is gone (the caller's map no longer holds it). */
  removed(key: string): void {
    if (key.startsWith(RESERVED_KEY_START)) this.reserved.remove(key);
    if (!this.tracking) return;
    this.removedKeys.add(key);
    this.note(key);
  }

  /** Whether writes are noted: built, or a build (or its conversion) under way. */
  private get tracking(): boolean {
    return this.settled !== null || this.builder !== null || this.converter !== null;
  }

  /**
   * Bounds, once built: the notes (writes in one long turn outrun the folds) stay at most
   * NOTES_MIN + twice the keys present; past that they are folded in one piece now (see
   * the class comment). Checked every CHECK_EVERY notes past NOTES_MIN.
   */
  private note(key: string): void {
    const notes = this.notes;
    notes.push(key);
    this.noted++;
    const cost = noteCost(key);
    this.notesCost += cost;
    this.arrivedLong += cost - 1;
    this.arrivedCost += cost;
    if (this.settled === null) {
      const read = this.builder !== null ? this.builder.keysRead : this.converter!.size;
      if (notes.length > NOTES_MIN && notes.length > 2 * read) this.restartBuild();
      return;
    }
    // Built: folded in the background, in slices between turns: a slice's worth next
    // turn (merges under way: each turn), fewer once the writes pause.
    const unsettled = notes.length - this.folded;
    if (this.settled.pending || this.notesCost * FOLD_UNITS_PER_NOTE >= this.sliceUnits) this.kick();
    else this.kickLater();
    if (unsettled <= NOTES_MIN || unsettled % CHECK_EVERY !== 0) return;
    if (unsettled > NOTES_MIN + 2 * this.keyCount()) {
      this.counters.boundFolds++;
      this.fold(Number.POSITIVE_INFINITY);
    }
  }

  private dropNotes(): void {
    // Emptied in place after an ordinary turn's notes (no new array to grow again next
    // turn); a long list (a burst) is let go rather than kept at its size.
    if (this.notes.length <= NOTES_KEPT_MAX) this.notes.length = 0;
    else this.notes = [];
    this.folded = 0;
    this.notesCost = 0;
    this.arrivedLong = 0;
    this.arrivedCost = 0;
    if (this.removedKeys.size > 0) {
      // A large set is let go rather than kept (clear keeps its table).
      if (this.removedKeys.size <= NOTES_KEPT_MAX) this.removedKeys.clear();
      else this.removedKeys = new Set();
    }
    this.checkNotes = false;
  }

  private restartBuild(): void {
    this.builder = null;
    this.converter = null;
    this.buildRestarts++;
    this.counters.restarts++;
    this.dropNotes();
    this.kick();
  }

  /** Whether the index is built (else the next reader builds it from the maps); for tests. */
  get built(): boolean {
    return this.settled !== null;
  }

  /** Whether a build is under way; for tests and monitoring. */
  get building(): boolean {
    return this.builder !== null || this.converter !== null;
  }

  /** Keys noted and not settled yet; for tests and monitoring. */
  get unsettled(): number {
    return this.notes.length - this.folded;
  }

  get stats(): Readonly<OrderStats> {
    return this.counters;
  }

  /**
   * Keys the settled index and the reserved keys' index have read or moved for scans (see
   * KeyRuns.work, OrderedKeys.work): what pages cost; for tests.
   */
  get work(): number {
    return (this.settled?.work ?? 0) + this.reserved.work;
  }

  /**
   * Whether `scan` now does about one slice of work: built, and few notes to fold — at
   * most a slice's worth, and long keys of at most LONG_PER_UNIT · sliceUnits in their
   * long part (see noteCost).
   */
  get ready(): boolean {
    if (this.closed) return true;
    if (this.settled === null) return false;
    const count = this.notes.length - this.folded;
    return (
      count * FOLD_UNITS_PER_NOTE <= this.sliceUnits &&
      this.notesCost - count <= LONG_PER_UNIT * this.sliceUnits
    );
  }

  /** The cost of the notes not folded yet (see noteCost); for tests. */
  get unsettledCost(): number {
    return this.notesCost;
  }

  /**
   * Resolves once `ready` (or closed), building or folding in slices meanwhile; all
   * callers share one build. Writes may follow before the caller reads: check `ready`
   * again, or let `scan` fold the few notes they leave.
   */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.waiting === null) {
      let wake!: () => void;
      const promise = new Promise<void>((resolve) => {
        wake = resolve;
      });
      this.waiting = { promise, wake };
    }
    this.kick();
    return this.waiting.promise;
  }

  /** Stops any build and wakes every waiter (the database is replaced or gone). */
  close(): void {
    this.closed = true;
    this.builder = null;
    this.converter = null;
    this.settled = null;
    this.dropNotes();
    this.wake();
  }

  private wake(): void {
    const waiting = this.waiting;
    if (waiting === null) return;
    this.waiting = null;
    this.escalation = 0;
    this.backlogAtWait = Number.POSITIVE_INFINITY;
    waiting.wake();
  }

  private kick(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    // A check queued on the tests' scheduler runs as this slice (one slice queued at a time, as before).
    if (this.checkArmed && this.scheduleCheck === this.schedule) return;
    this.schedule(() => {
      this.scheduled = false;
      this.slice(false);
    });
  }

  /**
   * Notes wait for more (a fold takes a slice's worth): a slice after PAUSE_MS, which
   * folds them if no note came meanwhile (the writes paused), else checks again later.
   */
  private kickLater(): void {
    if (this.checkArmed || this.scheduled || this.closed) return;
    this.checkArmed = true;
    this.notedAtCheck = this.noted;
    this.scheduleCheck(() => {
      this.checkArmed = false;
      // Run as a kicked slice meanwhile (see kick): no pause to look for.
      const kicked = this.scheduled && this.scheduleCheck === this.schedule;
      if (kicked) this.scheduled = false;
      // A slice is coming anyway (kicked since): it re-arms the check if notes are left.
      else if (this.scheduled) return;
      this.slice(!kicked && this.noted === this.notedAtCheck);
    });
  }

  /**
   * One bounded step of the build (while a reader waits, or one a reader started) or of
   * the fold (whenever notes wait, reader or not), then another turn while work is left.
   */
  private slice(paused: boolean): void {
    if (this.closed) return;
    const waiting = this.waiting !== null;
    const arrived = Math.min(this.arrivedLong, LONG_PER_UNIT * this.sliceUnits);
    const arrivedCost = this.arrivedCost;
    this.recentCost = Math.max(arrivedCost, this.recentCost / 2);
    this.arrivedLong = 0;
    this.arrivedCost = 0;
    let units = -1;
    const settled = this.settled;
    if (settled === null) {
      if (!waiting && this.builder === null && this.converter === null) return;
      // Only a waiting reader escalates to one piece (a build that keeps restarting).
      const oneGo = waiting && this.buildRestarts > BUILD_RESTARTS_MAX;
      const budget = oneGo ? Number.POSITIVE_INFINITY : this.sliceUnits;
      units = 0;
      if (this.converter === null) {
        const builder = this.startedBuilder();
        units = builder.step(budget);
        if (builder.done) this.finishBuild(builder);
      }
      const converter = this.converter;
      if (converter !== null) {
        // A unit a key read from the built index (counted, then encoded).
        while (units < budget && !converter.done) units += Math.max(1, converter.step(budget - units));
        if (converter.done) this.finishConversion(converter);
      }
    } else {
      const unsettled = this.notes.length - this.folded;
      // A fold makes a run of its notes, so it waits for a slice's worth (1024 short keys
      // by default: fewer, longer runs, and each key is merged about log2(n / run) times;
      // 50 writes a turn made runs of 50 and four more merges a key) unless a reader waits
      // or the writes have paused (no note since the last slice).
      const most = Math.max(1, Math.floor(this.sliceUnits / FOLD_UNITS_PER_NOTE));
      const due = this.notesCost >= most || (unsettled > 0 && (waiting || paused));
      if (due) {
        // Notes for up to half the slice (1024 short keys; two or three of 32 KB), and what
        // is left of it for the merges: a slice folds as many notes as a turn of writes
        // brings (up to 1024) while the runs stay few. And the long keys that came since
        // the slice before, up to LONG_PER_UNIT (the merges wait): with half a slice alone
        // a writer of six 32 KB keys a turn outran the folds, and a reader that waits for
        // `ready` (which counts their bytes) was never let through. Such a slice passes
        // the budget only when the turn before brought more than half a slice of long
        // keys: that turn's writes cost about as much. The merges then get as much as the
        // notes (about what a long key's merges cost over its life): with only what was
        // left of the slice (none) runs of long keys piled up to RUNS_MAX (revidx31 R4).
        const base = this.sliceUnits / (2 * NOTE_UNITS);
        let target = base + arrived;
        // A waiting reader's escalation (stop 32): a writer that brings more than that
        // every turn (above ~512 KiB of long keys, or 1024 short ones), sustained, left
        // more notes after each slice than before it, and a reader waiting for `ready`
        // waited until the writer paused. So while a reader waits, each slice after which
        // the notes left fell by less than what came since the slice before (or half a
        // base; whatever came: a writer at a base a turn behind a burst stalled it too,
        // revidx32 F1) doubles what the next takes,
        // up to 2^ESCALATION_MAX bases or twice the most that came between two slices
        // lately (halved per slice), whichever is more: with no cap one slice folded about
        // half of whatever backlog the writer had left (revidx32 F2). A slice so takes at
        // most twice the one before it and at most max(8 bases, twice a recent turn's
        // notes), and as much of merges. A burst with no writer after it falls by a base a
        // slice: no escalation (slices within their budget, as before).
        if (waiting && this.escalation > 0) {
          const cap = Math.max(base * 2 ** ESCALATION_MAX, 2 * this.recentCost);
          target = Math.max(target, Math.min(base * 2 ** this.escalation, cap));
        }
        const notes = this.notes;
        let take = 0;
        let cost = 0;
        const at = this.folded;
        while (take < unsettled && cost < target) {
          cost += noteCost(notes[at + take]!);
          take++;
        }
        // A background fold while writes go on lets KeyRuns gather its keys into longer runs.
        const gather = !waiting && !paused;
        const extra = cost > base + arrived || arrived > 0;
        const mergeBudget = Math.max(this.sliceUnits - cost * NOTE_UNITS, extra ? cost * NOTE_UNITS : 0);
        units = this.fold(take, mergeBudget, cost * NOTE_UNITS, gather, cost);
        if (waiting) {
          const left = this.notesCost;
          const fell = this.backlogAtWait - left;
          if (
            left > 0 &&
            fell < Math.max(base / 2, arrivedCost) &&
            this.escalation < ESCALATION_DOUBLINGS_MAX
          )
            this.escalation++;
          this.backlogAtWait = left;
        }
      } else if (settled.pending) {
        units = mergeUnits(settled.advance(this.sliceUnits * MERGE_ENTRIES_PER_UNIT));
      }
    }
    if (units >= 0) {
      this.counters.slices++;
      if (!waiting) this.counters.backgroundSlices++;
      if (units > this.counters.maxSliceUnits) this.counters.maxSliceUnits = units;
    }
    if (this.ready) this.wake();
    const left = this.notes.length - this.folded;
    if (
      this.builder !== null ||
      this.converter !== null ||
      (this.settled !== null &&
        (this.settled.pending ||
          this.notesCost * FOLD_UNITS_PER_NOTE >= this.sliceUnits ||
          (left > 0 && this.waiting !== null)))
    )
      this.kick();
    else if (this.settled !== null && left > 0) this.kickLater();
  }

  private startedBuilder(): OrderedKeysBuilder {
    if (this.builder === null) this.builder = new OrderedKeysBuilder(this.sources());
    return this.builder;
  }

  /** The build is done: its index (strings) is kept, or converted into KeyRuns next, in slices. */
  private finishBuild(builder: OrderedKeysBuilder): void {
    this.builder = null;
    if (this.stringIndex) this.settleBuilt(new BlockIndex(builder.result()));
    else this.converter = new RunConverter(builder.result());
  }

  private finishConversion(converter: RunConverter): void {
    this.converter = null;
    this.settleBuilt(converter.result());
  }

  private settleBuilt(index: SettledIndex): void {
    this.settled = index;
    this.buildRestarts = 0;
    this.counters.builds++;
    // The build read live maps: notes may name keys it read too, or keys it missed.
    if (this.notes.length > 0) this.checkNotes = true;
  }

  /**
   * Folds in at most `max` notes (the oldest first), with up to `mergeBudget` units of
   * merges (default: the pace KeyRuns sets, see KeyRuns.insertBatch); returns the work
   * units done. `cost`: the notes' cost (noteCost summed) when the caller counted it;
   * needed unless all are folded.
   */
  private fold(max: number, mergeBudget?: number, noteUnits?: number, gather = false, cost = 0): number {
    const notes = this.notes;
    const end = Math.min(notes.length, this.folded + max);
    const from = this.folded;
    this.folded = end;
    this.notesCost = end === notes.length ? 0 : this.notesCost - cost;
    this.counters.folded += end - from;
    const entries = this.apply(
      notes,
      from,
      end,
      mergeBudget === undefined ? undefined : mergeBudget * MERGE_ENTRIES_PER_UNIT,
      gather,
    );
    if (end === notes.length) this.dropNotes();
    else if (this.folded >= NOTES_MIN && 2 * this.folded >= notes.length) {
      // Writes keep ahead of the slices: let the folded half go.
      this.notes = notes.slice(this.folded);
      this.folded = 0;
    }
    return (noteUnits ?? (end - from) * NOTE_UNITS) + mergeUnits(entries);
  }

  /** Like OrderedKeys.scan, over every key present now. */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.settle().scan(from, exclusive, visit);
  }

  /**
   * `scan` for a caller that stops at the end of `range`: a range inside the reserved
   * space is read from the reserved keys' index, ready or not (no build, no fold).
   */
  scanRange(range: KeyRange, from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    if (!inReservedSpace(range)) {
      this.scan(from, exclusive, visit);
      return;
    }
    if (this.closed) throw new Error("the ordered index was closed (its database was replaced)");
    this.counters.reservedScans++;
    this.reserved.scan(from, exclusive, visit);
  }

  /** The reserved keys present, in order; for tests. */
  reservedKeys(): string[] {
    return this.reserved.keys();
  }

  /** Every present key in order; for tests and consistency checks. */
  keys(): string[] {
    return this.settle().keys();
  }

  /**
   * Builds the index or folds every note in, now: bounded by one slice when `ready`, else
   * in one piece (see the class comment).
   */
  settle(): SettledIndex {
    if (this.closed) throw new Error("the ordered index was closed (its database was replaced)");
    const wasReady = this.ready;
    if (!wasReady) this.counters.syncSettles++;
    if (this.settled === null) {
      if (this.converter === null) {
        const builder = this.startedBuilder();
        builder.step(Number.POSITIVE_INFINITY);
        this.finishBuild(builder);
      }
      const converter = this.converter;
      if (converter !== null) {
        while (!converter.done) converter.step(Number.POSITIVE_INFINITY);
        this.finishConversion(converter);
      }
    }
    const settled = this.settled!;
    if (this.notes.length > this.folded) this.fold(Number.POSITIVE_INFINITY);
    if (!wasReady) this.wake();
    return settled;
  }

  /**
   * Puts `keys[from, end)` in or out of the settled index. A key neither removed since the
   * index last matched the maps nor noted while a build read them is new: those go in as
   * one batch. Others are checked against the maps (`isPresent`) and the index: a key
   * present and not in the index goes in, one absent and in it is removed (marked dead).
   * Merges move on by up to `budget` entries (default: KeyRuns' pace); returns the
   * entries they moved.
   */
  private apply(keys: readonly string[], from: number, end: number, budget?: number, gather = false): number {
    const settled = this.settled!;
    // In arrival order: insertBatch sorts the keys' bytes into a run itself.
    if (!this.checkNotes && this.removedKeys.size === 0) {
      // Adds alone into an index that matched the maps: all new and distinct.
      return settled.insertBatch(keys, from, end, budget, gather);
    }
    const removed = this.removedKeys;
    const adds: string[] = [];
    const removes: string[] = [];
    // A key noted more than once (churn on a few keys) is settled by its first visit.
    const seen = new Set<string>();
    for (let i = from; i < end; i++) {
      const key = keys[i]!;
      if (!this.checkNotes && !removed.has(key)) {
        // Noted once (a second note would be after a removal), not in the index yet.
        adds.push(key);
        continue;
      }
      if (seen.has(key)) continue;
      seen.add(key);
      if (this.isPresent(key)) {
        if (!settled.has(key)) adds.push(key);
      } else if (settled.has(key)) {
        removes.push(key);
      }
    }
    // Distinct (checked keys once each; the others noted once) and none in the index.
    const moved = settled.insertBatch(adds, 0, adds.length, budget, gather);
    return (
      moved +
      settled.removeBatch(
        removes,
        0,
        removes.length,
        budget === undefined ? undefined : Math.max(0, budget - moved),
      )
    );
  }
}

/** Work units of `entries` moved by merges. */
function mergeUnits(entries: number): number {
  return Math.ceil(entries / MERGE_ENTRIES_PER_UNIT);
}

/** The reserved keys of a built index (they come first, after "" only): O(log n + r). */
function reservedOf(settled: Pick<SettledIndex, "scan">): OrderedKeys {
  const keys: string[] = [];
  settled.scan(RESERVED_KEY_START, false, (key) => {
    if (!key.startsWith(RESERVED_KEY_START)) return false;
    keys.push(key);
    return true;
  });
  return OrderedKeys.fromSorted(keys);
}

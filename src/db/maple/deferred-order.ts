import type { KeyRange } from "../kvdb.ts";
import {
  BUILD_RESTARTS_MAX,
  type DeferredOrderOptions,
  ESCALATION_DOUBLINGS_MAX,
  ESCALATION_MAX,
  FOLD_UNITS_PER_NOTE,
  inReservedSpace,
  LONG_PER_UNIT,
  MERGE_ENTRIES_PER_UNIT,
  mergeUnits,
  NOTE_UNITS,
  noteCost,
  PAUSE_MS,
  RESERVED_KEY_START,
} from "./order-costs.ts";
import { OrderNotes } from "./order-notes.ts";
import { OrderedKeys } from "./ordered-keys.ts";
import { OrderedKeysBuilder } from "./ordered-keys-builder.ts";
import { RunConverter } from "./run-converter.ts";
import { BlockIndex, reservedOf, type SettledIndex } from "./settled-index.ts";

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
 *
 * Files: the notes and their fold are in OrderNotes (order-notes.ts), the bounds, costs,
 * options and reserved space in order-costs.ts, SettledIndex and BlockIndex in
 * settled-index.ts; here the scheduling of slices, the escalation, the build and reads.
 */
export class DeferredOrder extends OrderNotes {
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
  private notedAtCheck = 0;
  private checkArmed = false;
  private waiting: Waiting | null = null;
  private scheduled = false;
  private readonly sources: () => Iterator<string>[];
  private readonly schedule: (run: () => void) => void;
  private readonly scheduleCheck: (run: () => void) => void;
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
    super(isPresent, options);
    this.sources = sources;
    this.stringIndex = options.stringIndex === true;
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

  /**
   * Keys the settled index and the reserved keys' index have read or moved for scans (see
   * KeyRuns.work, OrderedKeys.work): what pages cost; for tests.
   */
  get work(): number {
    return (this.settled?.work ?? 0) + this.reserved.work;
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

  protected override kick(): void {
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
  protected override kickLater(): void {
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
}

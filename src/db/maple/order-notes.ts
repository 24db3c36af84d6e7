import {
  CHECK_EVERY,
  type DeferredOrderOptions,
  FOLD_UNITS_PER_NOTE,
  LONG_PER_UNIT,
  MERGE_ENTRIES_PER_UNIT,
  mergeUnits,
  NOTE_UNITS,
  NOTES_KEPT_MAX,
  NOTES_MIN,
  noteCost,
  type OrderStats,
  SLICE_UNITS,
} from "./order-costs.ts";
import type { OrderedKeysBuilder } from "./ordered-keys-builder.ts";
import type { RunConverter } from "./run-converter.ts";
import type { SettledIndex } from "./settled-index.ts";

/**
 * The first half of DeferredOrder (deferred-order.ts; see its class comment): the notes
 * writes leave (`note`, their cost and bounds) and their fold into the settled index
 * (`fold`, `apply`), with the state both halves read. DeferredOrder adds the scheduling
 * of slices (`kick`, `kickLater`, `slice`, the waiting reader's escalation), the build
 * and the reads. Split out of deferred-order.ts at stop 32 (no change).
 */
export abstract class OrderNotes {
  protected settled: SettledIndex | null = null;
  /** Keys added or removed, in arrival order (while built or building); those before `folded` are in. */
  protected notes: string[] = [];
  protected folded = 0;
  /** The notes' cost not folded yet (noteCost of `notes[folded, length)`, summed): what `ready` and a fold's due-ness count. */
  protected notesCost = 0;
  /** The long part of the cost of the notes made since the last slice ran (see LONG_PER_UNIT). */
  protected arrivedLong = 0;
  /** The cost of the notes made since the last slice ran, in all (see `slice`). */
  protected arrivedCost = 0;
  /**
   * Keys noted as removed since the notes were last all folded (and dropped): a noted key
   * not among them was added once and never removed since the index last matched the
   * maps, so it is new to the index and its fold needs no check (see `apply`).
   */
  protected removedKeys = new Set<string>();
  /** The notes may name keys already in the index (a build read the maps while they changed). */
  protected checkNotes = false;
  protected builder: OrderedKeysBuilder | null = null;
  /** Notes made in all, and at the last check for paused writes (see kickLater). */
  protected noted = 0;
  /** A finished build's index being converted into KeyRuns, in slices (then `settled`). */
  protected converter: RunConverter | null = null;
  protected buildRestarts = 0;
  protected closed = false;
  protected readonly isPresent: (key: string) => boolean;
  protected readonly sliceUnits: number;
  protected readonly keyCount: () => number;
  protected readonly counters: OrderStats = {
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

  constructor(isPresent: (key: string) => boolean, options: DeferredOrderOptions) {
    this.isPresent = isPresent;
    this.sliceUnits = options.sliceUnits ?? SLICE_UNITS;
    this.keyCount = options.keyCount ?? (() => this.settled?.size ?? 0);
  }

  /** Schedules a slice (see DeferredOrder.kick). */
  protected abstract kick(): void;
  /** Schedules a check for paused writes (see DeferredOrder.kickLater). */
  protected abstract kickLater(): void;

  /** Whether writes are noted: built, or a build (or its conversion) under way. */
  protected get tracking(): boolean {
    return this.settled !== null || this.builder !== null || this.converter !== null;
  }

  /**
   * Bounds, once built: the notes (writes in one long turn outrun the folds) stay at most
   * NOTES_MIN + twice the keys present; past that they are folded in one piece now (see
   * the class comment). Checked every CHECK_EVERY notes past NOTES_MIN.
   */
  protected note(key: string): void {
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

  protected dropNotes(): void {
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

  protected restartBuild(): void {
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
   * Folds in at most `max` notes (the oldest first), with up to `mergeBudget` units of
   * merges (default: the pace KeyRuns sets, see KeyRuns.insertBatch); returns the work
   * units done. `cost`: the notes' cost (noteCost summed) when the caller counted it;
   * needed unless all are folded.
   */
  protected fold(max: number, mergeBudget?: number, noteUnits?: number, gather = false, cost = 0): number {
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

  /**
   * Puts `keys[from, end)` in or out of the settled index. A key neither removed since the
   * index last matched the maps nor noted while a build read them is new: those go in as
   * one batch. Others are checked against the maps (`isPresent`) and the index: a key
   * present and not in the index goes in, one absent and in it is removed (marked dead).
   * Merges move on by up to `budget` entries (default: KeyRuns' pace); returns the
   * entries they moved.
   */
  protected apply(
    keys: readonly string[],
    from: number,
    end: number,
    budget?: number,
    gather = false,
  ): number {
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

/**
 * Counts the work the ordered index does (KeyRuns and its helpers, the builder), so a test
 * can bound the work of one slice or one event-loop turn instead of its milliseconds (the
 * machine is shared: a slice of a few ms of CPU took 70-700 ms of wall clock there under
 * load). It wraps methods of the classes that do the work while `start`ed, and `stop`
 * puts them back:
 *
 * - keysWritten / bytesWritten: keys (and their bytes) a conversion wrote into a run
 *   (RunWriter.add: RunConverter, KeyRuns.fromSorted);
 * - convertUnits: RunConverter.step's cost (its counting pass too);
 * - entriesMoved: what merges and rewrites moved or stepped over (KeyRuns.advance's cost:
 *   an entry, and one more per 64 bytes; every job step goes through it);
 * - keysSorted / bytesSorted: gathered keys sorted into a new run (KeyRuns' sortBatch);
 * - buildUnits: OrderedKeysBuilder.step's units (keys read or moved by a build or a load's sort);
 * - bytesCopied: bytes copied in bulk by Uint8Array `set` and `slice` (a run grown by
 *   doubling, trimmed, or long keys merged: the copies a count of entries does not see).
 *
 * A count the design bounds per slice (SLICE_UNITS and the budgets derived from it) and a
 * defect makes O(n) shows as a delta orders of magnitude above the bound, whatever the
 * load. Tests also check the totals, so a refactor that bypasses a wrapped method fails
 * instead of counting nothing.
 */
import { KeyRuns, RunWriter } from "../../src/db/maple/key-runs.ts";
import { OrderedKeysBuilder } from "../../src/db/maple/ordered-keys-builder.ts";
import { RunConverter } from "../../src/db/maple/run-converter.ts";

export interface IndexWork {
  keysWritten: number;
  bytesWritten: number;
  convertUnits: number;
  entriesMoved: number;
  keysSorted: number;
  bytesSorted: number;
  buildUnits: number;
  bytesCopied: number;
}

function zero(): IndexWork {
  return {
    keysWritten: 0,
    bytesWritten: 0,
    convertUnits: 0,
    entriesMoved: 0,
    keysSorted: 0,
    bytesSorted: 0,
    buildUnits: 0,
    bytesCopied: 0,
  };
}

const FIELDS = Object.keys(zero()) as (keyof IndexWork)[];

type Method = (this: unknown, ...args: unknown[]) => unknown;

export class IndexWorkMeter {
  /** Counts since `start`. */
  readonly total: IndexWork = zero();
  private readonly restores: (() => void)[] = [];

  /** Wraps the methods (throws if one is gone: the meter must not count nothing silently). */
  start(): this {
    const t = this.total;
    this.wrap(RunWriter.prototype, "add", (orig, self, args) => {
      const bytes = orig.apply(self, args) as number;
      t.keysWritten++;
      t.bytesWritten += bytes;
      return bytes;
    });
    this.wrap(RunConverter.prototype, "step", (orig, self, args) => {
      const cost = orig.apply(self, args) as number;
      t.convertUnits += cost;
      return cost;
    });
    this.wrap(KeyRuns.prototype, "advance", (orig, self, args) => {
      const cost = orig.apply(self, args) as number;
      t.entriesMoved += cost;
      return cost;
    });
    // Private in TypeScript; its batch's `n` and `at` are the keys and bytes it sorts.
    this.wrap(KeyRuns.prototype, "sortBatch", (orig, self, args) => {
      const batch = (self as { batch?: { n: number; at: number } }).batch;
      if (batch === undefined || typeof batch.n !== "number" || typeof batch.at !== "number")
        throw new Error("IndexWorkMeter: KeyRuns' batch (n, at) is gone; update test/support/index-work.ts");
      t.keysSorted += batch.n;
      t.bytesSorted += batch.at;
      return orig.apply(self, args);
    });
    this.wrap(OrderedKeysBuilder.prototype, "step", (orig, self, args) => {
      const units = orig.apply(self, args) as number;
      t.buildUnits += units;
      return units;
    });
    // Own properties on Uint8Array.prototype shadow %TypedArray%.prototype's for the test.
    const typed = Object.getPrototypeOf(Uint8Array.prototype) as Record<string, Method>;
    const set = typed.set!;
    const slice = typed.slice!;
    this.own(Uint8Array.prototype, "set", function (this: unknown, ...args: unknown[]) {
      const source = args[0] as { length?: number } | undefined;
      t.bytesCopied += source?.length ?? 0;
      return set.apply(this, args);
    });
    this.own(Uint8Array.prototype, "slice", function (this: unknown, ...args: unknown[]) {
      const copy = slice.apply(this, args) as Uint8Array;
      t.bytesCopied += copy.length;
      return copy;
    });
    return this;
  }

  stop(): void {
    while (this.restores.length > 0) this.restores.pop()!();
  }

  snapshot(): IndexWork {
    return { ...this.total };
  }

  private wrap(
    proto: object,
    name: string,
    body: (orig: Method, self: unknown, args: unknown[]) => unknown,
  ): void {
    const target = proto as Record<string, Method>;
    const orig = target[name];
    if (typeof orig !== "function") {
      throw new Error(`IndexWorkMeter: ${name} is gone; update test/support/index-work.ts`);
    }
    this.own(proto, name, function (this: unknown, ...args: unknown[]) {
      return body(orig, this, args);
    });
  }

  private own(proto: object, name: string, fn: Method): void {
    const before = Object.getOwnPropertyDescriptor(proto, name);
    Object.defineProperty(proto, name, { value: fn, writable: true, configurable: true, enumerable: false });
    this.restores.push(() => {
      if (before === undefined) delete (proto as Record<string, unknown>)[name];
      else Object.defineProperty(proto, name, before);
    });
  }
}

/** The most of each count that one step did (each field its own maximum). */
export class MostPerStep {
  readonly most: IndexWork = zero();
  steps = 0;
  private last: IndexWork;

  constructor(private readonly meter: IndexWorkMeter) {
    this.last = meter.snapshot();
  }

  /** Ends a step: its counts since the last mark. */
  mark(): void {
    const now = this.meter.snapshot();
    for (const f of FIELDS) this.most[f] = Math.max(this.most[f], now[f] - this.last[f]);
    this.last = now;
    this.steps++;
  }

  /** Runs `step` as one step (e.g. a slice, a list call). */
  measure<T>(step: () => T): T {
    this.last = this.meter.snapshot();
    try {
      return step();
    } finally {
      this.mark();
    }
  }
}

/** Runs a ManualScheduler's queued slices until none is left (bounded), each measured. */
export function drainCounted(
  scheduler: { readonly pending: number; runOne(): void },
  per: MostPerStep,
  max = 1_000_000,
): number {
  let ran = 0;
  while (ran < max && scheduler.pending > 0) {
    per.measure(() => scheduler.runOne());
    ran++;
  }
  return ran;
}

/**
 * Runs `run` with the real event loop and marks a step at every turn (an immediate
 * re-armed each turn): `per.most` is then the most work one turn did.
 */
export async function mostPerTurnDuring(per: MostPerStep, run: () => Promise<void>): Promise<void> {
  let running = true;
  const tick = (): void => {
    per.mark();
    if (running) setImmediate(tick);
  };
  per.mark();
  setImmediate(tick);
  try {
    await run();
  } finally {
    running = false;
    per.mark();
  }
}

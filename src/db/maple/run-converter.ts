/** A built OrderedKeys into the settled index's runs (key-runs.ts), in steps; split out of key-runs.ts at stop 32 (no change). */
import { encodedLength } from "./key-bytes.ts";
import { entryCost } from "./key-run.ts";
import { type KeyRuns, RunWriter } from "./key-runs.ts";
import type { OrderedKeys } from "./ordered-keys.ts";

/**
 * A built OrderedKeys (strings) into KeyRuns in steps of bounded work: a pass that counts
 * the keys' bytes, then one that writes them (each step resumes a scan of the source
 * after the last key it read: O(log n) to find it).
 */
export class RunConverter {
  private writer: RunWriter | null = null;
  private last: string | undefined;
  private counted = 0;
  private bytes = 0;

  /** `bytes`: the source's keys' bytes (encodedLength summed) when the caller counted them; else a first pass counts. */
  constructor(
    private readonly source: OrderedKeys,
    bytes?: number,
  ) {
    if (bytes !== undefined) {
      this.writer = new RunWriter(source.size, bytes);
      this.counted = source.size;
    }
  }

  get done(): boolean {
    return this.writer !== null && this.writer.written >= this.source.size;
  }

  /** Keys the source holds. */
  get size(): number {
    return this.source.size;
  }

  /**
   * Reads keys (at least one) for up to `budget` (a key costs entryCost of its bytes),
   * counting or writing them; returns the cost.
   */
  step(budget: number): number {
    const size = this.source.size;
    const most = Math.max(1, budget);
    let cost = 0;
    if (this.writer === null) {
      let last = this.last;
      if (this.counted < size) {
        let seen = 0;
        this.source.scan(last ?? "", last !== undefined, (key) => {
          const bytes = encodedLength(key);
          this.bytes += bytes;
          cost += entryCost(bytes);
          last = key;
          seen++;
          return cost < most;
        });
        this.counted += seen;
        this.last = last;
      }
      if (this.counted >= size) {
        this.writer = new RunWriter(size, this.bytes);
        this.last = undefined;
      }
      return cost;
    }
    const writer = this.writer;
    if (writer.written >= size) return 0;
    let last = this.last;
    this.source.scan(last ?? "", last !== undefined, (key) => {
      cost += entryCost(writer.add(key));
      last = key;
      return cost < most;
    });
    this.last = last;
    return cost;
  }

  result(): KeyRuns {
    if (!this.done) throw new Error("RunConverter.result called before the conversion was done");
    return this.writer!.result();
  }
}

import type { Operation } from "../history.ts";

/**
 * "unknown" is a real answer: the checker ran out of budget and can say neither yes nor
 * no. A run with an unknown verdict is not a pass.
 */
export type CheckStatus = "ok" | "violation" | "unknown";

/** One thing that went wrong, with the fewest operations that show it. */
export interface Violation {
  /** Machine-readable category, e.g. "not-linearizable", "overlapping-holders". */
  kind: string;
  key: string;
  message: string;
  /** The witness: the operations that, together, cannot all be right. */
  ops: Operation[];
  /** Extra lines for the human report (a linearizable prefix, model state, ...). */
  details?: string[];
}

export interface UnknownKey {
  key: string;
  reason: string;
}

export interface CheckerVerdict {
  checker: string;
  status: CheckStatus;
  keysChecked: number;
  /** The first `maxViolations` found; `violationCount` counts them all. */
  violations: Violation[];
  violationCount: number;
  unknownKeys: UnknownKey[];
  /** Counters for the report (steps searched, cache entries, ms spent, ...). */
  stats: Record<string, number>;
}

export const defaultMaxViolations = 20;

/** Accumulates findings with a bound, so a badly broken build cannot flood memory. */
export class VerdictBuilder {
  private readonly violations: Violation[] = [];
  private violationCount = 0;
  private readonly unknownKeys: UnknownKey[] = [];
  private keysChecked = 0;
  readonly stats: Record<string, number> = {};

  constructor(
    private readonly checker: string,
    private readonly maxViolations: number = defaultMaxViolations,
  ) {}

  violation(v: Violation): void {
    this.violationCount++;
    if (this.violations.length < this.maxViolations) this.violations.push(v);
  }

  unknown(key: string, reason: string): void {
    if (this.unknownKeys.length < this.maxViolations) this.unknownKeys.push({ key, reason });
    else this.stats.unknownKeysDropped = (this.stats.unknownKeysDropped ?? 0) + 1;
  }

  keyChecked(): void {
    this.keysChecked++;
  }

  add(stat: string, amount: number): void {
    this.stats[stat] = (this.stats[stat] ?? 0) + amount;
  }

  build(): CheckerVerdict {
    const hasUnknown = this.unknownKeys.length > 0 || (this.stats.unknownKeysDropped ?? 0) > 0;
    const status: CheckStatus = this.violationCount > 0 ? "violation" : hasUnknown ? "unknown" : "ok";
    return {
      checker: this.checker,
      status,
      keysChecked: this.keysChecked,
      violations: this.violations,
      violationCount: this.violationCount,
      unknownKeys: this.unknownKeys,
      stats: this.stats,
    };
  }
}

/** Groups by key, keeping each group in history order. */
export function groupByKey(ops: Iterable<Operation>): Map<string, Operation[]> {
  const groups = new Map<string, Operation[]>();
  for (const op of ops) {
    let group = groups.get(op.key);
    if (group === undefined) {
      group = [];
      groups.set(op.key, group);
    }
    group.push(op);
  }
  return groups;
}

/** Index of the first element of `sorted` whose `at(e)` is > `bound` (sorted ascending by `at`). */
export function upperBound<T>(sorted: readonly T[], bound: number, at: (e: T) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = sorted[mid];
    if (e !== undefined && at(e) <= bound) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element of `sorted` whose `at(e)` is >= `bound`. */
export function lowerBound<T>(sorted: readonly T[], bound: number, at: (e: T) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = sorted[mid];
    if (e !== undefined && at(e) < bound) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

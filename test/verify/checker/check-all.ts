import type { History, Operation, OpKind } from "../history.ts";
import { describeOp } from "../history.ts";
import type { DurabilityOptions } from "./durability.ts";
import { checkDurability } from "./durability.ts";
import type { LinearizabilityOptions } from "./linearizability.ts";
import { checkLinearizability } from "./linearizability.ts";
import type { LockCheckOptions } from "./locks.ts";
import { checkLocks } from "./locks.ts";
import type { TtlCheckOptions } from "./ttl.ts";
import { checkTtl } from "./ttl.ts";
import type { CheckerVerdict, CheckStatus, Violation } from "./verdict.ts";
import { checkWatch, type WatchCheckOptions } from "./watch.ts";

/** Options per checker; `false` skips that checker. */
export interface CheckAllOptions {
  linearizability?: LinearizabilityOptions | false;
  locks?: LockCheckOptions | false;
  durability?: DurabilityOptions | false;
  ttl?: TtlCheckOptions | false;
  /** The watchers' streams (watch workload); absent: no watch check. */
  watch?: WatchCheckOptions | false;
  now?: () => number;
}

export interface OutcomeCounts {
  ok: number;
  fail: number;
  unknown: number;
}

export interface CheckSummary extends OutcomeCounts {
  ops: number;
  byKind: Partial<Record<OpKind, OutcomeCounts>>;
  /** The worst verdict: any violation wins, then any unknown (budget), else ok. */
  status: CheckStatus;
  verdicts: CheckerVerdict[];
  /** The first violation found, for the one-screen report. */
  witness?: Violation & { checker: string };
  elapsedMs: number;
}

function countOutcomes(history: History): Pick<CheckSummary, "ok" | "fail" | "unknown" | "byKind"> {
  const total: OutcomeCounts = { ok: 0, fail: 0, unknown: 0 };
  const byKind: Partial<Record<OpKind, OutcomeCounts>> = {};
  for (const op of history) {
    total[op.outcome]++;
    let k = byKind[op.kind];
    if (k === undefined) {
      k = { ok: 0, fail: 0, unknown: 0 };
      byKind[op.kind] = k;
    }
    k[op.outcome]++;
  }
  return { ...total, byKind };
}

/** Runs every checker (each bounded by its own budget) and folds the verdicts. */
export function checkAll(history: History, options: CheckAllOptions = {}): CheckSummary {
  const now = options.now ?? (() => performance.now());
  const started = now();
  const verdicts: CheckerVerdict[] = [];
  if (options.linearizability !== false)
    verdicts.push(checkLinearizability(history, options.linearizability ?? {}));
  if (options.locks !== false) verdicts.push(checkLocks(history, options.locks ?? {}));
  if (options.durability !== false) verdicts.push(checkDurability(history, options.durability ?? {}));
  if (options.ttl !== false) verdicts.push(checkTtl(history, options.ttl ?? {}));
  if (options.watch !== undefined && options.watch !== false)
    verdicts.push(checkWatch(history, options.watch));
  const status: CheckStatus = verdicts.some((v) => v.status === "violation")
    ? "violation"
    : verdicts.some((v) => v.status === "unknown")
      ? "unknown"
      : "ok";
  const firstBad = verdicts.find((v) => v.violations.length > 0);
  const firstViolation = firstBad?.violations[0];
  const summary: CheckSummary = {
    ops: history.length,
    ...countOutcomes(history),
    status,
    verdicts,
    elapsedMs: now() - started,
  };
  if (firstBad !== undefined && firstViolation !== undefined) {
    summary.witness = { ...firstViolation, checker: firstBad.checker };
  }
  return summary;
}

export interface FormatOptions {
  /** Witness operations shown per violation. */
  maxWitnessOps?: number;
  /** Violations listed per checker beyond the first witness. */
  maxViolationsListed?: number;
}

function verdictLine(v: CheckerVerdict): string {
  const parts = [`${v.keysChecked} key${v.keysChecked === 1 ? "" : "s"}`];
  if (v.violationCount > 0) {
    const byKind = new Map<string, number>();
    for (const x of v.violations) byKind.set(x.kind, (byKind.get(x.kind) ?? 0) + 1);
    const kinds = [...byKind].map(([k, n]) => `${k} x${n}`).join(", ");
    parts.push(`${v.violationCount} violation${v.violationCount === 1 ? "" : "s"} (${kinds})`);
  }
  if (v.unknownKeys.length > 0)
    parts.push(`undecided: ${v.unknownKeys.map((u) => `${u.key} (${u.reason})`).join("; ")}`);
  const stats = Object.entries(v.stats)
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `${k}=${Number.isInteger(n) ? n : n.toFixed(1)}`)
    .join(" ");
  if (stats !== "") parts.push(stats);
  return `  ${v.checker.padEnd(16)} ${v.status.toUpperCase().padEnd(10)} ${parts.join(", ")}`;
}

function witnessLines(checker: string, v: Violation, maxOps: number): string[] {
  const lines = [`${checker} / ${v.kind} on key ${JSON.stringify(v.key)}: ${v.message}`];
  if (v.details !== undefined && v.details.length > 0) {
    lines.push(...v.details.map((d) => `    ${d}`));
  } else {
    const shown: Operation[] = v.ops.slice(0, maxOps);
    lines.push(...shown.map((op) => `    ${describeOp(op)}`));
    if (v.ops.length > shown.length) lines.push(`    ... ${v.ops.length - shown.length} more`);
  }
  return lines;
}

/** A short human report: one line per checker, then the witnesses. */
export function formatSummary(summary: CheckSummary, options: FormatOptions = {}): string {
  const maxOps = options.maxWitnessOps ?? 8;
  const maxListed = options.maxViolationsListed ?? 3;
  const lines = [
    `verdict: ${summary.status.toUpperCase()} — ${summary.ops} ops (${summary.ok} ok, ${summary.fail} fail, ${summary.unknown} unknown), checked in ${summary.elapsedMs.toFixed(0)} ms`,
    ...summary.verdicts.map(verdictLine),
  ];
  for (const v of summary.verdicts) {
    for (const violation of v.violations.slice(0, maxListed)) {
      lines.push(...witnessLines(v.checker, violation, maxOps));
    }
    if (v.violationCount > maxListed)
      lines.push(`  (${v.violationCount - maxListed} more ${v.checker} violations)`);
  }
  return lines.join("\n");
}

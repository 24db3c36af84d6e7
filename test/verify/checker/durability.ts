import type { History, Operation } from "../history.ts";
import { describeOp, effectiveCompleteMs, isRegisterMutation, readResultOf } from "../history.ts";
import type { CheckerVerdict } from "./verdict.ts";
import { defaultMaxViolations, groupByKey, VerdictBuilder } from "./verdict.ts";

/**
 * Durability: after the final heal-and-recover, every acknowledged mutation is still
 * there, unless something that may have come after it explains what the final read saw.
 *
 * For a final read R and an acknowledged mutation W that completed before R began, R's
 * answer must be explained by W itself or by some mutation X (any outcome but "fail")
 * that may have taken effect after W (X did not complete before W was invoked) and
 * before R (X was invoked before R completed). "Explained" means: R saw X's value; or R
 * saw nothing and X is a delete, an expire, or a write with a deadline.
 *
 * Equivalently: let E be the mutations that explain R; W is lost when W is not in E and
 * every member of E completed before W was invoked. That needs only the latest-completing
 * member of E, so each read costs one pass over its key's mutations.
 *
 * The linearizability checker would find the same faults on a register workload; this
 * check also covers workloads it does not search and gives a one-line "lost write" witness.
 */

export interface DurabilityOptions {
  maxViolations?: number;
}

function hasDeadline(op: Operation): boolean {
  return (op.expireInMs ?? 0) > 0 || (op.deleteInMs ?? 0) > 0;
}

function explains(mutation: Operation, found: boolean, value: string | undefined): boolean {
  if (found) return mutation.kind !== "delete" && mutation.kind !== "expire" && mutation.value === value;
  return mutation.kind === "delete" || mutation.kind === "expire" || hasDeadline(mutation);
}

export function isFinalRead(op: Operation): boolean {
  return op.kind === "get" && op.phase === "final" && op.outcome === "ok" && readResultOf(op) !== undefined;
}

export function checkDurability(history: History, options: DurabilityOptions = {}): CheckerVerdict {
  const verdict = new VerdictBuilder("durability", options.maxViolations ?? defaultMaxViolations);
  const groups = groupByKey(history.filter((op) => isFinalRead(op) || isRegisterMutation(op)));
  for (const [key, ops] of groups) {
    const finalReads = ops.filter(isFinalRead);
    if (finalReads.length === 0) continue;
    verdict.keyChecked();
    verdict.add("finalReads", finalReads.length);
    const mutations = ops.filter(isRegisterMutation);
    verdict.add("acknowledgedWrites", mutations.filter((m) => m.outcome === "ok").length);
    for (const read of finalReads) checkFinalRead(key, read, mutations, verdict);
  }
  return verdict.build();
}

function checkFinalRead(
  key: string,
  read: Operation,
  mutations: readonly Operation[],
  verdict: VerdictBuilder,
): void {
  const r = readResultOf(read);
  if (r === undefined) return;
  const readEnd = effectiveCompleteMs(read);
  let latestExplainerEnd = Number.NEGATIVE_INFINITY;
  let anyWriterOfValue = false;
  // The acknowledged mutation, certainly before the read, invoked last, that does not explain it.
  let latestUnexplained: Operation | undefined;
  for (const m of mutations) {
    if (m.invokeMs > readEnd) continue;
    if (explains(m, r.found, r.value)) {
      latestExplainerEnd = Math.max(latestExplainerEnd, effectiveCompleteMs(m));
      if (r.found) anyWriterOfValue = true;
      continue;
    }
    if (m.outcome === "ok" && effectiveCompleteMs(m) < read.invokeMs) {
      if (latestUnexplained === undefined || m.invokeMs > latestUnexplained.invokeMs) latestUnexplained = m;
    }
  }
  if (r.found && !anyWriterOfValue) {
    verdict.violation({
      kind: "final-read-never-written",
      key,
      message: `the final read returned ${JSON.stringify(r.value)}, which no write to this key produced`,
      ops: [read],
    });
    return;
  }
  if (latestUnexplained !== undefined && latestUnexplained.invokeMs > latestExplainerEnd) {
    const saw = r.found ? JSON.stringify(r.value) : "nothing";
    verdict.violation({
      kind: "lost-write",
      key,
      message: `acknowledged ${latestUnexplained.kind} is gone: the final read saw ${saw}, and nothing that may have come after the ${latestUnexplained.kind} explains that`,
      ops: [latestUnexplained, read],
      details: [`lost: ${describeOp(latestUnexplained)}`, `final read: ${describeOp(read)}`],
    });
  }
}

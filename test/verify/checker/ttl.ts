import type { History, Operation } from "../history.ts";
import { describeOp, effectiveCompleteMs, isRegisterMutation, readResultOf } from "../history.ts";
import type { CheckerVerdict } from "./verdict.ts";
import { defaultMaxViolations, groupByKey, lowerBound, upperBound, VerdictBuilder } from "./verdict.ts";

/**
 * TTL agreement for setE-style writes with deadlines.
 *
 * The leader stamps the time into the log, so a value's absolute expiry is only known
 * as a range: [write invoked + expireIn, write completed + expireIn]. From that:
 *
 * - value-reappeared: read A (not found) began after every write of v had completed, and
 *   read B began after A completed, yet B returned v. Once any member reported the value
 *   gone, no member may serve it again (no write could have brought it back).
 * - read-after-deadline: B returned v although it began more than `toleranceMs` after
 *   the latest possible expiry of every write that could have produced v.
 * - expired-early: B found nothing although the last mutation of the key was a completed
 *   write with a deadline that could not have passed yet (B completed more than
 *   `toleranceMs` before the earliest possible expiry), and nothing else could have
 *   changed the key in between.
 *
 * Only keys that saw a write with a deadline are judged (plain registers are the
 * linearizability checker's), unless `keyFilter` says otherwise.
 */

export interface TtlCheckOptions {
  /** Slack for the gap between the servers' clocks and the recorder's (ms). */
  toleranceMs?: number;
  /** Which keys to judge; default: keys with at least one write carrying a deadline. */
  keyFilter?: (key: string, ops: readonly Operation[]) => boolean;
  maxViolations?: number;
}

export const defaultTtlCheckOptions = { toleranceMs: 50 } as const;

function isValueWrite(op: Operation): boolean {
  return isRegisterMutation(op) && op.kind !== "delete" && op.kind !== "expire";
}

/** When the value stops being readable, relative to the stamp; Infinity for no deadline. */
export function readableForMs(op: Operation): number {
  const expireIn = op.expireInMs ?? 0;
  const deleteIn = op.deleteInMs ?? 0;
  // A delete deadline alone also ends the value; with both, whichever comes first.
  if (expireIn > 0 && deleteIn > 0) return Math.min(expireIn, deleteIn);
  if (expireIn > 0) return expireIn;
  if (deleteIn > 0) return deleteIn;
  return Number.POSITIVE_INFINITY;
}

function hasDeadline(op: Operation): boolean {
  return Number.isFinite(readableForMs(op));
}

function memberOf(op: Operation): string {
  return op.member === undefined ? "a member" : `member ${op.member}`;
}

export function checkTtl(history: History, options: TtlCheckOptions = {}): CheckerVerdict {
  const toleranceMs = options.toleranceMs ?? defaultTtlCheckOptions.toleranceMs;
  const keyFilter =
    options.keyFilter ??
    ((_key: string, ops: readonly Operation[]) => ops.some((op) => isValueWrite(op) && hasDeadline(op)));
  const verdict = new VerdictBuilder("ttl", options.maxViolations ?? defaultMaxViolations);
  const relevant = history.filter(
    (op) =>
      isRegisterMutation(op) || (op.kind === "get" && op.outcome === "ok" && readResultOf(op) !== undefined),
  );
  for (const [key, ops] of groupByKey(relevant)) {
    if (!keyFilter(key, ops)) continue;
    verdict.keyChecked();
    checkKey(key, ops, toleranceMs, verdict);
  }
  return verdict.build();
}

function checkKey(
  key: string,
  ops: readonly Operation[],
  toleranceMs: number,
  verdict: VerdictBuilder,
): void {
  const writersByValue = new Map<string, Operation[]>();
  for (const op of ops) {
    if (!isValueWrite(op)) continue;
    const value = op.value ?? "";
    const list = writersByValue.get(value);
    if (list === undefined) writersByValue.set(value, [op]);
    else list.push(op);
  }
  const reads = ops.filter((op) => op.kind === "get");
  verdict.add("reads", reads.length);
  const misses = reads
    .filter((op) => readResultOf(op)?.found === false)
    .sort((a, b) => a.invokeMs - b.invokeMs);
  // suffixMinEnd[i]: the miss among misses[i..] that completed first.
  const suffixMinEnd: Operation[] = new Array(misses.length);
  for (let i = misses.length - 1; i >= 0; i--) {
    const here = misses[i] as Operation;
    const after = suffixMinEnd[i + 1];
    suffixMinEnd[i] =
      after !== undefined && effectiveCompleteMs(after) < effectiveCompleteMs(here) ? after : here;
  }

  for (const read of reads) {
    const r = readResultOf(read);
    if (r?.found !== true) continue;
    const readEnd = effectiveCompleteMs(read);
    const writers = (writersByValue.get(r.value ?? "") ?? []).filter((w) => w.invokeMs <= readEnd);
    if (writers.length === 0) continue; // a read of a never-written value: linearizability reports it
    let lastWritten = writers[0] as Operation;
    let latestExpiry = Number.NEGATIVE_INFINITY;
    let latestExpiryWriter = lastWritten;
    for (const w of writers) {
      if (effectiveCompleteMs(w) > effectiveCompleteMs(lastWritten)) lastWritten = w;
      const expiry = effectiveCompleteMs(w) + readableForMs(w);
      if (expiry > latestExpiry) {
        latestExpiry = expiry;
        latestExpiryWriter = w;
      }
    }

    // A miss that began after every writer of this value completed and ended before this read began.
    const first = upperBound(misses, effectiveCompleteMs(lastWritten), (m) => m.invokeMs);
    const miss = suffixMinEnd[first];
    if (miss !== undefined && effectiveCompleteMs(miss) < read.invokeMs) {
      verdict.violation({
        kind: "value-reappeared",
        key,
        message: `${memberOf(miss)} reported the value gone, then ${memberOf(read)} served ${JSON.stringify(r.value)} again`,
        ops: [lastWritten, miss, read],
        details: [
          `write: ${describeOp(lastWritten)}`,
          `gone: ${describeOp(miss)}`,
          `back: ${describeOp(read)}`,
        ],
      });
      continue;
    }
    if (read.invokeMs > latestExpiry + toleranceMs) {
      verdict.violation({
        kind: "read-after-deadline",
        key,
        message:
          `${memberOf(read)} served ${JSON.stringify(r.value)} ${(read.invokeMs - latestExpiry).toFixed(1)} ms ` +
          `after its latest possible expiry`,
        ops: [latestExpiryWriter, read],
      });
    }
  }
  checkEarlyExpiry(key, ops, misses, toleranceMs, verdict);
}

function checkEarlyExpiry(
  key: string,
  ops: readonly Operation[],
  misses: readonly Operation[],
  toleranceMs: number,
  verdict: VerdictBuilder,
): void {
  const mutations = ops.filter(isRegisterMutation).sort((a, b) => a.invokeMs - b.invokeMs);
  // prefixMaxEnd[i]: the latest completion among mutations[0..i-1].
  const prefixMaxEnd = new Float64Array(mutations.length + 1);
  prefixMaxEnd[0] = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < mutations.length; i++) {
    prefixMaxEnd[i + 1] = Math.max(prefixMaxEnd[i] as number, effectiveCompleteMs(mutations[i] as Operation));
  }
  for (const miss of misses) {
    // The mutation invoked last before the miss could complete; every earlier one must
    // have completed before it began, so it alone decides what the miss should see.
    const count = lowerBound(mutations, effectiveCompleteMs(miss), (m) => m.invokeMs);
    const last = mutations[count - 1];
    if (last === undefined || last.outcome !== "ok" || !isValueWrite(last) || !hasDeadline(last)) continue;
    if (effectiveCompleteMs(last) >= miss.invokeMs) continue;
    if ((prefixMaxEnd[count - 1] as number) >= last.invokeMs) continue;
    const earliestExpiry = last.invokeMs + readableForMs(last);
    if (effectiveCompleteMs(miss) < earliestExpiry - toleranceMs) {
      verdict.violation({
        kind: "expired-early",
        key,
        message:
          `${memberOf(miss)} found nothing ${(earliestExpiry - effectiveCompleteMs(miss)).toFixed(1)} ms ` +
          `before the value's earliest possible expiry`,
        ops: [last, miss],
      });
    }
  }
}

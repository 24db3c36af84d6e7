import type { History, Operation } from "../history.ts";
import { casResultOf, readResultOf, writtenResultOf } from "../history.ts";
import type { ExcusedGap, WatchedChange, WatchStream } from "../watch-workload.ts";
import type { CheckerVerdict } from "./verdict.ts";
import { defaultMaxViolations, VerdictBuilder } from "./verdict.ts";

/**
 * The watch checker. Every member applies the same log, so every watcher of the same
 * prefix from revision 1 must see the same changes in the same order — whichever member
 * it was connected to, however often it reconnected or resumed:
 *
 * 1. Each stream on its own: revisions never go back, and no change appears twice.
 * 2. Streams agree: over the revisions two complete streams both cover (outside gaps a
 *    COMPACTED answer excused), their changes are identical, one for one. A missing,
 *    extra, reordered or different change shows as the first place they part.
 * 3. Streams match the history: an acknowledged write (set, setE, a setEIfUnset that
 *    wrote, a transaction whose compare held) appears as exactly one put of its key and
 *    value; a write with an unknown outcome at most once; a write that certainly failed
 *    never. Every value is unique per write in the workloads, so a value names its write.
 * 4. The stream's final state matches the final reads: for keys never written with a
 *    deadline, the last change of the key before the end is a put of the value every
 *    final read returned, or a delete/expire (or nothing) when they found nothing.
 */

export interface WatchCheckOptions {
  streams: readonly WatchStream[];
  maxViolations?: number;
  /**
   * The keys the watched shard holds (a run with many kv shards watches only the first);
   * writes and final reads of other keys are not expected in the streams. Default: all.
   */
  watchedKey?: (key: string) => boolean;
}

const describeChange = (c: WatchedChange | undefined): string =>
  c === undefined
    ? "nothing (its stream ends there)"
    : `${c.type} ${JSON.stringify(c.key)}${c.value === undefined ? "" : `=${JSON.stringify(c.value)}`} @${c.revision}`;

function inGap(revision: number, gaps: readonly ExcusedGap[]): boolean {
  return gaps.some((g) => revision >= g.fromRevision && revision < g.toRevision);
}

function sameChange(a: WatchedChange, b: WatchedChange): boolean {
  return a.type === b.type && a.key === b.key && a.value === b.value && a.revision === b.revision;
}

/** The put a write op should have produced, or undefined when it does not put a value. */
function expectedPut(op: Operation): { key: string; value: string } | undefined {
  if (op.value === undefined) return undefined;
  switch (op.kind) {
    case "set":
    case "setE":
      return { key: op.key, value: op.value };
    case "setEIfUnset":
      return op.outcome === "ok" && writtenResultOf(op)?.written !== true
        ? undefined
        : { key: op.key, value: op.value };
    case "cas":
      return op.outcome === "ok" && casResultOf(op)?.succeeded !== true
        ? undefined
        : { key: op.key, value: op.value };
    default:
      return undefined;
  }
}

export function checkWatch(history: History, options: WatchCheckOptions): CheckerVerdict {
  const verdict = new VerdictBuilder("watch", options.maxViolations ?? defaultMaxViolations);
  const streams = options.streams;
  for (const stream of streams) {
    verdict.add("changes", stream.changes.length);
    verdict.add("restarts", stream.restarts);
    verdict.add("compactedGaps", stream.gaps.length);
    if (!stream.complete && stream.retired !== true) {
      verdict.unknown(
        `watcher ${stream.watcher}`,
        `never saw the end-of-run sentinel (${stream.lastError ?? "no error"}); its stream cannot be judged complete`,
      );
    }
    checkOrder(stream, verdict);
  }
  const complete = streams.filter((s) => s.complete);
  if (complete.length === 0) return verdict.build();
  // The reference: a complete stream without excused gaps if there is one.
  const reference = complete.find((s) => s.gaps.length === 0) ?? complete[0]!;
  for (const other of complete) {
    if (other !== reference) compareStreams(reference, other, verdict, false);
  }
  // A removed member's watcher stopped early: what it has must be the start of the rest.
  for (const retired of streams.filter((s) => s.retired === true && !s.complete)) {
    compareStreams(reference, retired, verdict, true);
  }
  if (reference.gaps.length === 0) {
    const watchedKey = options.watchedKey;
    const watched = watchedKey === undefined ? history : history.filter((op) => watchedKey(op.key));
    checkAgainstWrites(reference, watched, verdict);
    checkFinalState(reference, watched, verdict);
  } else {
    verdict.unknown(
      "history",
      `every watcher was told COMPACTED once; writes are checked only by stream agreement`,
    );
  }
  return verdict.build();
}

function checkOrder(stream: WatchStream, verdict: VerdictBuilder): void {
  const seen = new Set<string>();
  let last = 0;
  for (const [i, change] of stream.changes.entries()) {
    if (change.revision < last) {
      verdict.violation({
        kind: "watch-out-of-order",
        key: change.key,
        message: `watcher ${stream.watcher}: change ${i} is at revision ${change.revision}, after one at ${last}: ${describeChange(change)}`,
        ops: [],
      });
      return;
    }
    last = change.revision;
    const id = `${change.revision}|${change.type}|${change.key}`;
    if (seen.has(id)) {
      verdict.violation({
        kind: "watch-duplicate",
        key: change.key,
        message: `watcher ${stream.watcher} received ${describeChange(change)} twice (change ${i})`,
        ops: [],
      });
      return;
    }
    seen.add(id);
  }
}

/**
 * Walks two streams over the revisions both cover; reports the first place they part.
 * With `prefix`, `b` ended early (its member was removed) and must only be a prefix of `a`.
 */
function compareStreams(a: WatchStream, b: WatchStream, verdict: VerdictBuilder, prefix: boolean): void {
  verdict.keyChecked();
  const covered = (c: WatchedChange) => !inGap(c.revision, a.gaps) && !inGap(c.revision, b.gaps);
  const left = a.changes.filter(covered);
  const right = b.changes.filter(covered);
  const n = prefix ? right.length : Math.max(left.length, right.length);
  for (let i = 0; i < n; i++) {
    const x = left[i];
    const y = right[i];
    if (x !== undefined && y !== undefined && sameChange(x, y)) continue;
    verdict.violation({
      kind: "watch-streams-differ",
      key: x?.key ?? y?.key ?? "",
      message: `watchers ${a.watcher} and ${b.watcher} part at change ${i}: ${a.watcher} has ${describeChange(x)}, ${b.watcher} has ${describeChange(y)}`,
      ops: [],
      details: [
        `${a.watcher} before: ${left
          .slice(Math.max(0, i - 3), i)
          .map(describeChange)
          .join("; ")}`,
      ],
    });
    return;
  }
  verdict.add("changesCompared", n);
}

function checkAgainstWrites(reference: WatchStream, history: History, verdict: VerdictBuilder): void {
  const puts = new Map<string, number>();
  for (const change of reference.changes) {
    if (change.type !== "put" || change.value === undefined) continue;
    const id = `${change.key}\u0000${change.value}`;
    puts.set(id, (puts.get(id) ?? 0) + 1);
  }
  for (const op of history) {
    const put = expectedPut(op);
    if (put === undefined) continue;
    const count = puts.get(`${put.key}\u0000${put.value}`) ?? 0;
    const describe = `${JSON.stringify(put.key)}=${JSON.stringify(put.value)}`;
    if (op.outcome === "ok" && count !== 1) {
      verdict.violation({
        kind: count === 0 ? "watch-missed-write" : "watch-duplicate-write",
        key: op.key,
        message: `an acknowledged ${op.kind} of ${describe} appears ${count} times in the watch streams (expected once)`,
        ops: [op],
      });
    } else if (op.outcome === "unknown" && count > 1) {
      verdict.violation({
        kind: "watch-duplicate-write",
        key: op.key,
        message: `a ${op.kind} of ${describe} with an unknown outcome appears ${count} times (at most once)`,
        ops: [op],
      });
    } else if (op.outcome === "fail" && count > 0) {
      verdict.violation({
        kind: "watch-failed-write-seen",
        key: op.key,
        message: `a ${op.kind} of ${describe} that certainly failed appears in the watch streams`,
        ops: [op],
      });
    }
    verdict.add("writesMatched", 1);
  }
}

function checkFinalState(reference: WatchStream, history: History, verdict: VerdictBuilder): void {
  const withDeadlines = new Set<string>();
  for (const op of history) {
    if ((op.expireInMs ?? 0) > 0 || (op.deleteInMs ?? 0) > 0) withDeadlines.add(op.key);
  }
  const lastChange = new Map<string, WatchedChange>();
  for (const change of reference.changes) lastChange.set(change.key, change);
  for (const read of history) {
    if (read.kind !== "get" || read.phase !== "final" || read.outcome !== "ok") continue;
    if (withDeadlines.has(read.key)) continue;
    const result = readResultOf(read);
    if (result === undefined) continue;
    verdict.keyChecked();
    const last = lastChange.get(read.key);
    const streamHas = last?.type === "put" ? last.value : undefined;
    const readHas = result.found ? (result.value ?? "") : undefined;
    if (streamHas === readHas) continue;
    verdict.violation({
      kind: "watch-final-state",
      key: read.key,
      message: `the final read found ${readHas === undefined ? "nothing" : JSON.stringify(readHas)}, but the watch stream's last change of the key is ${describeChange(last)}`,
      ops: [read],
    });
  }
}

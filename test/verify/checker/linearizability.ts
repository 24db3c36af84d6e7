import type { History, Operation } from "../history.ts";
import {
  casResultOf,
  describeOp,
  effectiveCompleteMs,
  observedValueOf,
  readResultOf,
  writtenResultOf,
} from "../history.ts";
import { RegisterModel, unreadValue } from "./register-model.ts";
import type { CheckerVerdict, Violation } from "./verdict.ts";
import { defaultMaxViolations, groupByKey, VerdictBuilder } from "./verdict.ts";

/**
 * Linearizability of the register workload, key by key.
 *
 * The search is Wing & Gong's, with Lowe's memoization, laid out as in Porcupine
 * (anishathalye/porcupine, checker.go): the history becomes a time-sorted doubly linked
 * list of call and return events; we walk it, trying to linearize each call we meet
 * before the first return; a success lifts the op out of the list and restarts from the
 * head; meeting a return means the op it belongs to should already have been linearized,
 * so we backtrack. A cache of (linearized set, model state) pairs that were already
 * explored keeps the search from repeating itself.
 *
 * Departures from Porcupine:
 * - "fail" operations were certainly not applied and are dropped; "unknown" reads are
 *   dropped (they change nothing); "unknown" writes return at +infinity and are optional:
 *   the search succeeds once every "ok" operation is linearized, whatever unknown ones
 *   are left (they never took effect).
 * - The linearized set is stored as (highest linearized op, the unlinearized ops below
 *   it) instead of a full bitset, so a 20k-op key does not need 2.5 KB per cache entry;
 *   the number of such holes is bounded by concurrency plus pending unknown ops.
 * - Unknown ops are handled with symmetry (interchangeable ones are used in invocation
 *   order) and dominance (a configuration that used a superset of the unknown ops of an
 *   explored one, with the same ok ops and state, is skipped). Values no read returned
 *   collapse into one placeholder so such configurations meet in the cache.
 * - A step and a time budget bound the search; running out is reported as "unknown".
 *   Proving a violation costs roughly exponential time in the number of unknown writes
 *   pending before it, so workloads should rotate keys (a few hundred ops per key).
 */

export interface LinearizabilityOptions {
  /** Search steps (list moves) allowed per key before answering "unknown". */
  maxStepsPerKey?: number;
  /** Wall-clock budget for the whole history, across keys. */
  timeBudgetMs?: number;
  /** Injected clock for the time budget. */
  now?: () => number;
  maxViolations?: number;
  /** How many of the last linearized ops a witness shows. */
  witnessPrefixOps?: number;
  /** How many concurrent ops a witness lists. */
  witnessConcurrentOps?: number;
  /**
   * Look for reads of never-written values before searching (default true). Off only in
   * tests that must exercise the search itself on such reads.
   */
  neverWrittenPrecheck?: boolean;
  /** Drop unknown writes that provably cannot matter (default true); see dropUnobservedUnknownWrites. */
  pruneUnobservedUnknownWrites?: boolean;
}

export const defaultLinearizabilityOptions = {
  maxStepsPerKey: 10_000_000,
  timeBudgetMs: 60_000,
  witnessPrefixOps: 10,
  witnessConcurrentOps: 12,
} as const;

export const registerKinds: ReadonlySet<Operation["kind"]> = new Set([
  "set",
  "setE",
  "get",
  "delete",
  "expire",
  "setEIfUnset",
  "cas",
]);

/** Effort spent on one key, for the report. */
export interface KeySearchStats {
  steps: number;
  cacheEntries: number;
  /** Unknown writes dropped by dropUnobservedUnknownWrites. */
  prunedUnknownWrites: number;
}

export type KeyCheckResult = KeySearchStats &
  ({ status: "ok" } | { status: "violation"; violation: Violation } | { status: "unknown"; reason: string });

/** Whether a value-returning read could have read `op`'s write (used by the quick pre-check). */
function writesValue(op: Operation, value: string): boolean {
  if (op.value !== value) return false;
  if (op.kind === "set" || op.kind === "setE") return true;
  if (op.kind === "cas") return casResultOf(op)?.succeeded !== false;
  return op.kind === "setEIfUnset" && writtenResultOf(op)?.written !== false;
}

/**
 * The ops the search must consider: drops failed ops and unknown reads, and sorts by
 * invocation so an op's index is its call order (the hole encoding relies on it).
 */
export function prepareKeyOps(ops: readonly Operation[]): Operation[] {
  const kept = ops.filter((op) => {
    if (!registerKinds.has(op.kind) || op.outcome === "fail") return false;
    if (op.kind === "get" && (op.outcome !== "ok" || readResultOf(op) === undefined)) return false;
    return true;
  });
  return kept.sort((a, b) => a.invokeMs - b.invokeMs || a.id - b.id);
}

/**
 * Unknown-outcome writes nobody observed are the classic cause of blow-up (each one may
 * or may not have happened, at any time after its invocation). One can be dropped without
 * changing the verdict when it is a plain, deadline-free write whose value no read
 * returned, and no setEIfUnset that reported "not written" could come after it: then its
 * value was overwritten (or expired by `expire`) before anyone looked, and the only trace
 * it could leave — the key being present rather than absent — is unobservable. Any
 * linearization that includes it stays valid with it removed.
 */
export function dropUnobservedUnknownWrites(ops: readonly Operation[]): {
  kept: Operation[];
  dropped: number;
} {
  const readValues = observedValues(ops);
  let lastPresenceObserverMs = Number.NEGATIVE_INFINITY;
  for (const op of ops) {
    if (op.kind === "setEIfUnset" && op.outcome === "ok" && writtenResultOf(op)?.written !== true) {
      lastPresenceObserverMs = Math.max(lastPresenceObserverMs, effectiveCompleteMs(op));
    }
  }
  const droppable = (op: Operation): boolean =>
    op.outcome === "unknown" &&
    (op.kind === "set" || op.kind === "setE" || op.kind === "setEIfUnset") &&
    (op.expireInMs ?? 0) === 0 &&
    (op.deleteInMs ?? 0) === 0 &&
    !readValues.has(op.value ?? "") &&
    lastPresenceObserverMs < op.invokeMs;
  const kept = ops.filter((op) => !droppable(op));
  return { kept, dropped: ops.length - kept.length };
}

/**
 * Values some operation observed: returned by a read or a failed cas's get, or compared
 * by a cas (its outcome tells whether the key held that value). Only these values must
 * stay distinct in the model; the rest are unobservable.
 */
function observedValues(ops: readonly Operation[]): Set<string> {
  const values = new Set<string>();
  for (const op of ops) {
    const observed = observedValueOf(op);
    if (observed !== undefined) values.add(observed);
    if (op.kind === "cas" && op.expected !== undefined) values.add(op.expected);
  }
  return values;
}

/** A read of a value no write could have produced needs no search, and makes the clearest witness. */
function findNeverWrittenRead(key: string, ops: readonly Operation[]): Violation | undefined {
  const writers = new Map<string, Operation[]>();
  for (const op of ops) {
    if (op.kind === "get" || op.value === undefined) continue;
    const list = writers.get(op.value);
    if (list === undefined) writers.set(op.value, [op]);
    else list.push(op);
  }
  for (const op of ops) {
    const value = observedValueOf(op);
    if (value === undefined) continue;
    const candidates = writers.get(value) ?? [];
    const readEnd = effectiveCompleteMs(op);
    if (candidates.some((w) => writesValue(w, value) && w.invokeMs <= readEnd)) continue;
    return {
      kind: "read-never-written",
      key,
      message: `read returned ${JSON.stringify(value)}, which no write to this key could have produced by then`,
      ops: [op],
    };
  }
  return undefined;
}

/**
 * Symmetry reduction for unknown-outcome ops. Values that no successful read returned
 * are unobservable, so the model sees them all as one placeholder; after that, unknown
 * ops with the same effect (same kind, same model value, same deadlines) are
 * interchangeable. Among interchangeable pending ops the search only ever linearizes the
 * earliest-invoked unused one: any linearization using some of them can be rewritten to
 * use them in invocation order (each replacement was invoked no later), so nothing is
 * lost, while 2^k subsets shrink to k+1 counts. Every unknown op gets a class (often of
 * one); ok ops get -1.
 */
function symmetryClasses(ops: readonly Operation[]): {
  values: string[];
  classOf: Int32Array;
  members: number[][];
} {
  const readValues = observedValues(ops);
  const values = ops.map((op) => {
    if (op.kind === "get") return readResultOf(op)?.value ?? "";
    const v = op.value ?? "";
    return readValues.has(v) ? v : unreadValue;
  });
  const classOf = new Int32Array(ops.length).fill(-1);
  const members: number[][] = [];
  const classIds = new Map<string, number>();
  ops.forEach((op, i) => {
    if (op.outcome !== "unknown" || op.kind === "get") return;
    const value = op.kind === "delete" || op.kind === "expire" ? "" : values[i];
    const signature = `${op.kind}|${op.expireInMs ?? 0}|${op.deleteInMs ?? 0}|${value}|${op.expected ?? ""}`;
    let id = classIds.get(signature);
    if (id === undefined) {
      id = members.length;
      classIds.set(signature, id);
      members.push([]);
    }
    classOf[i] = id;
    members[id]?.push(i);
  });
  return { values, classOf, members };
}

/** Splitmix-style 32-bit generator: deterministic hash keys make runs reproducible. */
function zobristKeys(n: number): Int32Array {
  const keys = new Int32Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x = (x + 0x6d2b79f5) | 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    keys[i] = t ^ (t >>> 14);
  }
  return keys;
}

/**
 * The optional (unknown) ops linearized so far, as an immutable linked stack: cache
 * entries share the tail, so remembering a configuration costs O(1) memory however many
 * optional ops it used.
 */
interface UsedOptional {
  op: number;
  parent: UsedOptional | null;
}

/**
 * An explored configuration: the linearized ok ops (as the highest one plus the holes
 * below it), the model state, and the optional ops it used.
 */
interface CacheEntry {
  state: number;
  maxLinearized: number;
  holes: Int32Array;
  used: UsedOptional | null;
}

function sameHoles(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks one key's operations (any order; they are filtered and sorted here). */
export function checkKeyLinearizable(
  key: string,
  keyOps: readonly Operation[],
  options: LinearizabilityOptions = {},
  deadlineMs: number = Number.POSITIVE_INFINITY,
): KeyCheckResult {
  const maxSteps = options.maxStepsPerKey ?? defaultLinearizabilityOptions.maxStepsPerKey;
  const now = options.now ?? (() => performance.now());
  const prefixOps = options.witnessPrefixOps ?? defaultLinearizabilityOptions.witnessPrefixOps;
  const concurrentMax = options.witnessConcurrentOps ?? defaultLinearizabilityOptions.witnessConcurrentOps;

  const prepared = prepareKeyOps(keyOps);
  const pruned =
    options.pruneUnobservedUnknownWrites === false
      ? { kept: prepared, dropped: 0 }
      : dropUnobservedUnknownWrites(prepared);
  const ops = pruned.kept;
  const n = ops.length;
  const effort = (steps: number, cacheEntries: number): KeySearchStats => ({
    steps,
    cacheEntries,
    prunedUnknownWrites: pruned.dropped,
  });
  const neverWritten = options.neverWrittenPrecheck === false ? undefined : findNeverWrittenRead(key, ops);
  if (neverWritten !== undefined) return { status: "violation", ...effort(0, 0), violation: neverWritten };

  // Events: entry 2i is op i's call, 2i+1 its return; `order` sorts them by time with
  // calls before returns at equal times (touching intervals count as concurrent, which
  // can only forgive, never invent, a violation).
  const eventCount = 2 * n;
  const eventTime = new Float64Array(eventCount);
  for (let i = 0; i < n; i++) {
    const op = ops[i] as Operation;
    eventTime[2 * i] = op.invokeMs;
    eventTime[2 * i + 1] = Math.max(op.invokeMs, effectiveCompleteMs(op));
  }
  const order = Array.from({ length: eventCount }, (_, e) => e);
  order.sort((a, b) => (eventTime[a] as number) - (eventTime[b] as number) || (a & 1) - (b & 1) || a - b);

  // Doubly linked list over events; index eventCount is the head sentinel.
  const head = eventCount;
  const next = new Int32Array(eventCount + 1).fill(-1);
  const prev = new Int32Array(eventCount + 1).fill(-1);
  let last = head;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  const unlink = (e: number): void => {
    const p = prev[e] as number;
    const q = next[e] as number;
    next[p] = q;
    if (q !== -1) prev[q] = p;
  };
  const relink = (e: number): void => {
    const p = prev[e] as number;
    const q = next[e] as number;
    next[p] = e;
    if (q !== -1) prev[q] = e;
  };

  const required = new Uint8Array(n);
  let requiredLeft = 0;
  for (let i = 0; i < n; i++) {
    if ((ops[i] as Operation).outcome === "ok") {
      required[i] = 1;
      requiredLeft++;
    }
  }

  const symmetry = symmetryClasses(ops);
  const model = new RegisterModel(ops, symmetry.values);
  const classOf = symmetry.classOf;
  const classMembers = symmetry.members;
  const classUsed = new Int32Array(classMembers.length);
  const usedNow = new Uint8Array(n);
  let used: UsedOptional | null = null;
  const zobrist = zobristKeys(n);
  // Hash of the linearized ok ops; optional ops are compared by dominance instead.
  let hash = 0;
  const cache = new Map<number, CacheEntry[]>();
  let cacheEntries = 0;

  const stackOp = new Int32Array(n);
  const stackState = new Int32Array(n);
  // Highest ok op linearized at or below each stack depth.
  const stackMax = new Int32Array(n);
  let depth = 0;
  let state = model.initial;
  const maxRequiredBelow = (d: number): number => (d === 0 ? -1 : (stackMax[d - 1] as number));

  // Unlinearized ok ops below `maxLin`, excluding `tried`: calls in the list appear in op
  // order, so the walk stops at the first ok call past maxLin; it visits the holes and
  // the pending optional ops in front of them.
  const holesFor = (maxLin: number, tried: number): Int32Array => {
    const holes: number[] = [];
    for (let e = next[head] as number; e !== -1; e = next[e] as number) {
      if ((e & 1) === 1) continue;
      const op = e >> 1;
      if (required[op] === 0) continue;
      if (op > maxLin) break;
      if (op !== tried) holes.push(op);
    }
    return Int32Array.from(holes);
  };

  /**
   * Using fewer optional ops never hurts: the unused ones stay available, and by the
   * symmetry rule any used twin was invoked no later. So a configuration with the same ok
   * ops and state as an explored one, whose optional ops include all of that one's, can
   * add nothing new.
   */
  const covers = (explored: UsedOptional | null): boolean => {
    for (let u = explored; u !== null; u = u.parent) if (usedNow[u.op] === 0) return false;
    return true;
  };

  /** Records the configuration after linearizing `op`, unless one at least as good was explored. */
  const remember = (op: number, newState: number): boolean => {
    const isRequired = required[op] === 1;
    const newHash = isRequired ? hash ^ (zobrist[op] as number) : hash;
    const maxLin = isRequired ? Math.max(maxRequiredBelow(depth), op) : maxRequiredBelow(depth);
    const bucketKey = (newHash ^ Math.imul(newState + 1, 0x9e3779b1)) >>> 0;
    const holes = holesFor(maxLin, op);
    usedNow[op] = 1;
    let bucket = cache.get(bucketKey);
    if (bucket === undefined) {
      bucket = [];
      cache.set(bucketKey, bucket);
    }
    let fresh = true;
    for (const c of bucket) {
      if (c.state === newState && c.maxLinearized === maxLin && sameHoles(c.holes, holes) && covers(c.used)) {
        fresh = false;
        break;
      }
    }
    usedNow[op] = 0;
    if (fresh) {
      const newUsed = isRequired ? used : { op, parent: used };
      bucket.push({ state: newState, maxLinearized: maxLin, holes, used: newUsed });
      cacheEntries++;
    }
    return fresh;
  };

  // The deepest point reached: the best witness the search can give.
  let bestDepth = -1;
  let bestStuckOp = -1;
  let bestState = model.initial;
  let bestPrefix: number[] = [];

  let steps = 0;
  let e = next[head] as number;
  while (requiredLeft > 0) {
    steps++;
    if (steps > maxSteps) {
      return {
        status: "unknown",
        ...effort(steps, cacheEntries),
        reason: `budget exhausted after ${maxSteps} steps`,
      };
    }
    if ((steps & 4095) === 0 && now() > deadlineMs) {
      return { status: "unknown", ...effort(steps, cacheEntries), reason: "budget exhausted (time)" };
    }
    if (e !== -1 && (e & 1) === 0) {
      const op = e >> 1;
      const cls = classOf[op] as number;
      if (cls >= 0 && classMembers[cls]?.[classUsed[cls] as number] !== op) {
        // An interchangeable, earlier-invoked twin is still pending: only it may go first.
        e = next[e] as number;
        continue;
      }
      const newState = model.step(state, op);
      if (newState !== -1 && remember(op, newState)) {
        stackOp[depth] = op;
        stackState[depth] = state;
        stackMax[depth] =
          required[op] === 1 ? Math.max(maxRequiredBelow(depth), op) : maxRequiredBelow(depth);
        depth++;
        if (required[op] === 1) {
          hash ^= zobrist[op] as number;
          requiredLeft--;
        } else {
          usedNow[op] = 1;
          used = { op, parent: used };
          (classUsed[cls] as number)++;
        }
        state = newState;
        unlink(e);
        unlink(e + 1);
        e = next[head] as number;
      } else {
        e = next[e] as number;
      }
      continue;
    }
    // An optional (unknown-outcome) op's return constrains nothing: it may never happen.
    if (e !== -1 && required[e >> 1] === 0) {
      e = next[e] as number;
      continue;
    }
    // A return event (or the end of the list): its op had to be linearized by now.
    if (depth > bestDepth) {
      bestDepth = depth;
      bestStuckOp = e === -1 ? -1 : e >> 1;
      bestState = state;
      bestPrefix = Array.from(stackOp.subarray(Math.max(0, depth - prefixOps), depth));
    }
    if (depth === 0) {
      const violation = buildWitness(
        key,
        ops,
        model,
        bestDepth,
        bestStuckOp,
        bestState,
        bestPrefix,
        concurrentMax,
      );
      return { status: "violation", ...effort(steps, cacheEntries), violation };
    }
    depth--;
    const op = stackOp[depth] as number;
    state = stackState[depth] as number;
    if (required[op] === 1) {
      hash ^= zobrist[op] as number;
      requiredLeft++;
    } else {
      usedNow[op] = 0;
      used = used?.parent ?? null;
      (classUsed[classOf[op] as number] as number)--;
    }
    // Relink in the reverse order of unlinking so the list is restored exactly.
    relink(2 * op + 1);
    relink(2 * op);
    e = next[2 * op] as number;
  }
  return { status: "ok", ...effort(steps, cacheEntries) };
}

function buildWitness(
  key: string,
  ops: readonly Operation[],
  model: RegisterModel,
  depth: number,
  stuckOp: number,
  stateId: number,
  prefix: readonly number[],
  concurrentMax: number,
): Violation {
  const stuck = stuckOp >= 0 ? ops[stuckOp] : undefined;
  const prefixOps = prefix.map((i) => ops[i] as Operation);
  const concurrent: Operation[] = [];
  if (stuck !== undefined) {
    const start = stuck.invokeMs;
    const end = effectiveCompleteMs(stuck);
    for (const op of ops) {
      if (concurrent.length >= concurrentMax) break;
      if (op === stuck) continue;
      if (op.invokeMs <= end && effectiveCompleteMs(op) >= start) concurrent.push(op);
    }
  }
  const details = [
    `linearized ${depth} of ${ops.length} ops before getting stuck; model state then: ${model.describe(stateId)}`,
    `last linearized ops (in linearization order):`,
    ...prefixOps.map((op) => `  ${describeOp(op)}`),
    `could not linearize: ${stuck === undefined ? "(end of history)" : describeOp(stuck)}`,
    `ops concurrent with it:`,
    ...concurrent.map((op) => `  ${describeOp(op)}`),
  ];
  const witnessOps = stuck === undefined ? [...prefixOps] : [stuck, ...concurrent];
  return {
    kind: "not-linearizable",
    key,
    message:
      stuck === undefined
        ? "history is not linearizable"
        : `no linearization explains ${stuck.kind} #${stuck.id} (${JSON.stringify(stuck.result ?? null)})`,
    ops: witnessOps,
    details,
  };
}

/** Partitions the register ops of `history` by key and checks each key independently. */
export function checkLinearizability(history: History, options: LinearizabilityOptions = {}): CheckerVerdict {
  const now = options.now ?? (() => performance.now());
  const start = now();
  const deadline = start + (options.timeBudgetMs ?? defaultLinearizabilityOptions.timeBudgetMs);
  const verdict = new VerdictBuilder("linearizability", options.maxViolations ?? defaultMaxViolations);
  const groups = groupByKey(history.filter((op) => registerKinds.has(op.kind)));
  for (const [key, keyOps] of groups) {
    verdict.keyChecked();
    if (now() > deadline) {
      // Keys never searched are undecided too; say so rather than start a search with no time.
      verdict.unknown(key, "unknown: budget exhausted (time) before this key was searched");
      continue;
    }
    const result = checkKeyLinearizable(key, keyOps, options, deadline);
    verdict.add("steps", result.steps);
    verdict.add("cacheEntries", result.cacheEntries);
    verdict.add("prunedUnknownWrites", result.prunedUnknownWrites);
    verdict.add("ops", keyOps.length);
    if (result.status === "violation") verdict.violation(result.violation);
    else if (result.status === "unknown") verdict.unknown(key, `unknown: ${result.reason}`);
  }
  verdict.add("ms", now() - start);
  return verdict.build();
}

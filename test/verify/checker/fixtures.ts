import type { Operation, OpKind, OpResult, Outcome } from "../history.ts";

/**
 * Test-only helpers: a terse history builder for hand-written cases, and a generator of
 * histories that are linearizable by construction (random ops run against a sequential
 * model, each given a random real-time interval around its linearization point).
 */

export interface OpSpec {
  kind: OpKind;
  key?: string;
  client?: number | string;
  value?: string;
  expected?: string;
  invokeMs: number;
  completeMs?: number;
  outcome?: Outcome;
  result?: OpResult;
  expireInMs?: number;
  deleteInMs?: number;
  ttlMs?: number;
  ownerId?: string;
  fencingToken?: string;
  member?: string;
  phase?: "main" | "final";
}

export class HistoryBuilder {
  private readonly ops: Operation[] = [];

  add(spec: OpSpec): Operation {
    const { key = "k", client = this.ops.length, outcome = "ok", ...rest } = spec;
    const op: Operation = { id: this.ops.length, client, key, outcome, ...rest };
    this.ops.push(op);
    return op;
  }

  set(
    value: string,
    invokeMs: number,
    completeMs: number | undefined,
    outcome: Outcome = "ok",
    key = "k",
  ): Operation {
    return this.add({ kind: "set", key, value, invokeMs, completeMs, outcome });
  }

  get(found: string | null, invokeMs: number, completeMs: number, key = "k", member?: string): Operation {
    const result: OpResult = found === null ? { found: false } : { found: true, value: found };
    return this.add({ kind: "get", key, invokeMs, completeMs, result, member });
  }

  setEIfUnset(value: string, written: boolean, invokeMs: number, completeMs: number, key = "k"): Operation {
    return this.add({ kind: "setEIfUnset", key, value, invokeMs, completeMs, result: { written } });
  }

  /** A compare-and-set: `succeeded`, or failed with what its get saw (null: not found). */
  cas(
    expected: string,
    value: string,
    succeeded: boolean | "unknown",
    invokeMs: number,
    completeMs: number | undefined,
    saw: string | null = null,
    key = "k",
  ): Operation {
    if (succeeded === "unknown") {
      return this.add({ kind: "cas", key, expected, value, invokeMs, completeMs, outcome: "unknown" });
    }
    const result: OpResult = succeeded
      ? { succeeded }
      : saw === null
        ? { succeeded, found: false }
        : { succeeded, found: true, value: saw };
    return this.add({ kind: "cas", key, expected, value, invokeMs, completeMs, result });
  }

  history(): Operation[] {
    return this.ops;
  }
}

export { seededRandom } from "../../support/seeded-random.ts";

/** One random step of the generator, as fast-check or a seeded RNG produces it. */
export interface GenStep {
  /** 0 get, 1 set, 2 setE, 3 delete, 4 expire, 5 setEIfUnset (biased by the caller). */
  kind: number;
  key: number;
  /** Ms the invocation precedes the linearization point. */
  before: number;
  /** Ms the completion follows it. */
  after: number;
  /** 0..99: < 80 ok, < 88 unknown and applied, < 94 unknown and never applied, else fail. */
  outcomeRoll: number;
  /** Let a mortal value decay (expire or be deleted) just before this step. */
  decay: boolean;
  /** Whether setE / setEIfUnset get an expire or delete deadline. */
  mortal: number;
}

interface GenState {
  present: boolean;
  value: string | undefined;
  expires: boolean;
  deletes: boolean;
}

const stepKinds: readonly OpKind[] = ["get", "set", "setE", "delete", "expire", "setEIfUnset"];

/**
 * Runs the steps against a sequential per-key model; step i takes effect at 10·i ms and
 * is recorded over [10·i − before, 10·i + after]. Every value written is unique.
 */
export function generateLinearizableHistory(steps: readonly GenStep[], keyCount: number): Operation[] {
  const states: GenState[] = Array.from({ length: keyCount }, () => ({
    present: false,
    value: undefined,
    expires: false,
    deletes: false,
  }));
  const ops: Operation[] = [];
  steps.forEach((step, i) => {
    const state = states[step.key % keyCount] as GenState;
    const key = `k${step.key % keyCount}`;
    const at = 10 * i + 100;
    if (step.decay && state.present && state.value !== undefined && (state.expires || state.deletes)) {
      if (state.deletes && !state.expires) state.present = false;
      state.value = undefined;
    } else if (step.decay && state.present && state.value === undefined && state.deletes) {
      state.present = false;
    }
    const kind = stepKinds[step.kind % stepKinds.length] as OpKind;
    const roll = step.outcomeRoll;
    const outcome: Outcome = roll < 80 ? "ok" : roll < 94 ? "unknown" : "fail";
    const applied = roll < 88;
    const op: Operation = {
      id: ops.length,
      client: i % 7,
      kind,
      key,
      invokeMs: at - step.before,
      completeMs: at + step.after,
      outcome,
    };
    const value = `v${i}`;
    const expireInMs = step.mortal === 1 || step.mortal === 3 ? 50 : 0;
    const deleteInMs = step.mortal === 2 || step.mortal === 3 ? 100 : 0;
    switch (kind) {
      case "get":
        // A read that failed or timed out reports nothing; give it a bogus result to prove it is ignored.
        op.result =
          outcome === "ok" && state.present && state.value !== undefined
            ? { found: true, value: state.value }
            : outcome === "ok"
              ? { found: false }
              : { found: true, value: "ignored" };
        break;
      case "set":
        op.value = value;
        if (applied) Object.assign(state, { present: true, value, expires: false, deletes: false });
        break;
      case "setE":
        Object.assign(op, { value, expireInMs, deleteInMs });
        if (applied)
          Object.assign(state, { present: true, value, expires: expireInMs > 0, deletes: deleteInMs > 0 });
        break;
      case "delete":
        if (applied)
          Object.assign(state, { present: false, value: undefined, expires: false, deletes: false });
        break;
      case "expire":
        if (applied && state.present) state.value = undefined;
        break;
      case "setEIfUnset": {
        Object.assign(op, { value, expireInMs, deleteInMs });
        const wrote = applied && !state.present;
        if (wrote)
          Object.assign(state, { present: true, value, expires: expireInMs > 0, deletes: deleteInMs > 0 });
        if (outcome === "ok") op.result = { written: wrote };
        break;
      }
    }
    if (outcome === "unknown" && i % 2 === 0) delete op.completeMs;
    ops.push(op);
  });
  return ops;
}

/** Steps from a seeded RNG, for big fixed-size histories (fast-check shrinks small ones). */
export function randomSteps(
  rng: () => number,
  count: number,
  keyCount: number,
  spreadMs: number,
  unknownShare = 0.1,
): GenStep[] {
  const steps: GenStep[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng();
    // Unknown outcomes at the requested share, a few certain failures, the rest ok.
    const outcomeRoll =
      r < unknownShare
        ? 80 + Math.floor((r / unknownShare) * 14)
        : r < unknownShare + 0.03
          ? 94 + Math.floor(rng() * 6)
          : Math.floor(rng() * 80);
    steps.push({
      kind: Math.floor(rng() * stepKinds.length),
      key: Math.floor(rng() * keyCount),
      before: Math.floor(rng() * spreadMs),
      after: Math.floor(rng() * spreadMs),
      outcomeRoll,
      decay: rng() < 0.1,
      mortal: Math.floor(rng() * 4),
    });
  }
  return steps;
}

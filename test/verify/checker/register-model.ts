import type { Operation } from "../history.ts";
import { casResultOf, readResultOf, writtenResultOf } from "../history.ts";

/**
 * The sequential specification of one key of the store, as the linearizability search
 * sees it.
 *
 * A key is absent, present with a value, or present but expired (`get` misses it, yet
 * `setEIfUnset` does not write over it — see interfaces.md). Time-based expiry is not
 * modelled with clocks: a write with deadlines may decay, at any moment after it took
 * effect, to expired and/or absent. That keeps the checker free of false alarms from
 * clock skew; whether decay happened at the right time is the TTL checker's job.
 *
 * Decay makes the model nondeterministic, so (as in Porcupine's NondeterministicModel)
 * the search state is the *set* of register states reachable so far, closed under decay.
 * Sets are interned to small integers so the search compares and caches numbers.
 *
 * A single register state is a short string: "A" absent; "E0"/"E1" expired (1 = will
 * also be deleted); "Vxy<value>" value, x=1 if it will expire, y=1 if it will be deleted.
 */
type RegisterState = string;

const absent: RegisterState = "A";

function flag(b: boolean): string {
  return b ? "1" : "0";
}

function valueState(value: string, expires: boolean, deletes: boolean): RegisterState {
  return `V${flag(expires)}${flag(deletes)}${value}`;
}

/** Every state `s` can silently decay into, including itself. */
function decayClosure(s: RegisterState, out: Set<RegisterState>): void {
  out.add(s);
  const tag = s[0];
  if (tag === "E") {
    if (s[1] === "1") out.add(absent);
  } else if (tag === "V") {
    const expires = s[1] === "1";
    const deletes = s[2] === "1";
    if (expires) out.add(`E${flag(deletes)}`);
    // A delete deadline alone also ends the value (then the key is gone at once).
    if (deletes) out.add(absent);
  }
}

function isMortal(op: Operation): { expires: boolean; deletes: boolean } {
  return { expires: (op.expireInMs ?? 0) > 0, deletes: (op.deleteInMs ?? 0) > 0 };
}

/**
 * Applies one operation with its observed result to one state; null when the result is
 * impossible from that state.
 */
function apply(s: RegisterState, op: Operation, value: string): RegisterState | null {
  switch (op.kind) {
    case "set":
      return valueState(value, false, false);
    case "setE": {
      const m = isMortal(op);
      return valueState(value, m.expires, m.deletes);
    }
    case "delete":
      return absent;
    case "expire":
      if (s[0] === "V") return `E${s[2]}`;
      return s;
    case "get": {
      const r = readResultOf(op);
      if (r === undefined) return s;
      if (r.found) return s[0] === "V" && s.slice(3) === value ? s : null;
      return s[0] === "V" ? null : s;
    }
    case "setEIfUnset": {
      const written = writtenResultOf(op)?.written;
      if (s === absent) {
        if (written === false) return null;
        const m = isMortal(op);
        return valueState(value, m.expires, m.deletes);
      }
      return written === true ? null : s;
    }
    case "cas": {
      // Compare value == expected (a missing or expired key never matches), then set, or get.
      const holds = s[0] === "V" && s.slice(3) === op.expected;
      const r = casResultOf(op);
      if (r === undefined) return holds ? valueState(value, false, false) : s; // unknown: the state decides
      if (r.succeeded) return holds ? valueState(value, false, false) : null;
      if (holds) return null;
      if (r.found === undefined) return s;
      if (r.found) return s[0] === "V" && s.slice(3) === r.value ? s : null;
      return s[0] === "V" ? null : s;
    }
    default:
      // Lock and resource operations never reach the register model.
      return null;
  }
}

/** The linearizability checker maps values no read returned to this one placeholder. */
export const unreadValue = "\u0000unread";

export function describeRegisterState(s: RegisterState): string {
  if (s === absent) return "absent";
  if (s[0] === "V" && s.slice(3) === unreadValue) return "a value no read returned";
  if (s[0] === "E") return s[1] === "1" ? "expired (delete pending)" : "expired";
  const deadlines = [s[1] === "1" ? "may expire" : "", s[2] === "1" ? "may be deleted" : ""].filter(
    (x) => x !== "",
  );
  return `value ${JSON.stringify(s.slice(3))}${deadlines.length > 0 ? ` (${deadlines.join(", ")})` : ""}`;
}

/** Interned state sets and memoized transitions for one key's search. */
export class RegisterModel {
  private readonly setsById: RegisterState[][] = [];
  private readonly idsByKey = new Map<string, number>();
  private readonly transitions = new Map<number, number>();
  readonly initial: number;

  /**
   * `values[i]` is the value op i writes or (for a get) expects, as the model should
   * compare it; the caller may map values no read returned to one placeholder so states
   * that differ only in an unobservable value merge.
   */
  constructor(
    private readonly ops: readonly Operation[],
    private readonly values: readonly string[],
  ) {
    const closure = new Set<RegisterState>();
    decayClosure(absent, closure);
    this.initial = this.intern(closure);
  }

  /** The state-set id after `ops[opIndex]`, or -1 when no member state allows it. */
  step(stateId: number, opIndex: number): number {
    // ops.length + 1 keeps the product unique per (state, op) pair.
    const memoKey = stateId * (this.ops.length + 1) + opIndex;
    const memo = this.transitions.get(memoKey);
    if (memo !== undefined) return memo;
    const op = this.ops[opIndex];
    const states = this.setsById[stateId];
    if (op === undefined || states === undefined) throw new Error("register model: bad state or op index");
    const next = new Set<RegisterState>();
    for (const s of states) {
      const r = apply(s, op, this.values[opIndex] ?? "");
      if (r !== null) decayClosure(r, next);
    }
    const id = next.size === 0 ? -1 : this.intern(next);
    this.transitions.set(memoKey, id);
    return id;
  }

  describe(stateId: number): string {
    const states = this.setsById[stateId] ?? [];
    return states.map(describeRegisterState).join(" | ");
  }

  private intern(states: Set<RegisterState>): number {
    const sorted = [...states].sort();
    const key = sorted.join("\u0000");
    const existing = this.idsByKey.get(key);
    if (existing !== undefined) return existing;
    const id = this.setsById.length;
    this.setsById.push(sorted);
    this.idsByKey.set(key, id);
    return id;
  }
}

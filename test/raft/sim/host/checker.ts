/**
 * What the clients of the simulated cluster may observe, checked as it happens:
 * - state machine safety: every member applies the same entry at each index, in order;
 * - election safety: one leader per term (as members report their role);
 * - every waiter settles: a call on a running member settles by its deadline (plus a few ticks);
 * - ok only for a write applied, and at an index no other entry holds;
 * - not-applied never for an attempt that was (or later is) applied;
 * - a read returns only a committed value, and none older than a write acknowledged before it began;
 * - every acknowledged write survives: converged members hold exactly the committed state;
 * - no command that fails validation enters the log through a forward.
 */
import type { Entry, NodeId } from "../../../../src/raft/core/types.ts";
import { decodeCommand } from "../../../../src/store/replicated/command.ts";
import { InvariantViolation } from "../checker.ts";

const utf8 = new TextDecoder();

/** What an entry's bytes say: a client write attempt (`writeId#attempt`), or bytes that do not decode. */
export type Payload =
  | { kind: "write"; key: string; attempt: string; writeId: string }
  | { kind: "invalid"; tag: string };

export function payloadOf(data: Uint8Array): Payload {
  try {
    const command = decodeCommand(data);
    const attempt = utf8.decode(command.value);
    return { kind: "write", key: command.key, attempt, writeId: attempt.split("#")[0]! };
  } catch {
    return { kind: "invalid", tag: Buffer.from(data).toString("hex") };
  }
}

interface Applied {
  term: number;
  fingerprint: string;
}

interface AttemptState {
  writeId: string;
  key: string;
  /** Reported not applied: it must never apply. */
  notApplied: boolean;
}

export class HostChecker {
  private readonly committed = new Map<number, Applied>();
  /** Index of each write's first application (a retry after it is a dedup hit: no effect). */
  readonly effective = new Map<string, { index: number; attempt: string; key: string }>();
  /** Applications of each attempt (index), so a not-applied report can be checked. */
  private readonly appliedAttempts = new Map<string, number>();
  private readonly attempts = new Map<string, AttemptState>();
  /** Per key, writes acknowledged so far: [step of the ack, index]. */
  private readonly acks = new Map<string, { step: number; index: number }[]>();
  readonly ackedWrites: string[] = [];
  private readonly leaderByTerm = new Map<number, NodeId>();
  /** Invalid commands that were applied, with their term: allowed only if proposed on that term's leader. */
  readonly invalidApplied: { tag: string; term: number }[] = [];
  maxAppliedIndex = 0;

  leaderSeen(node: NodeId, term: number): void {
    const known = this.leaderByTerm.get(term);
    if (known !== undefined && known !== node) {
      throw new InvariantViolation("election safety", `term ${term} has two leaders: ${known} and ${node}`);
    }
    this.leaderByTerm.set(term, node);
  }

  leaderOf(term: number): NodeId | undefined {
    return this.leaderByTerm.get(term);
  }

  registerAttempt(attempt: string, writeId: string, key: string): void {
    this.attempts.set(attempt, { writeId, key, notApplied: false });
  }

  /** A member applied a Normal entry. */
  applied(node: NodeId, entry: Entry): void {
    const payload = payloadOf(entry.data);
    const fingerprint = `${entry.term}/${payload.kind === "write" ? payload.attempt : payload.tag}`;
    const known = this.committed.get(entry.index);
    if (known !== undefined) {
      if (known.fingerprint !== fingerprint) {
        throw new InvariantViolation(
          "state machine safety",
          `${node} applied ${fingerprint} at ${entry.index}; another member applied ${known.fingerprint}`,
        );
      }
      return;
    }
    this.committed.set(entry.index, { term: entry.term, fingerprint });
    if (entry.index > this.maxAppliedIndex) this.maxAppliedIndex = entry.index;
    if (payload.kind === "invalid") {
      this.invalidApplied.push({ tag: payload.tag, term: entry.term });
      return;
    }
    if (!this.appliedAttempts.has(payload.attempt)) this.appliedAttempts.set(payload.attempt, entry.index);
    const state = this.attempts.get(payload.attempt);
    if (state?.notApplied) {
      throw new InvariantViolation(
        "no not-applied for an applied write",
        `attempt ${payload.attempt} applied at ${entry.index} after its caller was told it was not applied`,
      );
    }
    if (!this.effective.has(payload.writeId)) {
      this.effective.set(payload.writeId, { index: entry.index, attempt: payload.attempt, key: payload.key });
    }
  }

  /**
   * A member applied a non-Normal entry (a leader's no-op) at `index`: the state machine
   * never sees those, so the probe infers them from the gap before the next Normal entry.
   */
  appliedOther(node: NodeId, index: number): void {
    const known = this.committed.get(index);
    if (known === undefined) {
      this.committed.set(index, { term: -1, fingerprint: "no-op" });
    } else if (known.fingerprint !== "no-op") {
      throw new InvariantViolation(
        "state machine safety",
        `${node} applied a no-op at ${index}; another member applied ${known.fingerprint}`,
      );
    }
  }

  /** A member restored a snapshot whose last Normal entry was (index, term). */
  restored(node: NodeId, index: number, term: number): void {
    if (index === 0) return;
    const known = this.committed.get(index);
    if (known !== undefined && known.term !== term) {
      throw new InvariantViolation(
        "state machine safety",
        `${node} restored a snapshot through ${index}/${term}; ${index}/${known.term} was applied`,
      );
    }
  }

  writeOk(attempt: string, step: number): void {
    const index = this.appliedAttempts.get(attempt);
    const state = this.attempts.get(attempt);
    if (state === undefined) throw new Error(`unknown attempt ${attempt}`);
    const effective = this.effective.get(state.writeId);
    if (index === undefined && effective === undefined) {
      throw new InvariantViolation(
        "ok only if applied",
        `attempt ${attempt} reported ok but nothing of ${state.writeId} applied`,
      );
    }
    const at = effective?.index ?? index!;
    let list = this.acks.get(state.key);
    if (list === undefined) {
      list = [];
      this.acks.set(state.key, list);
    }
    list.push({ step, index: at });
    this.ackedWrites.push(state.writeId);
  }

  notApplied(attempt: string): void {
    const state = this.attempts.get(attempt);
    if (state === undefined) throw new Error(`unknown attempt ${attempt}`);
    const index = this.appliedAttempts.get(attempt);
    if (index !== undefined) {
      throw new InvariantViolation(
        "no not-applied for an applied write",
        `attempt ${attempt} reported not applied, but it applied at ${index}`,
      );
    }
    state.notApplied = true;
  }

  /** A linearizable read of `key` begun at `startStep` returned `value` (an attempt id) or nothing. */
  readDone(node: NodeId, key: string, value: string | undefined, startStep: number): void {
    let mustSee = 0;
    for (const ack of this.acks.get(key) ?? [])
      if (ack.step < startStep && ack.index > mustSee) mustSee = ack.index;
    if (value === undefined) {
      if (mustSee > 0) {
        throw new InvariantViolation(
          "linearizable read",
          `read of ${key} on ${node} found nothing; a write at ${mustSee} was acknowledged before it began`,
        );
      }
      return;
    }
    const writeId = value.split("#")[0]!;
    const effective = this.effective.get(writeId);
    if (effective === undefined || effective.attempt !== value) {
      throw new InvariantViolation(
        "read only committed values",
        `read of ${key} on ${node} returned ${value}, which was never committed`,
      );
    }
    if (effective.index < mustSee) {
      throw new InvariantViolation(
        "linearizable read",
        `read of ${key} on ${node} returned ${value} (index ${effective.index}); a write at ${mustSee} was acknowledged before it began`,
      );
    }
  }

  /** The state a member that applied through `index` must hold: key → attempt of the last effective write. */
  expectedState(index: number): Map<string, string> {
    const ordered = [...this.effective.values()]
      .filter((write) => write.index <= index)
      .sort((a, b) => a.index - b.index);
    const state = new Map<string, string>();
    for (const write of ordered) state.set(write.key, write.attempt);
    return state;
  }
}

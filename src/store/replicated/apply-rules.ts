import { DkvError } from "../../errors.ts";
import { assert } from "../../raft/core/assert.ts";
import type { NodeId, RaftLogger } from "../../raft/core/types.ts";
import type { RaftHost } from "../../raft/host/raft-host.ts";
import { encodeCommandOf, Op } from "./command.ts";

/**
 * The apply rules: how a dstore replica decides what an entry does where releases may
 * differ (a refusal decided during apply). Every member of a shard must decide alike, so
 * the rules in force are state in the shard's log (etcd's cluster version, per shard),
 * not a property of the binary: a shard starts at 1, and its leader proposes an Op.Rules
 * entry raising them once every member advertises a higher version; every replica switches
 * at that entry's index, and snapshots carry the version (state-machine.ts).
 *   1: the release before rules were declared (dc8206c): the request table counts 32 B per
 *      id (RequestTable rule 1); a transaction's gets return any number of bytes.
 *   2: the request table counts blocks, time runs and clients (rule 2); a transaction
 *      whose gets would return more than TXN_RESULT_BYTES_MAX is refused TOO_LARGE.
 *   3: the request table counts a remembered error result at REMEMBERED_ERROR_BYTES and
 *      keeps at most that much of it: its message is a text releases may word differently,
 *      and under rules 2 its length decided when the table was full (rule 3).
 * A release implementing N applies the rules of every version up to N. Bump this (and
 * implement the old rules beside the new ones) for any change to what apply decides.
 */
export const APPLY_RULES_VERSION = 3;
/** What a member of a release before apply rules were declared implements (it advertises nothing). */
export const APPLY_RULES_VERSION_UNDECLARED = 1;

/** The Op.Rules entry raising the rules in force to `version`. */
export function encodeRulesCommand(version: number): Uint8Array {
  assert(
    Number.isInteger(version) && version >= 1 && version <= 0xff,
    () => `apply rules ${version} do not fit the entry's one byte`,
  );
  return encodeCommandOf(Op.Rules, "", Uint8Array.of(version), 0, 0, undefined);
}

/** What the monitor needs of a dstore state machine. */
export interface RulesHolder {
  readonly rulesVersion: number;
}

/** What the monitor needs of the cluster membership. */
export interface RulesAdvertisements {
  /** Whether every member of the cluster and every node in `nodes` advertises at least `version`. */
  everyMemberAdvertises(version: number, nodes: readonly NodeId[]): boolean;
  /** The highest rules in force on this member's shards: members advertising less are refused. */
  setRulesInForce(version: number): void;
}

/**
 * On each shard this member leads: proposes the raising entry once every member (the
 * cluster's and the shard's voters and learners) advertises `version`. One proposal in
 * flight per shard; a raise to a version already in force applies as a no-op, so a
 * repeated proposal (a leader change, a lost reply) changes nothing.
 */
export class ApplyRulesMonitor {
  private readonly inFlight = new Set<number>();

  constructor(
    private readonly host: RaftHost,
    private readonly shards: ReadonlyMap<number, RulesHolder>,
    private readonly members: RulesAdvertisements,
    private readonly version: number,
    private readonly timeoutMs: number,
    private readonly logger: RaftLogger,
  ) {}

  /** Tells the membership the highest rules in force here: call when a shard's rules change. */
  updateInForce(): void {
    let inForce = APPLY_RULES_VERSION_UNDECLARED;
    for (const machine of this.shards.values()) inForce = Math.max(inForce, machine.rulesVersion);
    this.members.setRulesInForce(inForce);
  }

  check(): void {
    this.updateInForce();
    for (const [groupId, machine] of this.shards) {
      if (machine.rulesVersion >= this.version || this.inFlight.has(groupId)) continue;
      let raft: ReturnType<RaftHost["status"]>["raft"];
      try {
        raft = this.host.status(groupId).raft;
      } catch (error) {
        // The host is closing or this member was removed: nothing to raise.
        if (DkvError.is(error)) continue;
        throw error;
      }
      if (raft.role !== "leader") continue;
      if (!this.members.everyMemberAdvertises(this.version, [...raft.conf.voters, ...raft.conf.learners]))
        continue;
      this.inFlight.add(groupId);
      this.host
        .propose(groupId, encodeRulesCommand(this.version), { timeoutMs: this.timeoutMs })
        .then(
          () =>
            this.logger.info(
              `shard ${groupId}: apply rules raised to ${this.version} (every member advertises it)`,
            ),
          (error: unknown) => {
            // Not the leader any more, or closing: the next check proposes again. Anything
            // else is a defect, logged (the next check tries again) rather than left as an
            // unhandled rejection.
            if (!DkvError.is(error))
              this.logger.warn(`shard ${groupId}: raising the apply rules failed: ${String(error)}`);
          },
        )
        .finally(() => this.inFlight.delete(groupId));
    }
  }
}

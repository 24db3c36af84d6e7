/**
 * The cluster-wide membership changes a member carries out (add, promote, remove,
 * transfer, and the view they start from), group by group on each group's leader, with
 * the registry's begin and end around them (see ClusterMembership for the order and why
 * every step is idempotent).
 */
import { DkvError } from "../../errors.ts";
import type { ConfChange, ConfState, NodeId, RaftLogger } from "../core/types.ts";
import { type GroupActions, groupName } from "./membership-actions.ts";
import {
  decodeRegistryResult,
  encodeRegistryCommand,
  isUndialable,
  type MemberRegistry,
  type RegistryCommand,
} from "./membership-registry.ts";
import {
  type ChangeReport,
  type GroupOutcome,
  MEMBERSHIP_GROUP_ID,
  type MemberInfo,
  type MembershipView,
} from "./membership-types.ts";
import type { RaftHost } from "./raft-host.ts";

export interface MembershipChangesDeps {
  host: RaftHost;
  registry: MemberRegistry;
  actions: GroupActions;
  self: NodeId;
  /** The members this cluster started from (reported by the view). */
  bootstrap: MemberInfo[];
  requestTimeoutMs: number;
  logger: RaftLogger;
  /** When `id` was last heard from (performance.now() ms), undefined if never. */
  lastContactAt: (id: NodeId) => number | undefined;
}

export class MembershipChanges {
  constructor(private readonly deps: MembershipChangesDeps) {}

  /** The registry (read linearizably), the membership group's configuration, the shards. */
  async view(): Promise<MembershipView> {
    // A linearizable read: a new member must see the add that was just acknowledged.
    const registry = await this.deps.host.read(MEMBERSHIP_GROUP_ID, () => this.deps.registry.state());
    return {
      registry,
      conf: this.deps.host.status(MEMBERSHIP_GROUP_ID).raft.conf,
      bootstrap: this.deps.bootstrap,
      shards: dataGroupIds(this.deps.host),
    };
  }

  async add(id: NodeId, address: string): Promise<ChangeReport> {
    const state = await this.deps.host.read(MEMBERSHIP_GROUP_ID, () => this.deps.registry.state());
    const unreachable = state.members.find((member) => isUndialable(member.address));
    if (unreachable !== undefined) {
      throw new DkvError(
        "CONFLICT",
        `${unreachable.id} has no address other members can dial (${unreachable.address}: a one-member cluster started without --cluster-members); ` +
          `restart it once with --replica-id ${unreachable.id} --cluster-members "${unreachable.id}=HOST:PEER_PORT" and the same --data-dir ` +
          "(its data is kept; it adopts that node-transport address), then add members",
      );
    }
    const known = state.members.find((member) => member.id === id);
    const everywhere = allGroupIds(this.deps.host).every((groupId) =>
      inConf(this.deps.host.status(groupId).raft.conf, id),
    );
    if (known !== undefined && everywhere && state.pending?.id !== id) {
      throw new DkvError(
        "CONFLICT",
        `${id} is already a member (at ${known.address}); to move it, remove it and add a new id`,
      );
    }
    await this.begin({ t: "begin", op: "add", id, address, by: this.deps.self });
    return this.carryOut("add", id, allGroupIds(this.deps.host), { type: "addLearner", node: id });
  }

  async promote(id: NodeId): Promise<ChangeReport> {
    await this.begin({ t: "begin", op: "promote", id, by: this.deps.self });
    return this.carryOut("promote", id, allGroupIds(this.deps.host), { type: "addVoter", node: id });
  }

  async remove(id: NodeId): Promise<ChangeReport> {
    for (const groupId of allGroupIds(this.deps.host)) {
      const conf = this.deps.host.status(groupId).raft.conf;
      if (conf.voters.length === 1 && conf.voters[0] === id) {
        throw new DkvError(
          "CONFLICT",
          `${id} is the last voter of ${groupName(groupId)}; removing it would leave no one to elect a leader — add and promote another member first`,
        );
      }
    }
    if (id === this.deps.self) {
      throw new DkvError(
        "CONFLICT",
        `${id} cannot carry out its own removal (it would stop serving halfway); send the request to another member's endpoint`,
      );
    }
    await this.begin({ t: "begin", op: "remove", id, by: this.deps.self });
    // Data groups first: the membership group (and so the address) goes last.
    const order = [...dataGroupIds(this.deps.host), MEMBERSHIP_GROUP_ID];
    return this.carryOut("remove", id, order, { type: "removeNode", node: id });
  }

  async transfer(id: NodeId, shard: number | undefined): Promise<ChangeReport> {
    const groups = shard === undefined ? allGroupIds(this.deps.host) : [shard];
    if (shard !== undefined && !dataGroupIds(this.deps.host).includes(shard)) {
      throw new DkvError(
        "UNKNOWN_SHARD",
        `shard ${shard} is not a replicated shard here (${dataGroupIds(this.deps.host).join(", ")})`,
      );
    }
    const outcomes: GroupOutcome[] = [];
    for (const groupId of groups) {
      const conf = this.deps.host.status(groupId).raft.conf;
      if (!conf.voters.includes(id)) {
        throw new DkvError(
          "CONFLICT",
          `${id} is not a voter of ${groupName(groupId)}${conf.learners.includes(id) ? " (a learner: promote it first)" : ""}; only a voter can lead`,
        );
      }
    }
    for (const groupId of groups) {
      outcomes.push(await this.transferGroup(groupId, id));
    }
    return report("transfer", id, outcomes);
  }

  private async begin(command: Extract<RegistryCommand, { t: "begin" }>): Promise<void> {
    const result = decodeRegistryResult(
      await this.deps.host.propose(MEMBERSHIP_GROUP_ID, encodeRegistryCommand(command)),
    );
    if (!result.ok) throw new DkvError("CONFLICT", result.message);
  }

  /** Applies `change` group by group, stopping at the first refusal; then ends the change. */
  private async carryOut(
    op: "add" | "promote" | "remove",
    id: NodeId,
    groups: number[],
    change: ConfChange,
  ): Promise<ChangeReport> {
    const outcomes: GroupOutcome[] = [];
    let failure: DkvError | undefined;
    for (const groupId of groups) {
      if (failure !== undefined) {
        outcomes.push({ group: label(groupId), outcome: "skipped" });
        continue;
      }
      try {
        if (op === "remove" && groupId === MEMBERSHIP_GROUP_ID) await this.handOffMembershipGroup(id);
        const unchanged = await this.deps.actions.runOnLeader(groupId, { action: "conf", change });
        outcomes.push({ group: label(groupId), outcome: unchanged ? "unchanged" : "applied" });
      } catch (error) {
        failure = DkvError.is(error) ? error : new DkvError("INTERNAL", String(error));
        outcomes.push({
          group: label(groupId),
          outcome: "failed",
          error: `${failure.message} [${failure.code}]`,
        });
      }
    }
    const completed = failure === undefined;
    await this.deps.host
      .propose(MEMBERSHIP_GROUP_ID, encodeRegistryCommand({ t: "end", op, id, completed }))
      .catch((error: unknown) =>
        this.deps.logger.warn(`could not record the end of ${op} ${id}: ${String(error)}`),
      );
    // A refusal before anything changed is the request's error, not a partial report.
    if (
      failure !== undefined &&
      outcomes.every((o) => o.outcome !== "applied") &&
      failure.code === "CONFLICT"
    ) {
      throw failure;
    }
    const result = report(op, id, outcomes);
    if (!completed)
      result.hint = `re-run the same command to finish the ${op} of ${id} (every step is idempotent)`;
    this.deps.logger.info(
      `membership: ${op} ${id}: ${outcomes.map((o) => `${o.group}=${o.outcome}`).join(" ")}`,
    );
    return result;
  }

  /**
   * Before `id` is removed from the membership group: if it leads that group, hand the
   * leadership to another voter (this member when it is one). A leader applies its own
   * removal and retires at once, before its followers learn the entry is committed; with
   * two voters the survivor then waits forever for a vote from the retired member.
   */
  private async handOffMembershipGroup(id: NodeId): Promise<void> {
    const { leader, conf } = this.deps.host.status(MEMBERSHIP_GROUP_ID).raft;
    if (leader !== id) return;
    const now = performance.now();
    const to = handOffTarget(this.deps.self, conf.voters, id, (voter) => {
      const heard = this.deps.lastContactAt(voter);
      return heard === undefined ? Number.POSITIVE_INFINITY : now - heard;
    });
    if (to === undefined) return; // the last voter: refused by the leader's own check
    const outcome = await this.transferGroup(MEMBERSHIP_GROUP_ID, to);
    if (outcome.outcome === "failed") {
      throw new DkvError(
        "UNAVAILABLE",
        `${id} leads the membership group and must hand it to ${to} before its removal there, but: ${outcome.error ?? "the transfer failed"}; re-run the command`,
        { outcome: "not-applied" },
      );
    }
  }

  private async transferGroup(groupId: number, to: NodeId): Promise<GroupOutcome> {
    const deadline = performance.now() + this.deps.requestTimeoutMs;
    try {
      if (this.deps.host.status(groupId).raft.leader === to)
        return { group: label(groupId), outcome: "unchanged" };
      await this.deps.actions.runOnLeader(groupId, { action: "transfer", to });
      // Bounded by the deadline: wakes on every leader change.
      while (performance.now() < deadline) {
        if (this.deps.host.status(groupId).raft.leader === to)
          return { group: label(groupId), outcome: "applied" };
        await this.deps.host.waitLeaderChange(groupId, Math.max(1, Math.ceil(deadline - performance.now())));
      }
      return {
        group: label(groupId),
        outcome: "failed",
        error: `${to} did not take over within ${this.deps.requestTimeoutMs} ms`,
      };
    } catch (error) {
      return { group: label(groupId), outcome: "failed", error: String(error) };
    }
  }
}

/** The host's data groups: every group but the membership group. */
export function dataGroupIds(host: RaftHost): number[] {
  return host.groupIds().filter((groupId) => groupId !== MEMBERSHIP_GROUP_ID);
}

/** The membership group, then the data groups. */
export function allGroupIds(host: RaftHost): number[] {
  return [MEMBERSHIP_GROUP_ID, ...dataGroupIds(host)];
}

function inConf(conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id) || conf.learners.includes(id);
}

function label(groupId: number): number | "membership" {
  return groupId === MEMBERSHIP_GROUP_ID ? "membership" : groupId;
}

function report(action: string, id: NodeId, groups: GroupOutcome[]): ChangeReport {
  return {
    ok: groups.every((g) => g.outcome === "applied" || g.outcome === "unchanged"),
    action,
    id,
    groups,
  };
}

/**
 * Who takes the membership group's leadership before `leaving` (its leader) is removed:
 * `self` if it votes; else the voter heard from most recently (`heardAgoMs`: ms since its
 * last message, infinite if never), since a silent one would fail the transfer on every
 * re-run. Undefined when `leaving` is the last voter.
 */
export function handOffTarget(
  self: NodeId,
  voters: readonly NodeId[],
  leaving: NodeId,
  heardAgoMs: (voter: NodeId) => number,
): NodeId | undefined {
  const others = voters.filter((voter) => voter !== leaving);
  if (others.includes(self)) return self;
  let best: NodeId | undefined;
  let bestAgo = Number.POSITIVE_INFINITY;
  for (const voter of others) {
    const ago = heardAgoMs(voter);
    if (best === undefined || ago < bestAgo) {
      best = voter;
      bestAgo = ago;
    }
  }
  return best;
}

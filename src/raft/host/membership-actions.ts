import { DkvError } from "../../errors.ts";
import type { NodeId, ProgressStatus, RaftLogger } from "../core/types.ts";
import type { NodeTransport } from "../transport/types.ts";
import {
  encodeMembershipFrame,
  type GroupAction,
  type GroupReply,
  type GroupRequest,
  MembershipFrameKind,
  replyError,
} from "./membership-frames.ts";
import { MEMBERSHIP_GROUP_ID, type RegistryState } from "./membership-types.ts";
import type { RaftHost } from "./raft-host.ts";

/**
 * One group change (a ConfChange or a leadership transfer) carried out on that group's
 * leader, wherever it is: here, or on another member's host through a membership request
 * frame and its reply. ClusterMembership decides which changes to make and in what order;
 * this runs each one, retries it through leader changes until the request timeout, and
 * answers other members' requests when this member leads the group.
 */
export interface GroupActionsConfig {
  host: RaftHost;
  transport: NodeTransport;
  self: NodeId;
  /** The member's replicated address, undefined once removed (a removed leader is not asked). */
  addressOf(id: NodeId): string | undefined;
  /** Ms since this member last received a Raft message from `id` (any group); undefined: never. */
  sinceHeardMs(id: NodeId): number | undefined;
  /** A learner within this many entries of the leader's last index may be promoted. */
  autoPromoteLagEntries: number;
  tickMs: number;
  electionTicks: number;
  requestTimeoutMs: number;
  logger: RaftLogger;
}

/** Bound on group requests this member has sent and awaits replies to. */
const REQUESTS_IN_FLIGHT_MAX = 256;

interface PendingRequest {
  to: NodeId;
  settle(reply: GroupReply): void;
  timer: ReturnType<typeof setTimeout>;
}

export class GroupActions {
  private readonly requests = new Map<number, PendingRequest>();
  private nextRequestId = 1;

  constructor(private readonly config: GroupActionsConfig) {}

  /** Settles every request still awaiting a reply with CLOSED. */
  close(): void {
    for (const request of this.requests.values()) {
      clearTimeout(request.timer);
      request.settle({ requestId: 0, ok: false, error: replyError(new DkvError("CLOSED", "shutting down")) });
    }
    this.requests.clear();
  }

  /** A reply frame from `from`: settles the request it answers (a reply from anyone else is ignored). */
  onReply(from: NodeId, reply: GroupReply): void {
    const request = this.requests.get(reply.requestId);
    if (request === undefined || request.to !== from) return;
    this.requests.delete(reply.requestId);
    clearTimeout(request.timer);
    request.settle(reply);
  }

  /** `to` is unreachable: its pending requests fail now, so a change retries on the group's next leader. */
  onUnreachable(to: NodeId): void {
    for (const [requestId, request] of this.requests) {
      if (request.to !== to) continue;
      this.requests.delete(requestId);
      clearTimeout(request.timer);
      const error = new DkvError("UNAVAILABLE", `lost contact with ${to} during a membership request`, {
        outcome: "unknown",
      });
      request.settle({ requestId, ok: false, error: replyError(error) });
    }
  }

  /**
   * On the leader of `groupId`: promotes one learner that caught up (one change at a time),
   * unless `pending` is that learner's removal.
   */
  promoteCaughtUp(groupId: number, pending: RegistryState["pending"]): void {
    const status = this.config.host.status(groupId).raft;
    if (status.role !== "leader") return;
    for (const learner of status.conf.learners) {
      if (this.config.addressOf(learner) === undefined) continue;
      if (pending?.op === "remove" && pending.id === learner) continue;
      const progress = status.progress[learner];
      const lag = status.lastIndex - (progress?.match ?? 0);
      if (!caughtUp(progress, lag, this.config.autoPromoteLagEntries)) continue;
      const attempt = this.config.host.tryProposeConfChange(
        groupId,
        { type: "addVoter", node: learner },
        this.config.requestTimeoutMs,
      );
      if (!attempt.ok) return;
      this.config.logger.info(
        `${groupName(groupId)}: promoting learner ${learner} to voter (caught up: ${lag} entries behind)`,
      );
      attempt.result.catch((error: unknown) =>
        this.config.logger.info(
          `${groupName(groupId)}: promoting ${learner} did not finish: ${String(error)}`,
        ),
      );
      return;
    }
  }

  /**
   * Runs `action` on the leader of `groupId` (here or on its host), retrying through leader
   * changes and a ConfChange still pending there, until the request timeout. True if the
   * group was already in the wanted state.
   */
  async runOnLeader(groupId: number, action: GroupAction): Promise<boolean> {
    const timeoutMs = this.config.requestTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    const waitMs = this.config.tickMs * 2;
    let last: GroupReply["error"];
    // Bounded by the deadline (each round waits at least waitMs or for a reply).
    while (performance.now() < deadline) {
      const leader = this.config.host.status(groupId).raft.leader;
      // A leader just removed (our view lags its hand-over) cannot be asked: wait for the next.
      const gone =
        leader !== null && leader !== this.config.self && this.config.addressOf(leader) === undefined;
      if (leader === null || gone) {
        await this.config.host.waitLeaderChange(groupId, waitMs);
        continue;
      }
      const remaining = Math.max(1, Math.ceil(deadline - performance.now()));
      // Not the whole deadline on one leader: one that stopped answering is replaced within
      // an election timeout or two, and the change should go on with the next one.
      const askMs = Math.min(remaining, Math.max(1000, 2 * this.config.electionTicks * this.config.tickMs));
      const reply =
        leader === this.config.self
          ? await this.runHere(groupId, action, remaining)
          : await this.ask(leader, { ...action, requestId: 0, groupId, timeoutMs: askMs });
      if (reply.ok) return reply.unchanged === true;
      last = reply.error;
      const code = reply.error?.code;
      if (
        code !== "NOT_LEADER" &&
        code !== "UNAVAILABLE" &&
        code !== "TIMEOUT" &&
        code !== "CLOSED" &&
        code !== "REMOVED"
      ) {
        throw new DkvError(code ?? "INTERNAL", reply.error?.message ?? "refused");
      }
      await Bun.sleep(waitMs);
    }
    throw new DkvError(
      "TIMEOUT",
      `${groupName(groupId)}: no leader carried out the change within ${timeoutMs} ms${last === undefined ? "" : ` (last: ${last.message})`}; re-run the command`,
      { outcome: "unknown" },
    );
  }

  /** The leader's side: checks the change against this group's configuration and progress, then proposes it. */
  private async runHere(groupId: number, action: GroupAction, timeoutMs: number): Promise<GroupReply> {
    try {
      const status = this.config.host.status(groupId).raft;
      if (status.role !== "leader") {
        return {
          requestId: 0,
          ok: false,
          error: replyError(
            new DkvError("NOT_LEADER", `${this.config.self} does not lead ${groupName(groupId)}`),
          ),
          leader: status.leader,
        };
      }
      if (action.action === "transfer") {
        this.config.host.transferLeadership(groupId, action.to);
        return { requestId: 0, ok: true };
      }
      const { change } = action;
      const { conf } = status;
      const isVoter = conf.voters.includes(change.node);
      const isLearner = conf.learners.includes(change.node);
      if (change.type === "addLearner" && (isVoter || isLearner))
        return { requestId: 0, ok: true, unchanged: true };
      if (change.type === "removeNode") {
        if (!isVoter && !isLearner) return { requestId: 0, ok: true, unchanged: true };
        if (isVoter && conf.voters.length === 1) {
          throw new DkvError(
            "CONFLICT",
            `${change.node} is the last voter of ${groupName(groupId)}; it cannot be removed`,
          );
        }
        if (isVoter) await this.awaitQuorumAfterRemoval(change.node, groupId, conf.voters, timeoutMs);
      }
      if (change.type === "addVoter") {
        if (isVoter) return { requestId: 0, ok: true, unchanged: true };
        if (!isLearner)
          throw new DkvError(
            "CONFLICT",
            `${change.node} is not a learner of ${groupName(groupId)}; add it first`,
          );
        const progress = status.progress[change.node];
        const lag = status.lastIndex - (progress?.match ?? 0);
        if (!caughtUp(progress, lag, this.config.autoPromoteLagEntries)) {
          throw new DkvError("CONFLICT", this.notCaughtUp(change.node, groupId, progress, lag));
        }
      }
      const attempt = this.config.host.tryProposeConfChange(groupId, change, timeoutMs);
      if (!attempt.ok)
        return { requestId: 0, ok: false, error: replyError(attempt.error), leader: attempt.leader };
      await attempt.result;
      return { requestId: 0, ok: true };
    } catch (error) {
      return { requestId: 0, ok: false, error: replyError(error) };
    }
  }

  /**
   * Like etcd's strict reconfiguration check: removing a voter must leave a quorum of the
   * remaining voters answering (heard within two election timeouts; this leader counts).
   * Removing a live member while another is down would otherwise leave the group with no
   * quorum, and no way left to remove the dead one.
   */
  private async awaitQuorumAfterRemoval(
    node: NodeId,
    groupId: number,
    voters: readonly NodeId[],
    timeoutMs: number,
  ): Promise<void> {
    const remaining = voters.filter((voter) => voter !== node);
    const windowMs = 2 * this.config.electionTicks * this.config.tickMs;
    const quorum = (remaining.length >> 1) + 1;
    // A leader elected moments ago (e.g. the membership group handed to this member just
    // before the removal) has not yet heard from followers it never led: wait for their
    // answers to its heartbeats, up to one window (and half the request's time).
    const waitUntil = performance.now() + Math.min(windowMs, timeoutMs / 2);
    let silent: NodeId[];
    for (;;) {
      silent = remaining.filter((voter) => {
        if (voter === this.config.self) return false;
        const since = this.config.sinceHeardMs(voter);
        return since === undefined || since > windowMs;
      });
      if (remaining.length - silent.length >= quorum) return;
      if (performance.now() >= waitUntil) break;
      await Bun.sleep(Math.max(10, this.config.tickMs));
    }
    throw new DkvError(
      "CONFLICT",
      `removing ${node} would leave ${groupName(groupId)} ${remaining.length - silent.length} of ${remaining.length} voters answering ` +
        `(${silent.join(", ")} silent for over ${windowMs} ms), fewer than the ${quorum} it needs: it would stop serving for good. ` +
        `Remove ${silent.join(", ")} first (the dead member), or bring it back`,
    );
  }

  /** Why `node` may not be promoted yet, and what to do. */
  private notCaughtUp(
    node: NodeId,
    groupId: number,
    progress: ProgressStatus | undefined,
    lag: number,
  ): string {
    const group = groupName(groupId);
    if (progress === undefined || progress.recentActive !== true || progress.match === 0) {
      return `${node} has not answered the leader of ${group} lately: start it ('dkv serve --replica-id ${node} --join ...') and check that it listens at the address it was added with (${this.config.addressOf(node) ?? "unknown"}), then promote it`;
    }
    if (progress.state !== "replicate") {
      return `${node} is still being brought up to date by the leader of ${group} (${progress.state === "snapshot" ? "receiving a snapshot" : "matching its log"}); wait, then promote it`;
    }
    return `${node} lags ${lag} entries behind the leader of ${group} (at most ${this.config.autoPromoteLagEntries} allowed, --auto-promote-lag); wait for it to catch up, then promote it`;
  }

  async serve(from: NodeId, request: GroupRequest): Promise<void> {
    const action: GroupAction =
      request.action === "conf"
        ? { action: "conf", change: request.change }
        : { action: "transfer", to: request.to };
    const timeoutMs = Math.min(Math.max(1, request.timeoutMs), this.config.requestTimeoutMs * 4);
    const reply = await this.runHere(request.groupId, action, timeoutMs);
    this.config.transport.sendHost(
      from,
      encodeMembershipFrame({ kind: MembershipFrameKind.Reply, ...reply, requestId: request.requestId }),
    );
  }

  /** Sends a group request to `to`'s host; never rejects: failures come back as replies. */
  private ask(to: NodeId, request: GroupRequest): Promise<GroupReply> {
    if (this.requests.size >= REQUESTS_IN_FLIGHT_MAX) {
      return Promise.resolve({
        requestId: 0,
        ok: false,
        error: replyError(new DkvError("UNAVAILABLE", "too many membership requests in flight; retry later")),
      });
    }
    const requestId = this.nextRequestId++;
    return new Promise((settle) => {
      const timer = setTimeout(() => {
        if (!this.requests.delete(requestId)) return;
        settle({
          requestId,
          ok: false,
          error: replyError(
            new DkvError(
              "TIMEOUT",
              `${to} did not answer a membership request within ${request.timeoutMs} ms`,
              {
                outcome: "unknown",
              },
            ),
          ),
        });
      }, request.timeoutMs + this.config.tickMs);
      this.requests.set(requestId, { to, settle, timer });
      this.config.transport.sendHost(
        to,
        encodeMembershipFrame({ kind: MembershipFrameKind.Request, ...request, requestId }),
      );
    });
  }
}

/**
 * A learner may become a voter once it acknowledged entries lately, streams appends
 * (not probing, not installing a snapshot) and is within `lagMax` of the leader's log.
 */
function caughtUp(progress: ProgressStatus | undefined, lag: number, lagMax: number): boolean {
  return (
    progress?.recentActive === true && progress.state === "replicate" && progress.match > 0 && lag <= lagMax
  );
}

export function groupName(groupId: number): string {
  return groupId === MEMBERSHIP_GROUP_ID ? "the membership group" : `shard ${groupId}`;
}

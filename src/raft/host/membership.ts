import { DkvError } from "../../errors.ts";
import { tryParseHostPort } from "../../host-port.ts";
import type { ConfChange, ConfState, NodeId, RaftLogger } from "../core/types.ts";
import type { NodeTransport } from "../transport/types.ts";
import { GroupActions } from "./membership-actions.ts";
import { allGroupIds, dataGroupIds, MembershipChanges } from "./membership-changes.ts";
import { decodeMembershipFrame, encodeMembershipFrame, MembershipFrameKind } from "./membership-frames.ts";
import { isUndialable, MemberRegistry } from "./membership-registry.ts";
import { PeerRules } from "./membership-rules.ts";
import { type MembershipSeed, writeSeed } from "./membership-seed.ts";
import { StartChecks } from "./membership-start.ts";
import {
  MEMBERSHIP_GROUP_ID,
  type MemberInfo,
  type MembershipHooks,
  type MembershipRequest,
  type MembershipStatus,
  type MemberView,
} from "./membership-types.ts";
import type { RaftHost } from "./raft-host.ts";

/**
 * Cluster-wide membership over every Raft group of a host.
 *
 * One extra group, the membership group (id MEMBERSHIP_GROUP_ID, run by every member),
 * replicates the registry (membership-registry.ts): every member's address, removed ids,
 * and the change in progress. Its own configuration is the cluster's membership.
 *
 * A change is carried out by the member that received the request, group by group, each
 * on that group's leader (the leader checks it against its own configuration and progress,
 * then proposes the single-server ConfChange). Order:
 *   add:     registry `begin` (records the address) → membership group → data groups → `end`
 *   promote: `begin` → membership group → data groups → `end`
 *   remove:  `begin` → data groups → membership group → `end` (the id becomes "removed")
 * Every step is idempotent (a group already in the wanted state reports "unchanged"), so a
 * change that half-succeeded (the carrier died, a group timed out) is finished by running
 * the same command again; meanwhile the registry refuses changes of other members, until
 * the change's lease (PENDING_LEASE_MS of log time) runs out. The changes are carried
 * out by MembershipChanges (membership-changes.ts); each group's step is run by
 * GroupActions (membership-actions.ts), here or on that group's leader. This class: the
 * lifecycle, the admin request, status, the host's hooks (handshakes, removal notices),
 * housekeeping, and the peers and seed kept in step with the registry.
 */
export { MEMBERSHIP_GROUP_ID };

/** Ids as --cluster-members accepts them. */
const MEMBER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** A removed member told so at the handshake is logged at most this often (per id). */
const NOTICE_LOG_INTERVAL_MS = 10_000;

export interface ClusterMembershipConfig {
  host: RaftHost;
  transport: NodeTransport;
  self: NodeId;
  dataDir: string;
  seed: MembershipSeed;
  /** --cluster-members as given (undefined: not given); compared once with the replicated list. */
  flagMembers: ReadonlyMap<NodeId, string> | undefined;
  /** A learner within this many entries of the leader's last index is promoted (and may be promoted by hand). */
  autoPromoteLagEntries: number;
  /** Promote caught-up learners automatically (the leader of each group decides). */
  autoPromote: boolean;
  tickMs: number;
  electionTicks: number;
  requestTimeoutMs: number;
  /**
   * The apply rules this binary implements (the store's APPLY_RULES_VERSION), answered to
   * peers that ask (membership-rules.ts); the composition may inject a lower one (tests).
   */
  applyRulesVersion: number;
  logger: RaftLogger;
}

export class ClusterMembership implements MembershipHooks {
  readonly registry: MemberRegistry;
  private readonly host: RaftHost;
  private readonly logger: RaftLogger;
  private readonly lastContact = new Map<NodeId, number>();
  private readonly noticeLoggedAt = new Map<NodeId, number>();
  private readonly actions: GroupActions;
  private readonly changes: MembershipChanges;
  private readonly listeners = new Set<(members: MemberInfo[]) => void>();
  private promoter: ReturnType<typeof setInterval> | undefined;
  private seedWrite: Promise<void> = Promise.resolve();
  private readonly startChecks: StartChecks;
  /** What apply rules every member advertises; refuses those below the rules in force. */
  private readonly rules: PeerRules;
  private closed = false;

  constructor(private readonly config: ClusterMembershipConfig) {
    this.host = config.host;
    this.logger = config.logger;
    const bootstrap = new Map(config.seed.bootstrap.map((member) => [member.id, member.address]));
    this.registry = new MemberRegistry(bootstrap, () => this.onRegistryChange());
    this.startChecks = new StartChecks({ ...config, registry: this.registry });
    this.rules = new PeerRules({
      self: config.self,
      version: config.applyRulesVersion,
      transport: config.transport,
      logger: config.logger,
      lastContactAt: (id) => this.lastContact.get(id),
    });
    this.actions = new GroupActions({
      ...config,
      addressOf: (id) => this.registry.addressOf(id),
      sinceHeardMs: (id) => {
        const heard = this.lastContact.get(id);
        return heard === undefined ? undefined : performance.now() - heard;
      },
    });
    this.changes = new MembershipChanges({
      host: config.host,
      registry: this.registry,
      actions: this.actions,
      self: config.self,
      bootstrap: config.seed.bootstrap,
      requestTimeoutMs: config.requestTimeoutMs,
      logger: config.logger,
      lastContactAt: (id) => this.lastContact.get(id),
    });
    config.host.attachMembership(this);
  }

  /** Opens the membership group (after host.start()) and starts the auto-promoter. */
  async start(): Promise<void> {
    this.config.transport.setPeers(this.peers());
    await this.host.addGroup(MEMBERSHIP_GROUP_ID, this.registry);
    this.startChecks.begin();
    const everyMs = this.config.tickMs * Math.max(2, Math.floor(this.config.electionTicks / 2));
    this.promoter = setInterval(() => this.housekeeping(), everyMs);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.promoter !== undefined) clearInterval(this.promoter);
    this.promoter = undefined;
    this.actions.close();
    return this.seedWrite;
  }

  // ---- for other layers (peer security, status) ---------------------------------------

  /** Every current member with its replicated address. */
  members(): MemberInfo[] {
    return this.registry.state().members;
  }

  /**
   * The members as this member knows them at start: the replicated ones, except on a
   * member that just joined (its membership group's log is still empty, so its registry
   * holds the bootstrap list): then the running cluster's, as --join fetched them.
   */
  membersAtStart(): MemberInfo[] {
    if (this.config.seed.source !== "join") return this.members();
    return [...this.config.seed.members].map(([id, address]) => ({ id, address }));
  }

  /** Calls `listener` with the member list after every change; returns the unsubscribe. */
  onMembersChange(listener: (members: MemberInfo[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Whether every member of the cluster (the registry's) and every one of `nodes` (a
   * group's voters and learners) advertises apply rules `version` or higher.
   */
  everyMemberAdvertises(version: number, nodes: readonly NodeId[]): boolean {
    const ids = new Set(nodes);
    for (const member of this.registry.state().members) ids.add(member.id);
    return this.rules.everyAdvertises(version, ids);
  }

  /** The highest apply rules in force on this member's shards: members advertising less are refused. */
  setRulesInForce(version: number): void {
    this.rules.setRulesInForce(version);
  }

  status(): MembershipStatus {
    const state = this.registry.state();
    const now = performance.now();
    let metaConf: ConfState = { voters: [], learners: [] };
    const learnerIn = new Map<NodeId, number[]>();
    if (this.host.retiredError === undefined) {
      metaConf = this.host.status(MEMBERSHIP_GROUP_ID).raft.conf;
      for (const groupId of dataGroupIds(this.host)) {
        for (const learner of this.host.status(groupId).raft.conf.learners) {
          learnerIn.set(learner, [...(learnerIn.get(learner) ?? []), groupId]);
        }
      }
    }
    const members = state.members.map((member): MemberView => {
      const heard = this.lastContact.get(member.id);
      return {
        id: member.id,
        address: member.address,
        voter: metaConf.voters.includes(member.id),
        learnerIn: learnerIn.get(member.id) ?? [],
        lastContactMs: member.id === this.config.self || heard === undefined ? null : Math.round(now - heard),
        applyRules: this.rules.advertised(member.id),
      };
    });
    return {
      applyRules: { implemented: this.rules.version, inForce: this.rules.rulesInForce },
      members,
      removed: state.removed.map((member) => member.id),
      pending: state.pending,
      removedSelf: this.host.retiredError !== undefined,
    };
  }

  /** The `membership` admin op: a JSON request, a JSON answer (errors are thrown as DkvErrors). */
  async handle(requestJson: string): Promise<string> {
    let request: MembershipRequest;
    try {
      request = JSON.parse(requestJson) as MembershipRequest;
    } catch (error) {
      throw new DkvError("BAD_REQUEST", "the membership request is not JSON; use the dkv CLI", {
        cause: error,
      });
    }
    const retired = this.host.retiredError;
    if (retired !== undefined) throw retired;
    switch (request.action) {
      case "members":
        return JSON.stringify(await this.changes.view());
      case "add":
        return JSON.stringify(await this.changes.add(checkId(request.id), checkAddress(request.address)));
      case "promote":
        return JSON.stringify(await this.changes.promote(checkId(request.id)));
      case "remove":
        return JSON.stringify(await this.changes.remove(checkId(request.id)));
      case "transfer":
        return JSON.stringify(await this.changes.transfer(checkId(request.id), request.shard));
      default:
        throw new DkvError(
          "BAD_REQUEST",
          "unknown membership action; use add, promote, remove, transfer or members",
        );
    }
  }

  // ---- MembershipHooks ----------------------------------------------------------------

  addressOf(id: NodeId): string | undefined {
    return this.registry.addressOf(id);
  }

  acceptRaft(from: NodeId): boolean {
    const now = performance.now();
    this.lastContact.set(from, now);
    // A removed member's link is closed once its removal applies here (the transport drops
    // it from the peers); until then its traffic is dropped. When it dials again, its
    // handshake is refused with the removal notice (refusalNotice).
    if (this.registry.isRemoved(from)) return false;
    // A member below the apply rules in force would decide writes otherwise: refused.
    return this.rules.accepts(from, now);
  }

  sendsRaftTo(to: NodeId): boolean {
    // What a refused member would receive, it would apply by rules it does not hold
    // (an older release after a downgrade): it gets nothing until it advertises them.
    return this.rules.sendsTo(to);
  }

  refusalNotice(from: NodeId): Uint8Array | undefined {
    if (!this.registry.isRemoved(from) || this.host.retiredError !== undefined) return undefined;
    // Keyed by removed ids only (bounded by the registry); one line per id per interval.
    const now = performance.now();
    if (now - (this.noticeLoggedAt.get(from) ?? Number.NEGATIVE_INFINITY) >= NOTICE_LOG_INTERVAL_MS) {
      this.noticeLoggedAt.set(from, now);
      this.logger.info(
        `${from} dialed this member but was removed from the cluster (it missed its removal while down or cut off): told it so`,
      );
    }
    return encodeMembershipFrame({ kind: MembershipFrameKind.Removed, removed: from });
  }

  onRefusalNotice(from: NodeId, payload: Uint8Array): void {
    let frame: ReturnType<typeof decodeMembershipFrame>;
    try {
      frame = decodeMembershipFrame(payload);
    } catch (error) {
      this.logger.warn(
        `member ${from} refused this member's connection with an unreadable notice: ${String(error)}`,
      );
      return;
    }
    if (frame?.kind !== MembershipFrameKind.Removed) {
      this.logger.warn(`member ${from} refused this member's connection with an unexpected notice; ignored`);
      return;
    }
    this.noticeOfRemoval(from, frame.removed);
  }

  /** `from` (a member in this member's view) says `removed` was removed. */
  private noticeOfRemoval(from: NodeId, removed: NodeId): void {
    if (removed !== this.config.self || this.registry.addressOf(from) === undefined) return;
    this.retire(
      `member ${from} says this member (${this.config.self}) was removed from the cluster (it missed its removal while it was down or cut off)`,
    );
  }

  onHost(from: NodeId, payload: Uint8Array): boolean {
    let frame: ReturnType<typeof decodeMembershipFrame>;
    try {
      frame = decodeMembershipFrame(payload);
    } catch (error) {
      this.logger.warn(`dropped a membership frame from ${from}: ${String(error)}`);
      return true;
    }
    if (frame === undefined) return false;
    if (frame.kind === MembershipFrameKind.Request) {
      void this.actions.serve(from, frame);
    } else if (frame.kind === MembershipFrameKind.Reply) {
      this.actions.onReply(from, frame);
    } else if (frame.kind === MembershipFrameKind.RulesQuery) {
      this.rules.onQuery(from);
    } else if (frame.kind === MembershipFrameKind.RulesAnswer) {
      this.rules.onAnswer(from, frame.rules);
    } else {
      this.noticeOfRemoval(from, frame.removed);
    }
    return true;
  }

  onPeerConnected(from: NodeId): void {
    this.rules.onReconnected(from);
  }

  onUnreachable(to: NodeId): void {
    this.rules.onUnreachable(to);
    // A leader that died: give up on it now, so the change retries on the group's next leader.
    this.actions.onUnreachable(to);
  }

  onConfChange(groupId: number, change: ConfChange, _conf: ConfState): void {
    if (change.type !== "removeNode" || change.node !== this.config.self) return;
    if (groupId === MEMBERSHIP_GROUP_ID) {
      this.retire(`this member (${this.config.self}) was removed from the cluster`);
    } else {
      this.logger.info(`group ${groupId}: this member (${this.config.self}) was removed from it`);
    }
  }

  // ---- housekeeping: auto-promotion, the stale-flag check ------------------------------

  private housekeeping(): void {
    if (this.closed || this.host.retiredError !== undefined) return;
    try {
      const peers = this.peers();
      this.rules.retain(new Set(peers.keys()));
      this.rules.poll(peers.keys());
      this.startChecks.run();
      if (this.config.autoPromote)
        for (const groupId of allGroupIds(this.host))
          this.actions.promoteCaughtUp(groupId, this.registry.state().pending);
    } catch (error) {
      this.logger.warn(`membership housekeeping failed: ${String(error)}`);
    }
  }

  // ---- internals ------------------------------------------------------------------------

  private retire(reason: string): void {
    if (this.host.retiredError !== undefined) return;
    this.host.retire(
      new DkvError(
        "REMOVED",
        `${reason}; it no longer serves this cluster: stop this process, and wipe its data dir before reusing the machine (a new member needs a new id)`,
      ),
    );
    // It speaks to no one any more: no redials, and no member's connection is read.
    this.config.transport.setPeers(new Map());
  }

  private onRegistryChange(): void {
    if (this.closed) return;
    this.config.transport.setPeers(this.peers());
    const members = this.registry.state().members;
    for (const listener of this.listeners) listener(members);
    const self = this.config.self;
    const latest = members.some((member) => member.id === self)
      ? members
      : [...members, { id: self, address: this.lastKnownAddress(self) }];
    // Serialised: the last write wins, in order.
    this.seedWrite = this.seedWrite
      .then(() => writeSeed(this.config.dataDir, self, this.config.seed.bootstrap, latest))
      .catch((error: unknown) =>
        this.logger.warn(`could not save ${this.config.dataDir}/membership.json: ${String(error)}`),
      );
  }

  /** Whom the transport dials: the registry's members, plus the seed's (until the registry has caught up). */
  private peers(): Map<NodeId, string> {
    const peers = new Map<NodeId, string>();
    if (this.host.retiredError !== undefined) return peers;
    for (const [id, address] of this.config.seed.members)
      if (!this.registry.isRemoved(id)) peers.set(id, address);
    for (const [id, address] of this.registry.addresses()) {
      // Port 0 (a member started without --cluster-members, before its adopted address
      // replayed here) cannot be dialed: the seed's address for it, if it has one, can.
      if (!isUndialable(address) || peers.get(id) === undefined) peers.set(id, address);
    }
    return peers;
  }

  private lastKnownAddress(id: NodeId): string {
    return this.registry.addressOf(id) ?? this.config.seed.members.get(id) ?? "127.0.0.1:0";
  }
}

function checkId(id: unknown): NodeId {
  if (typeof id !== "string" || !MEMBER_ID.test(id)) {
    throw new DkvError(
      "BAD_REQUEST",
      `member id ${JSON.stringify(id)} must be letters, digits, '.', '_' or '-' (at most 63), e.g. node-4`,
    );
  }
  return id;
}

function checkAddress(address: unknown): string {
  const text = typeof address === "string" ? address : "";
  if (tryParseHostPort(text, { portMin: 1 }) === undefined) {
    throw new DkvError(
      "BAD_REQUEST",
      `${JSON.stringify(address)} is not HOST:PEER_PORT (the new member's node-transport address, port 1-65535)`,
    );
  }
  return text;
}

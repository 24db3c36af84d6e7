import type { NodeId, RaftLogger } from "../core/types.ts";
import type { NodeTransport } from "../transport/types.ts";
import { encodeMembershipFrame, MembershipFrameKind } from "./membership-frames.ts";

/** A member's advertised apply rules count while answered within this long. */
const ANSWER_FRESH_MS = 15_000;
/**
 * ...and while it answers: a query left unanswered this long voids its last answer (it
 * may have restarted with a release that does not answer, unnoticed by the transport).
 */
const ANSWER_WAIT_MS = 2_000;
/** The raise rests only on answers this recent, given since the member was last unreachable. */
const RAISE_ANSWER_MS = 2_000;
/** A member that answered is asked again this often, so its answer stays fresh. */
const REFRESH_MS = 5_000;
/** A member that did not answer (a release before the rules, or down) is asked after this, doubling... */
const RETRY_MIN_MS = 1_000;
/** ...up to this: a release before the rules logs one dropped host frame per ask. */
const RETRY_MAX_MS = 60_000;
/** A member refused this long (sending, not answering enough) is named in the log... */
const REFUSAL_LOG_AFTER_MS = 3_000;
/** ...at most this often (per member). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;
/** A query sent to a member not heard from for this long may not have reached it (partitioned, paused, down). */
const SILENT_MS = 1_000;
/** The version a member that never answered is taken to implement (a release before the rules). */
const UNDECLARED = 1;

export interface PeerRulesConfig {
  self: NodeId;
  /** The apply rules this binary implements (the store's APPLY_RULES_VERSION; lower in tests). */
  version: number;
  transport: NodeTransport;
  logger: RaftLogger;
  now?: () => number;
  /** When a Raft message from `id` last arrived (membership's last contact), on the same clock as `now`. */
  lastContactAt?: (id: NodeId) => number | undefined;
}

interface Asked {
  atMs: number;
  delayMs: number;
  answered: boolean;
  /** When the oldest query it has not answered was sent (undefined: it answered the last). */
  pendingSinceMs: number | undefined;
  /**
   * The last query may not have reached it: sent while it was silent (SILENT_MS), or a
   * drop was reported since. Its next message gets a query at once, whatever the backoff:
   * a member back from a partition or a pause answers within a round trip, so it is not
   * refused for a backoff's length (up to a minute) after it returns; a connected release
   * before the rules, which never answers, is still asked only as the backoff says.
   */
  mayBeLost: boolean;
}

interface Answer {
  version: number;
  atMs: number;
  /** False once a send to it was dropped since: it must answer again before a raise rests on it. */
  confirmed: boolean;
}

/**
 * What apply rules each member implements, as it advertises them: this member asks each
 * peer (RulesQuery) and keeps its answer (RulesAnswer) while fresh, the way etcd's leader
 * asks every member's version before raising the cluster version. A member of a release
 * before the rules does not know the frame (it logs it as dropped) and never answers: it
 * counts as 1, as does a member whose answer went stale or whose connection dropped since
 * (it may have restarted with another release). Once rules above 1 are in force on this member's shards, Raft
 * messages from a member advertising less are refused: it would decide writes otherwise.
 */
export class PeerRules {
  private readonly answers = new Map<NodeId, Answer>();
  private readonly asked = new Map<NodeId, Asked>();
  private readonly refusalLoggedAt = new Map<NodeId, number>();
  /** When each member now refused was first refused (since it last was taken, or unreachable). */
  private readonly refusingSince = new Map<NodeId, number>();
  private inForce = UNDECLARED;
  private readonly now: () => number;

  constructor(private readonly config: PeerRulesConfig) {
    this.now = config.now ?? (() => performance.now());
  }

  /** The rules this binary implements. */
  get version(): number {
    return this.config.version;
  }

  /** The highest rules in force on this member's shards (set by the store's monitor). */
  get rulesInForce(): number {
    return this.inForce;
  }

  setRulesInForce(version: number): void {
    this.inForce = version;
  }

  /**
   * What `id` advertises: its fresh answer, or 1 (no answer, a stale one, a query left
   * unanswered ANSWER_WAIT_MS since, or a release before the rules).
   */
  advertised(id: NodeId, nowMs = this.now()): number {
    if (id === this.config.self) return this.config.version;
    const answer = this.answers.get(id);
    if (answer === undefined || nowMs - answer.atMs > ANSWER_FRESH_MS) return UNDECLARED;
    const pendingSinceMs = this.asked.get(id)?.pendingSinceMs;
    return pendingSinceMs !== undefined && nowMs - pendingSinceMs > ANSWER_WAIT_MS
      ? UNDECLARED
      : answer.version;
  }

  /**
   * Whether every one of `ids` advertises at least `version`, each by an answer of the last
   * RAISE_ANSWER_MS given since it was last unreachable: the raise must not rest on an
   * answer from before a restart with an older release (which applies the raising entry as
   * a no-op). The others are asked now; a later check sees their answers.
   */
  everyAdvertises(version: number, ids: Iterable<NodeId>): boolean {
    const nowMs = this.now();
    const all = [...ids];
    for (const id of all) if (this.advertised(id, nowMs) < version) return false;
    let recent = true;
    for (const id of all) {
      const answer = this.answers.get(id);
      if (id === this.config.self || (answer?.confirmed === true && nowMs - answer.atMs <= RAISE_ANSWER_MS))
        continue;
      recent = false;
      if (this.asked.get(id)?.pendingSinceMs === undefined) this.ask(id, nowMs, RETRY_MIN_MS);
    }
    return recent;
  }

  /**
   * Whether a Raft message from `from` may be taken: always while rules 1 are in force;
   * above, only from a member advertising them. A refused member is asked again (it may
   * have been upgraded) and named in the log with what to do.
   */
  accepts(from: NodeId, nowMs: number): boolean {
    if (this.inForce <= UNDECLARED) return true;
    const advertised = this.advertised(from, nowMs);
    if (advertised >= this.inForce) {
      if (this.refusingSince.size > 0) this.refusingSince.delete(from);
      return true;
    }
    let sinceMs = this.refusingSince.get(from);
    if (sinceMs === undefined) {
      sinceMs = nowMs;
      this.refusingSince.set(from, nowMs);
    }
    // Asked at once (a member just back, or whose answer went stale, answers within a round
    // trip), then once a second while it goes on sending, without the poll's backoff: its
    // answer travels on its own link to this member, which may be down or redialing (a
    // restart, a partition healing), and is then lost; a backoff grown meanwhile would keep
    // a live member of this release refused for up to a minute (every member refusing the
    // others: no leader). A release before the rules, refused only after a downgrade, logs
    // each ask (one a second per peer) beside its peers' refusal warnings.
    this.askIfDue(from, nowMs, true);
    // Named in the log once it has gone on sending for a while without answering enough.
    if (
      nowMs - sinceMs >= REFUSAL_LOG_AFTER_MS &&
      nowMs - (this.refusalLoggedAt.get(from) ?? Number.NEGATIVE_INFINITY) >= REFUSAL_LOG_INTERVAL_MS
    ) {
      this.refusalLoggedAt.set(from, nowMs);
      this.config.logger.warn(
        `refused the Raft messages of member ${from}: it advertises apply rules ${advertised} (1: a dkv release from before apply rules, or no answer), but rules ${this.inForce} are in force on this member's shards, and it would decide writes otherwise. Upgrade ${from} to this dkv release (rules ${this.config.version}) or newer and restart it; if it ran an older release after the rules were raised, also wipe its data dir so it rejoins from a snapshot (README: Rolling upgrade)`,
      );
    }
    return false;
  }

  /**
   * Whether Raft messages may go to `to`: the same rule as `accepts`, without its log
   * lines. A member refused its messages is sent none either: an older release would apply
   * the entries by rules it does not hold and diverge. Raft treats the drops as lost
   * messages and catches it up once it advertises the rules. A refused member is asked
   * (once a second) here too: two members refusing each other (answers lost on redialing
   * links) send each other nothing, so no message of theirs would get them asked.
   */
  sendsTo(to: NodeId): boolean {
    if (this.inForce <= UNDECLARED) return true; // no clock read per message while under rules 1
    const nowMs = this.now();
    if (this.advertised(to, nowMs) >= this.inForce) return true;
    this.askIfDue(to, nowMs, false);
    return false;
  }

  /** Asks the peers whose answer is due (housekeeping). */
  poll(peers: Iterable<NodeId>): void {
    const nowMs = this.now();
    for (const id of peers) {
      if (id === this.config.self) continue;
      const asked = this.asked.get(id);
      if (asked === undefined) this.ask(id, nowMs, RETRY_MIN_MS);
      else if (asked.answered ? nowMs - asked.atMs >= REFRESH_MS : nowMs - asked.atMs >= asked.delayMs)
        this.ask(id, nowMs, asked.answered ? RETRY_MIN_MS : Math.min(asked.delayMs * 2, RETRY_MAX_MS));
    }
  }

  /** Forgets members no longer in the cluster (bounded by the registry). */
  retain(members: ReadonlySet<NodeId>): void {
    for (const map of [this.answers, this.asked, this.refusalLoggedAt, this.refusingSince])
      for (const id of map.keys()) if (!members.has(id)) map.delete(id);
  }

  /**
   * Messages to `id` were dropped: its connection went down (it may be restarting, with
   * another release) or its send queue is full (it is live, only behind). It is asked at
   * once (at its next message or poll), not after a backoff; its answer counts until that
   * query is ANSWER_WAIT_MS unanswered, but no raise rests on it before it answers again.
   * (Forgetting the answer here would refuse a live follower's acks while its queue is
   * full, and the query that clears it would be dropped in the same queue.)
   */
  onUnreachable(id: NodeId): void {
    const answer = this.answers.get(id);
    if (answer !== undefined) answer.confirmed = false;
    const asked = this.asked.get(id);
    if (asked === undefined) return;
    // Due now: asked at its next message or poll, with the backoff it had.
    asked.atMs = Number.NEGATIVE_INFINITY;
    asked.mayBeLost = true;
    if (asked.answered) {
      asked.answered = false;
      asked.pendingSinceMs = undefined;
    }
  }

  /**
   * `id` dialed this member anew and was authenticated, before anything on that connection
   * is delivered: it may be a new process, perhaps of an older release. Its last answer no
   * longer counts (while rules above 1 are in force its messages are refused and none are
   * sent to it) until it answers the query sent now, about one round trip. Without this its
   * old answer counted until a query went ANSWER_WAIT_MS unanswered, long enough for an
   * older release to take entries it would apply by other rules.
   */
  onReconnected(id: NodeId): void {
    if (id === this.config.self) return;
    this.answers.delete(id);
    this.ask(id, this.now(), RETRY_MIN_MS);
  }

  onQuery(from: NodeId): void {
    this.config.transport.sendHost(
      from,
      encodeMembershipFrame({ kind: MembershipFrameKind.RulesAnswer, rules: this.config.version }),
    );
  }

  onAnswer(from: NodeId, version: unknown): void {
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < UNDECLARED) return;
    const nowMs = this.now();
    this.answers.set(from, { version, atMs: nowMs, confirmed: true });
    const asked = this.asked.get(from);
    if (asked !== undefined) {
      asked.answered = true;
      asked.pendingSinceMs = undefined;
    }
  }

  /**
   * Asks `id` unless asked within the last RETRY_MIN_MS; with `heardNow` (it just sent
   * something) also when the last query may have been lost (sent while it was silent, or
   * dropped). A sender to a silent member re-asks only by time, or it would ask at every
   * message.
   */
  private askIfDue(id: NodeId, nowMs: number, heardNow: boolean): void {
    const asked = this.asked.get(id);
    if (asked === undefined || (heardNow && asked.mayBeLost) || nowMs - asked.atMs >= RETRY_MIN_MS)
      this.ask(id, nowMs, RETRY_MIN_MS);
  }

  private ask(id: NodeId, nowMs: number, delayMs: number): void {
    const before = this.asked.get(id);
    const pendingSinceMs = before?.answered === false ? (before.pendingSinceMs ?? nowMs) : nowMs;
    const heardAtMs = this.config.lastContactAt?.(id);
    const mayBeLost =
      heardAtMs === undefined ? this.config.lastContactAt !== undefined : nowMs - heardAtMs >= SILENT_MS;
    this.asked.set(id, { atMs: nowMs, delayMs, answered: false, pendingSinceMs, mayBeLost });
    this.config.transport.sendHost(id, encodeMembershipFrame({ kind: MembershipFrameKind.RulesQuery }));
  }
}

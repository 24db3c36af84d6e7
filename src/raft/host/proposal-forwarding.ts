/**
 * Proposal forwarding between hosts: a follower's host sends a proposal to the leader's
 * host and waits for its outcome (bounded in flight, deadline checked on every tick, an
 * unknown outcome when the leader is lost or the host shuts down); the leader's host
 * proposes what it is sent once, with no further hops, and replies.
 */

import { DkvError } from "../../errors.ts";
import type { NodeId } from "../core/types.ts";
import {
  encodeForwardError,
  encodeForwardOk,
  encodeForwardRequest,
  FrameKind,
  type HostFrame,
} from "./frames.ts";
import type { RaftGroup } from "./group.ts";
import type { ProposalReceiver } from "./group-proposals.ts";
import type { HostScheduler } from "./runtime.ts";
import type { RaftHostConfig } from "./types.ts";

const FORWARD_ID_MODULUS = 0x1_0000_0000;

/** How a forwarded proposal ended; a refusal may carry the remote's leader hint. */
export type ForwardOutcome =
  | { ok: true; result: Uint8Array }
  | { ok: false; error: DkvError; leader: NodeId | null };

interface Forward {
  to: NodeId;
  settle(outcome: ForwardOutcome): void;
  deadlineMs: number;
  timeoutMs: number;
}

/** Both sides of forwarding for one host: its proposals sent to leaders, and those it serves as leader. */
export class ProposalForwarding {
  private readonly forwards = new Map<number, Forward>();
  /**
   * Starts at a random point: a leader's reply to a forward of an earlier incarnation of
   * this member (queued for it, delivered after a restart) must not settle a new forward
   * that got the same id — it would hand one write another write's result.
   */
  private nextForwardId: number;
  private incomingForwards = 0;

  constructor(
    private readonly config: RaftHostConfig,
    private readonly scheduler: HostScheduler,
    private readonly forwardsInFlightMax: number,
    private readonly requestTimeoutMs: number,
  ) {
    this.nextForwardId = Math.floor((config.random ?? Math.random)() * FORWARD_ID_MODULUS);
  }

  /** Sends a proposal to `to`'s host; never rejects: failures come back as outcomes. */
  forward(to: NodeId, groupId: number, command: Uint8Array, timeoutMs: number): Promise<ForwardOutcome> {
    if (this.forwards.size >= this.forwardsInFlightMax) {
      const error = new DkvError(
        "UNAVAILABLE",
        `${this.forwards.size} proposals are already being forwarded to the leader; retry later or send to the leader directly`,
      );
      return Promise.resolve({ ok: false, error, leader: null });
    }
    // Bounded: at most forwardsInFlightMax ids are taken, so a free one is found quickly.
    let id = this.nextForwardId;
    while (this.forwards.has(id)) id = (id + 1) % FORWARD_ID_MODULUS;
    this.nextForwardId = (id + 1) % FORWARD_ID_MODULUS;
    return new Promise((settle) => {
      const deadlineMs = this.scheduler.monotonicMs() + timeoutMs;
      this.forwards.set(id, { to, settle, deadlineMs, timeoutMs });
      this.config.transport.sendHost(to, encodeForwardRequest(id, groupId, timeoutMs, command));
    });
  }

  /** A leader's reply (ForwardOk or ForwardError) from `from` settles its forward. */
  settleReply(from: NodeId, frame: Exclude<HostFrame, { kind: typeof FrameKind.ForwardRequest }>): void {
    const forward = this.forwards.get(frame.forwardId);
    if (forward === undefined || forward.to !== from) return; // late reply after a timeout
    this.forwards.delete(frame.forwardId);
    if (frame.kind === FrameKind.ForwardOk) forward.settle({ ok: true, result: frame.result });
    else forward.settle({ ok: false, error: frame.error, leader: frame.leader });
  }

  /** Forwards whose leader did not answer in time: their outcome is unknown. */
  expire(nowMs: number): void {
    for (const [id, forward] of this.forwards) {
      if (forward.deadlineMs > nowMs) continue;
      this.forwards.delete(id);
      const error = new DkvError(
        "TIMEOUT",
        `the leader ${forward.to} did not answer a forwarded proposal within ${forward.timeoutMs} ms; it may have been applied — retry with the same request id`,
        { outcome: "unknown" },
      );
      forward.settle({ ok: false, error, leader: null });
    }
  }

  /** `to` is unreachable: a forward to it may or may not have arrived, so its outcome is unknown. */
  failUnreachable(to: NodeId): void {
    for (const [id, forward] of this.forwards) {
      if (forward.to !== to) continue;
      this.forwards.delete(id);
      const error = new DkvError(
        "UNAVAILABLE",
        `lost contact with the leader ${to} while it handled a forwarded proposal; it may have been applied — retry with the same request id`,
        { outcome: "unknown" },
      );
      forward.settle({ ok: false, error, leader: null });
    }
  }

  /** The host shuts down (`error`: its CLOSED error): every forward in flight ends with an unknown outcome. */
  failAll(error: DkvError): void {
    for (const forward of this.forwards.values()) {
      forward.settle({
        ok: false,
        error: new DkvError("CLOSED", error.message, { outcome: "unknown" }),
        leader: null,
      });
    }
    this.forwards.clear();
  }

  /**
   * The leader's side of forwarding: propose here once (no further hops) and reply.
   * `group`: the group run here, undefined if none (or the host is shutting down).
   */
  serve(
    from: NodeId,
    forwardId: number,
    group: RaftGroup | undefined,
    groupId: number,
    timeoutMs: number,
    command: Uint8Array,
  ): void {
    const reply = (payload: Uint8Array) => this.config.transport.sendHost(from, payload);
    if (group === undefined) {
      const error = new DkvError(
        "UNAVAILABLE",
        `group ${groupId} is not running on ${this.config.self}; retry`,
      );
      reply(encodeForwardError(forwardId, error, null));
      return;
    }
    if (this.incomingForwards >= this.forwardsInFlightMax * 4) {
      const error = new DkvError(
        "UNAVAILABLE",
        `leader ${this.config.self} is handling too many forwarded proposals; retry later`,
      );
      reply(encodeForwardError(forwardId, error, this.config.self));
      return;
    }
    // The leader checks what followers send: bytes that fail validation never enter the log.
    const invalid = group.options.validateProposal?.(command) ?? null;
    if (invalid !== null) {
      reply(encodeForwardError(forwardId, new DkvError(invalid.code, invalid.message), this.config.self));
      return;
    }
    // The group tells this receiver (no promise per forwarded write).
    const receiver: ProposalReceiver = {
      proposalSettled: (error, result) => {
        this.incomingForwards--;
        if (error === undefined) {
          reply(encodeForwardOk(forwardId, result));
          return;
        }
        // The leader shutting down is not the caller's host closing: it may retry elsewhere.
        const sent =
          error.code === "CLOSED"
            ? new DkvError("UNAVAILABLE", error.message, { outcome: error.outcome })
            : error;
        reply(encodeForwardError(forwardId, sent, null));
      },
    };
    const refused = group.proposeTo(command, Math.max(1, timeoutMs || this.requestTimeoutMs), receiver);
    if (refused !== undefined) {
      reply(encodeForwardError(forwardId, refused.error, refused.leader));
      return;
    }
    this.incomingForwards++;
  }
}

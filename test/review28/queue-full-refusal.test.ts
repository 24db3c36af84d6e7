/**
 * review28: after the raise, a live follower is refused whenever a send to it is dropped.
 *
 * ver28 (ae50001) forgets a member's answer on every onUnreachable, to catch a member
 * that restarted with another release. But the transport reports onUnreachable for any
 * dropped send, a full send queue included (PeerLink.dropQueueFull, every 100 ms while it
 * stays full): a follower that the leader outpaces (large appends, a slow link) is live
 * and answers every query it receives, yet its acks are refused from the drop on, and the
 * query that would clear it goes into the same full queue and is dropped too, so it stays
 * refused for as long as the queue is full. The leader then learns nothing from it; with
 * both followers of a 3-member shard behind (a burst of large writes), no entry commits
 * until the queues drain: rules 2 turn a full queue, harmless before, into a write stall.
 * Expected: a member that is heard from and answers what reaches it is not refused because
 * a send to it was dropped (its answer must be confirmed again, not discarded at once).
 */
import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/raft/core/types.ts";
import { decodeMembershipFrame, MembershipFrameKind } from "../../src/raft/host/membership-frames.ts";
import { PeerRules } from "../../src/raft/host/membership-rules.ts";
import type { NodeTransport } from "../../src/raft/transport/types.ts";

describe("review28: a follower whose send queue is full", () => {
  test("is not refused while it acks and answers every query that reaches it", () => {
    let nowMs = 10_000;
    let queueFull = false;
    let rules: PeerRules | undefined;
    const transport = {
      self: "n1",
      sendHost(to: NodeId, payload: Uint8Array) {
        // A full queue drops the query like any send; F answers every query it gets.
        if (queueFull) return;
        if (decodeMembershipFrame(payload)?.kind === MembershipFrameKind.RulesQuery)
          queueMicrotask(() => rules?.onAnswer(to, 2));
      },
    } as unknown as NodeTransport;
    rules = new PeerRules({
      self: "n1",
      version: 2,
      transport,
      logger: { debug() {}, info() {}, warn() {} },
      now: () => nowMs,
    });
    rules.poll(["F"]);
    rules.onAnswer("F", 2);
    rules.setRulesInForce(2);
    let refused = 0;
    let longestRefusedMs = 0;
    let refusedSinceMs: number | undefined;
    return (async () => {
      // 3 s: F acks every 10 ms; the queue to F is full from 1.0 s to 1.8 s (the transport
      // reports it unreachable every 100 ms meanwhile); housekeeping polls every 500 ms.
      for (let step = 0; step < 300; step++) {
        nowMs += 10;
        const t = step * 10;
        queueFull = t >= 1_000 && t < 1_800;
        if (queueFull && t % 100 === 0) rules.onUnreachable("F");
        if (t % 500 === 0) rules.poll(["F"]);
        await Promise.resolve();
        if (rules.accepts("F", nowMs)) {
          refusedSinceMs = undefined;
        } else {
          refused++;
          refusedSinceMs ??= nowMs;
          longestRefusedMs = Math.max(longestRefusedMs, nowMs - refusedSinceMs + 10);
        }
        await Promise.resolve();
      }
      // F never stopped answering what reached it: its acks were refused for 0.8 s on ver28.
      expect(longestRefusedMs).toBeLessThanOrEqual(100);
      expect(refused).toBeLessThanOrEqual(10);
    })();
  });
});

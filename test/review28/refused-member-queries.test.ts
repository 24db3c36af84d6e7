/**
 * review28: a member of the release before apply rules is asked once a second, forever,
 * once the rules are raised.
 *
 * PeerRules.poll backs off from a member that never answers (1 s doubling to 60 s: the
 * release before logs every query as a dropped host frame, so README promises "soon at
 * most one a minute per member"). But after the raise, accepts() refuses that member's
 * Raft messages (heartbeat answers, votes: several a second) and asks it again on each
 * one once RETRY_MIN_MS (1 s) passed, resetting the backoff: the old member logs a warning
 * a second per peer for as long as it runs, and its peers send it a query a second.
 * Expected: the backoff holds for a member that never answered.
 */
import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/raft/core/types.ts";
import { decodeMembershipFrame, MembershipFrameKind } from "../../src/raft/host/membership-frames.ts";
import { PeerRules } from "../../src/raft/host/membership-rules.ts";
import type { NodeTransport } from "../../src/raft/transport/types.ts";

describe("review28: a refused member of the release before apply rules", () => {
  test("is asked at most once a second while it sends (not at every message)", () => {
    let nowMs = 50_000;
    const queries = new Map<NodeId, number>();
    const warnings: string[] = [];
    const transport = {
      self: "n1",
      sendHost(to: NodeId, payload: Uint8Array) {
        if (decodeMembershipFrame(payload)?.kind === MembershipFrameKind.RulesQuery)
          queries.set(to, (queries.get(to) ?? 0) + 1);
      },
    } as unknown as NodeTransport;
    const rules = new PeerRules({
      self: "n1",
      version: 2,
      transport,
      logger: { debug() {}, info() {}, warn: (line: string) => warnings.push(line) },
      now: () => nowMs,
    });
    rules.setRulesInForce(2);
    // Two minutes: housekeeping every 500 ms, a Raft message from n3 every 50 ms (it keeps
    // campaigning and answering heartbeats); n2 answers every query, n3 (dc8206c) none.
    let refused = 0;
    for (let step = 0; step < 2_400; step++) {
      nowMs += 50;
      if (step % 10 === 0) {
        rules.poll(["n2", "n3"]);
        rules.onAnswer("n2", 2);
      }
      if (!rules.accepts("n3", nowMs)) refused++;
    }
    expect(refused).toBe(2_400);
    // The lead changed this (stop 28): while it sends, a refused member is asked once a
    // second, not with the poll's backoff — an answer lost on a redialing link would
    // otherwise keep a live member of this release refused for up to a minute (verify's
    // kill/partition runs wedged: every member refusing the others). Bounded: one a second.
    expect(queries.get("n3")).toBeGreaterThanOrEqual(100);
    expect(queries.get("n3")).toBeLessThanOrEqual(121);
    // The refusal is still named in this member's log (at most every 10 s).
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.length).toBeLessThanOrEqual(13);
  });
});

/**
 * review28: a member's advertised apply rules outlive the member that gave them.
 *
 * PeerRules keeps a member's last RulesAnswer for ANSWER_FRESH_MS (15 s) whatever happened
 * since. A member that answered 2 and then restarted with the release before apply rules
 * (dc8206c: it logs each query as a dropped host frame and never answers) still counts as
 * advertising 2 for the rest of those 15 s, although the query sent after its restart went
 * unanswered:
 *  - the shard's leader raises the rules meanwhile (everyAdvertises is true), and dc8206c
 *    applies the Op.Rules entry as an unknown op, a silent no-op (its applyEntry turns a
 *    decode error into a BAD_REQUEST result), so it goes on deciding by rules 1;
 *  - after the raise its Raft messages are still accepted (accepts() is true) until the
 *    answer goes stale: it votes, acknowledges, may even lead, deciding otherwise.
 * ver28 since ae50001 forgets the answer when a send to the member is dropped
 * (onUnreachable), which a restart over TCP usually causes; these tests play a restart
 * that went unreported (the report is rate-limited to one per 100 ms per link, and an
 * answer sent just before the restart can arrive after the report).
 * Expected: a member that has not answered its latest query within the retry delay no
 * longer counts as advertising what it answered before.
 */
import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/raft/core/types.ts";
import { decodeMembershipFrame, MembershipFrameKind } from "../../src/raft/host/membership-frames.ts";
import { PeerRules } from "../../src/raft/host/membership-rules.ts";
import type { NodeTransport } from "../../src/raft/transport/types.ts";

function harness() {
  let nowMs = 100_000;
  const queries: NodeId[] = [];
  const warnings: string[] = [];
  const transport = {
    self: "n1",
    sendHost(to: NodeId, payload: Uint8Array) {
      if (decodeMembershipFrame(payload)?.kind === MembershipFrameKind.RulesQuery) queries.push(to);
    },
  } as unknown as NodeTransport;
  const rules = new PeerRules({
    self: "n1",
    version: 2,
    transport,
    logger: { debug() {}, info() {}, warn: (line: string) => warnings.push(line) },
    now: () => nowMs,
  });
  return {
    rules,
    queries,
    warnings,
    get now() {
      return nowMs;
    },
    advance(ms: number) {
      nowMs += ms;
    },
  };
}

const PEERS = ["n2", "n3"];
const MEMBERS = ["n1", ...PEERS];

describe("review28: an answer from before a member stopped answering", () => {
  test("no longer counts once the member left its latest query unanswered past the retry delay", () => {
    const h = harness();
    h.rules.poll(PEERS);
    h.rules.onAnswer("n2", 2);
    h.rules.onAnswer("n3", 2);
    expect(h.rules.everyAdvertises(2, MEMBERS)).toBe(true);
    // n3 restarts with the release before apply rules. The refresh (5 s later) asks both;
    // n2 answers, n3 logs the query as a dropped host frame and never answers.
    h.advance(2_000);
    for (let i = 0; i < 30; i++) {
      h.advance(100);
      h.rules.poll(PEERS);
      h.rules.onAnswer("n2", 2);
    }
    expect(h.queries.filter((id) => id === "n3").length).toBeGreaterThanOrEqual(2);
    // 3 s after the unanswered query (10 s after n3's answer): the leader's check.
    h.advance(3_000);
    h.rules.poll(PEERS);
    h.rules.onAnswer("n2", 2);
    expect(h.rules.advertised("n3")).toBe(1);
    expect(h.rules.everyAdvertises(2, MEMBERS)).toBe(false);
  });

  test("after a raise, a member that stopped answering is refused, not accepted until its old answer ages", () => {
    const h = harness();
    h.rules.poll(PEERS);
    h.rules.onAnswer("n2", 2);
    h.rules.onAnswer("n3", 2);
    h.rules.setRulesInForce(2);
    expect(h.rules.accepts("n3", h.now)).toBe(true);
    // n3 restarts with the old release; queries to it go unanswered from here on.
    for (let i = 0; i < 80; i++) {
      h.advance(100);
      h.rules.poll(PEERS);
      h.rules.onAnswer("n2", 2);
    }
    // 8 s after its answer, 3 s after the query it left unanswered: it would decide by rules 1.
    expect(h.rules.accepts("n2", h.now)).toBe(true);
    expect(h.rules.accepts("n3", h.now)).toBe(false);
  });
});

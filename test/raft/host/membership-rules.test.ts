import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../../src/raft/core/types.ts";
import { decodeMembershipFrame, MembershipFrameKind } from "../../../src/raft/host/membership-frames.ts";
import { PeerRules } from "../../../src/raft/host/membership-rules.ts";
import type { NodeTransport } from "../../../src/raft/transport/types.ts";

/** A PeerRules over a transport that records what it sends, on a hand-moved clock. */
function peerRules(version = 2) {
  let nowMs = 1_000;
  const heard = new Map<NodeId, number>();
  const sent: { to: NodeId; kind: number | undefined }[] = [];
  const warnings: string[] = [];
  const transport = {
    sendHost: (to: NodeId, payload: Uint8Array) =>
      sent.push({ to, kind: decodeMembershipFrame(payload)?.kind }),
  } as unknown as NodeTransport;
  const rules = new PeerRules({
    self: "a",
    version,
    transport,
    logger: { debug() {}, info() {}, warn: (line) => warnings.push(line) },
    now: () => nowMs,
    lastContactAt: (id) => heard.get(id),
  });
  return {
    rules,
    /** A Raft message from `id` arrives now (membership notes the contact, then asks accepts). */
    message: (id: NodeId) => {
      heard.set(id, nowMs);
      return rules.accepts(id, nowMs);
    },
    sent,
    warnings,
    advance: (ms: number) => {
      nowMs += ms;
    },
    now: () => nowMs,
  };
}

describe("what each member advertises", () => {
  test("a member that never answered counts as 1; its answer counts while fresh (15 s), then 1 again", () => {
    const t = peerRules();
    expect(t.rules.advertised("a")).toBe(2);
    expect(t.rules.advertised("b")).toBe(1);
    t.rules.onAnswer("b", 2);
    expect(t.rules.everyAdvertises(2, ["a", "b"])).toBe(true);
    expect(t.rules.everyAdvertises(2, ["a", "b", "c"])).toBe(false);
    t.advance(15_001);
    expect(t.rules.advertised("b")).toBe(1);
  });

  test("answers that are not a whole version >= 1 are ignored", () => {
    const t = peerRules();
    for (const bad of [0, -1, 1.5, "2", null]) t.rules.onAnswer("b", bad);
    expect(t.rules.advertised("b")).toBe(1);
  });

  test("peers are asked at once, answered ones every 5 s, silent ones backing off to once a minute", () => {
    const t = peerRules();
    t.rules.poll(["a", "b", "old"]);
    expect(t.sent).toEqual([
      { to: "b", kind: MembershipFrameKind.RulesQuery },
      { to: "old", kind: MembershipFrameKind.RulesQuery },
    ]);
    t.rules.onAnswer("b", 2);
    const asks = { b: 0, old: 0 };
    for (let ms = 0; ms < 300_000; ms += 100) {
      t.advance(100);
      t.sent.length = 0;
      t.rules.poll(["b", "old"]);
      for (const { to } of t.sent) asks[to as "b" | "old"]++;
      // b keeps answering each query at once.
      if (t.sent.some((s) => s.to === "b")) t.rules.onAnswer("b", 2);
    }
    expect(asks.b).toBe(60);
    // After the first ask: 1, 2, 4, 8, 16, 32 s apart, then 60 s: at 1, 3, 7, 15, 31, 63, 123, 183, 243 s.
    expect(asks.old).toBe(9);
    expect(t.rules.advertised("b")).toBe(2);
  });

  test("a query is answered with the version this member implements", () => {
    const t = peerRules(7);
    t.rules.onQuery("b");
    expect(t.sent).toEqual([{ to: "b", kind: MembershipFrameKind.RulesAnswer }]);
  });
});

describe("refusing members below the rules in force", () => {
  test("under rules 1 everyone's messages are taken, asked or not", () => {
    const t = peerRules();
    expect(t.rules.accepts("old", t.now())).toBe(true);
    expect(t.sent).toEqual([]);
  });

  test("above, a member advertising less is refused, asked again (once a second while it sends), and named in the log with what to do once it went on for 3 s (then once per 10 s)", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    // Never asked: asked now, not logged (its answer may be on its way).
    expect(t.message("old")).toBe(false);
    expect(t.sent).toEqual([{ to: "old", kind: MembershipFrameKind.RulesQuery }]);
    for (let ms = 0; ms < 2_900; ms += 100) {
      t.advance(100);
      expect(t.message("old")).toBe(false);
    }
    expect(t.warnings).toEqual([]);
    // Asked at 0, 1 and 2 s (once a second while it sends), not at every message.
    expect(t.sent).toHaveLength(3);
    t.advance(100);
    expect(t.message("old")).toBe(false);
    expect(t.sent).toHaveLength(4);
    expect(t.warnings).toHaveLength(1);
    expect(t.warnings[0]).toContain("refused the Raft messages of member old");
    expect(t.warnings[0]).toContain("Upgrade old to this dkv release (rules 2) or newer");
    t.advance(5_000);
    t.message("old");
    expect(t.warnings).toHaveLength(1);
    t.advance(5_000);
    t.message("old");
    expect(t.warnings).toHaveLength(2);
  });

  test("a member that answers within a round trip of coming back is never refused nor named in the log", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.poll(["b"]);
    t.rules.onAnswer("b", 2);
    for (let round = 0; round < 5; round++) {
      t.advance(4_000);
      t.rules.onUnreachable("b");
      // Its answer counts while the query sent at once is on its way (review28: a full
      // send queue reports it too, and a live follower's acks must not be refused).
      expect(t.rules.accepts("b", t.now())).toBe(true);
      t.sent.length = 0;
      t.rules.poll(["b"]);
      expect(t.sent.map((s) => s.to)).toEqual(["b"]);
      t.advance(2);
      t.rules.onAnswer("b", 2);
      expect(t.rules.accepts("b", t.now())).toBe(true);
    }
    expect(t.warnings).toEqual([]);
  });

  test("a member taken while its answer is fresh is refused once it goes stale, and taken again once it answers", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.onAnswer("b", 2);
    expect(t.rules.accepts("b", t.now())).toBe(true);
    t.advance(16_000);
    expect(t.rules.accepts("b", t.now())).toBe(false);
    t.rules.onAnswer("b", 2);
    expect(t.rules.accepts("b", t.now())).toBe(true);
  });

  test("a member that dials anew (a restart, maybe with an older release) counts as 1 until it answers again: nothing from it is taken, nothing is sent to it", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.poll(["b"]);
    t.rules.onAnswer("b", 2);
    expect(t.rules.accepts("b", t.now())).toBe(true);
    expect(t.rules.sendsTo("b")).toBe(true);
    t.advance(500);
    t.sent.length = 0;
    t.rules.onReconnected("b");
    // Asked at once; refused both ways from its first message, not after ANSWER_WAIT_MS.
    expect(t.sent).toEqual([{ to: "b", kind: MembershipFrameKind.RulesQuery }]);
    expect(t.rules.advertised("b")).toBe(1);
    expect(t.message("b")).toBe(false);
    expect(t.rules.sendsTo("b")).toBe(false);
    // It answers within a round trip (this release): taken again.
    t.advance(2);
    t.rules.onAnswer("b", 2);
    expect(t.message("b")).toBe(true);
    expect(t.rules.sendsTo("b")).toBe(true);
    expect(t.warnings).toEqual([]);
    // Under rules 1 a reconnect changes nothing that is taken or sent.
    const u = peerRules();
    u.rules.onAnswer("b", 2);
    u.rules.onReconnected("b");
    expect(u.message("b")).toBe(true);
    expect(u.rules.sendsTo("b")).toBe(true);
  });

  test("a member whose connection dropped (restarting, maybe with another release) must answer again, and is asked at once", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.poll(["b", "old"]);
    t.advance(1_000);
    t.rules.poll(["old"]);
    t.rules.onAnswer("b", 2);
    t.rules.onUnreachable("b");
    t.rules.onUnreachable("old");
    // No raise rests on its answer before it answers again; asked with no backoff.
    t.sent.length = 0;
    expect(t.rules.everyAdvertises(2, ["a", "b"])).toBe(false);
    t.rules.poll(["b", "old"]);
    expect(t.sent.map((s) => s.to)).toEqual(["b", "old"]);
    // It does not answer (a release before the rules now): refused once the query is 2 s old.
    expect(t.rules.accepts("b", t.now())).toBe(true);
    t.advance(2_001);
    expect(t.rules.advertised("b")).toBe(1);
    expect(t.rules.accepts("b", t.now())).toBe(false);
    t.rules.onAnswer("b", 2);
    expect(t.rules.accepts("b", t.now())).toBe(true);
    expect(t.rules.everyAdvertises(2, ["a", "b"])).toBe(true);
  });

  test("a member back from a partition or a pause is asked at its first message, whatever the backoff grew to meanwhile; a connected member that never answers is not", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.poll(["b", "old"]);
    t.rules.onAnswer("b", 2);
    expect(t.message("b")).toBe(true);
    expect(t.message("old")).toBe(false);
    // b is cut off for 40 s: the polls' queries are lost, the backoff grows to 32 s.
    for (let i = 0; i < 40; i++) {
      t.advance(1_000);
      t.rules.poll(["b"]);
      expect(t.message("old")).toBe(false);
    }
    expect(t.rules.advertised("b")).toBe(1);
    // Its first message after the partition is refused, and it is asked at once...
    t.sent.length = 0;
    expect(t.message("b")).toBe(false);
    expect(t.sent).toEqual([{ to: "b", kind: MembershipFrameKind.RulesQuery }]);
    // ...once only; its answer a round trip later lets it in.
    expect(t.message("b")).toBe(false);
    expect(t.sent.length).toBe(1);
    t.advance(5);
    t.rules.onAnswer("b", 2);
    expect(t.message("b")).toBe(true);
    // "old" sent all along: asked only as the backoff said, not at each message.
    const oldAsks = t.sent.filter((s) => s.to === "old").length;
    expect(oldAsks).toBe(0);
  });

  test("a member whose drop was reported (a full send queue: its queries may be lost) is asked at its next message", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.poll(["b"]);
    t.rules.onAnswer("b", 2);
    // A long burst: every query is dropped in the full queue, so it goes unanswered past 2 s.
    for (let i = 0; i < 5; i++) {
      t.advance(1_000);
      t.rules.onUnreachable("b");
      t.rules.poll(["b"]);
      expect(t.message("b")).toBe(i < 3); // refused once its oldest unanswered query is 2 s old
    }
    t.sent.length = 0;
    t.advance(100);
    t.rules.onUnreachable("b");
    expect(t.message("b")).toBe(false);
    expect(t.sent).toEqual([{ to: "b", kind: MembershipFrameKind.RulesQuery }]);
  });

  test("members that left the cluster are forgotten", () => {
    const t = peerRules();
    t.rules.onAnswer("b", 2);
    t.rules.retain(new Set(["c"]));
    expect(t.rules.advertised("b")).toBe(1);
  });

  test("a member refused is sent no Raft message, and each blocked send asks it at most once a second, silent or not (two members refusing each other still get asked)", () => {
    const t = peerRules();
    t.rules.setRulesInForce(2);
    t.rules.onAnswer("b", 2);
    expect(t.rules.sendsTo("b")).toBe(true);
    expect(t.rules.sendsTo("c")).toBe(false); // never answered: counts as 1
    t.rules.onUnreachable("c"); // its queries may be lost, and it stays silent
    t.sent.length = 0;
    // 10 s of heartbeats every 10 ms to c: refused, asked once a second, not at every send.
    for (let ms = 0; ms < 10_000; ms += 10) {
      t.advance(10);
      expect(t.rules.sendsTo("c")).toBe(false);
    }
    expect(t.sent.filter((s) => s.to === "c").length).toBe(10);
    t.rules.onAnswer("c", 2);
    expect(t.rules.sendsTo("c")).toBe(true);
    // Under rules 1 every member is sent to.
    const u = peerRules();
    expect(u.rules.sendsTo("never-answered")).toBe(true);
    expect(u.sent).toEqual([]);
  });
});

/**
 * A follower's forwarded ReadIndex counts as its ack of the leader's term (reads.ts,
 * requestIsQuorumAck): in a group of three the leader answers it at once, without a
 * heartbeat round; a request without the leader's term, from a learner, or in a group
 * where the pair is no quorum still takes the round.
 */
import { describe, expect, test } from "bun:test";
import { type Message, MessageType } from "../../../src/raft/core/index.ts";
import { bytes, Network } from "./network.ts";

function readStateIds(net: Network, id: string): string[] {
  return net.get(id).readStates.map((rs) => rs.requestId);
}

/** One Ready of `leader` after `m` reaches it: what it sent. */
function leaderAnswers(net: Network, leader: string, m: Message): Message[] {
  net.queue = [];
  net.node(leader).step(m);
  net.processReady(leader);
  return net.queue;
}

function forwardedRead(from: string, to: string, requestId: string, senderTerm: number): Message {
  return {
    type: MessageType.ReadIndex,
    from,
    to,
    term: 0,
    logTerm: senderTerm,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    context: requestId,
  };
}

describe("Raft rules: a follower's read request is its ack", () => {
  test("in a group of three a follower's read is answered in one round trip, at the commit index", () => {
    const net = Network.of(["1", "2", "3"]);
    net.elect("1");
    net.node("1").propose(bytes("v"));
    net.stabilize();
    const commit = net.node("1").status().commit;

    net.node("2").readIndex("x");
    net.processReady("2");
    const forwarded = net.queue;
    expect(forwarded.map((m) => [m.type, m.to, m.logTerm])).toEqual([[MessageType.ReadIndex, "1", 1]]);
    net.queue = [];
    const sent = leaderAnswers(net, "1", forwarded[0]!);
    // No heartbeat round: the answer is all the leader sends.
    expect(sent.map((m) => [m.type, m.to, m.index, m.context])).toEqual([
      [MessageType.ReadIndexResp, "2", commit, "x"],
    ]);
    net.deliver();
    net.processReady("2");
    expect(net.get("2").readStates).toEqual([{ requestId: "x", index: commit, timeMs: 0 }]);
  });

  test("a request without the leader's term (older version, or an earlier term) takes a heartbeat round", () => {
    const net = Network.of(["1", "2", "3"]);
    net.elect("1");
    // Re-elect 1 in a later term: term 2 or more.
    net.node("1").transferLeadership("2");
    net.stabilize();
    net.node("2").transferLeadership("1");
    net.stabilize();
    expect(net.leaders()).toEqual(["1"]);
    const term = net.node("1").status().term;
    expect(term).toBeGreaterThan(1);

    for (const [id, senderTerm] of [
      ["old", 0],
      ["stale", term - 1],
    ] as const) {
      const sent = leaderAnswers(net, "1", forwardedRead("2", "1", id, senderTerm));
      expect(sent.map((m) => m.type).sort()).toEqual([MessageType.Heartbeat, MessageType.Heartbeat]);
      // The round's acks answer it.
      net.stabilize();
      expect(readStateIds(net, "2")).toContain(id);
    }
  });

  test("a learner's request is no vote: it takes the round", () => {
    const net = Network.of(["1", "2", "3"]);
    net.elect("1");
    net.node("1").proposeConfChange({ type: "addLearner", node: "4" });
    net.start("4", {
      hardState: { term: 0, vote: null, commit: 0 },
      conf: { voters: ["1", "2", "3"], learners: [] },
    });
    net.stabilize();
    expect(net.node("1").status().conf.learners).toEqual(["4"]);
    net.node("4").readIndex("y");
    net.processReady("4");
    const forwarded = net.queue.filter((m) => m.type === MessageType.ReadIndex);
    expect(forwarded.map((m) => m.logTerm)).toEqual([1]);
    net.queue = [];
    const sent = leaderAnswers(net, "1", forwarded[0]!);
    expect(sent.filter((m) => m.type === MessageType.Heartbeat)).toHaveLength(3);
    expect(sent.filter((m) => m.type === MessageType.ReadIndexResp)).toHaveLength(0);
    net.stabilize();
    expect(readStateIds(net, "4")).toEqual(["y"]);
  });

  test("in a group of five the requester and the leader are no quorum: the read waits for one more ack", () => {
    const net = Network.of(["1", "2", "3", "4", "5"]);
    net.elect("1");
    net.node("2").readIndex("z");
    net.processReady("2");
    const forwarded = net.queue;
    net.queue = [];
    const sent = leaderAnswers(net, "1", forwarded[0]!);
    expect(sent.filter((m) => m.type === MessageType.Heartbeat)).toHaveLength(4);
    expect(sent.filter((m) => m.type === MessageType.ReadIndexResp)).toHaveLength(0);
    net.stabilize();
    expect(readStateIds(net, "2")).toEqual(["z"]);
  });

  test("a request sent before a new election, answered by the deposed leader, never reaches the voter", () => {
    // 2 forwards "x" to leader 1 in term 1; the request is held up; 2 and 3 elect a new
    // leader and commit a write. When 1 (cut off, still leading term 1) answers at once,
    // the answer is correct for "x" (its reads started before 2 voted) — and 2, now in a
    // later term, drops the old-term answer anyway; a read asked afresh on 2 goes to the
    // new leader and sees the write.
    const net = Network.of(["1", "2", "3"]);
    net.elect("1");
    net.node("2").readIndex("x");
    net.processReady("2");
    const held = net.queue;
    net.queue = [];
    net.isolate("1");
    let leader: string | undefined;
    for (let tick = 0; tick < 100 && leader === undefined; tick++) {
      net.tick("2");
      net.tick("3");
      net.stabilize();
      leader = ["2", "3"].find((id) => net.node(id).status().role === "leader");
    }
    expect(leader).toBeDefined();
    net.node(leader!).propose(bytes("new"));
    net.stabilize();
    const newCommit = net.node(leader!).status().commit;

    const sent = leaderAnswers(net, "1", held[0]!);
    expect(sent.map((m) => m.type)).toEqual([MessageType.ReadIndexResp]);
    net.heal();
    net.deliver((m) => m.type === MessageType.ReadIndexResp);
    net.processReady("2");
    expect(readStateIds(net, "2")).toEqual([]);

    net.stabilize();
    net.node("2").readIndex("fresh");
    net.stabilize();
    const fresh = net.get("2").readStates.find((rs) => rs.requestId === "fresh");
    expect(fresh?.index).toBeGreaterThanOrEqual(newCommit);
  });
});

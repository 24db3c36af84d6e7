/**
 * RaftConfig.quietHeartbeats: a leader skips the periodic heartbeat to a follower that
 * accepted an append since the previous one (a process running many groups that take
 * writes then sends far fewer messages), but never a read round's heartbeats, never to a
 * follower that did not ack, and never in lease mode; followers of a group that keeps
 * taking writes never time out.
 */
import { describe, expect, test } from "bun:test";
import { type Message, MessageType } from "../../../src/raft/core/index.ts";
import { bytes, Network, type NodeOptions } from "./network.ts";

const voters = ["1", "2", "3"];

/** The heartbeats the leader's next Ready sends, by recipient. */
function heartbeatsOfNextReady(net: Network, leader: string): string[] {
  const rd = net.processReady(leader);
  const sent: Message[] = rd === undefined ? [] : [...rd.messagesBeforePersist, ...rd.messages];
  return sent
    .filter((m) => m.type === MessageType.Heartbeat)
    .map((m) => m.to)
    .sort();
}

/** A leader "1" whose followers both acked an append just now; the queue is empty. */
function afterAckedWrite(options: NodeOptions): Network {
  const net = Network.of(voters, { electionTicks: 10, heartbeatTicks: 2, ...options });
  net.elect("1");
  net.node("1").propose(bytes("w"));
  net.stabilize();
  return net;
}

describe("Raft rules: quiet heartbeats", () => {
  test("a follower that acked an append since the last heartbeat gets none; the next interval without acks it does", () => {
    const net = afterAckedWrite({ quietHeartbeats: true });
    net.tick("1", 2);
    expect(heartbeatsOfNextReady(net, "1")).toEqual([]);
    net.tick("1", 2);
    expect(heartbeatsOfNextReady(net, "1")).toEqual(["2", "3"]);
  });

  test("only the follower that acked is skipped", () => {
    const net = afterAckedWrite({ quietHeartbeats: true });
    net.tick("1", 2);
    net.processReady("1");
    // A write that only follower 2 acks.
    net.node("1").propose(bytes("w2"));
    net.processReady("1");
    net.deliver((m) => m.to === "2");
    net.drop((m) => m.to === "3");
    net.processReady("2");
    net.deliver((m) => m.to === "1");
    net.tick("1", 2);
    expect(heartbeatsOfNextReady(net, "1")).toEqual(["3"]);
  });

  test("a pending read round's heartbeats go to every follower", () => {
    const net = afterAckedWrite({ quietHeartbeats: true });
    net.node("1").readIndex("r");
    const round = heartbeatsOfNextReady(net, "1");
    expect(round).toEqual(["2", "3"]);
    // Unanswered, the round is still pending at the tick: its heartbeats go again.
    net.drop(() => true);
    net.tick("1", 2);
    expect(heartbeatsOfNextReady(net, "1")).toEqual(["2", "3"]);
  });

  test("off by default, in lease mode, and with an election timeout within two heartbeat intervals and a tick: every follower gets every heartbeat", () => {
    for (const options of [
      {},
      { quietHeartbeats: true, readOnly: "lease" as const },
      { quietHeartbeats: true, electionTicks: 5 },
    ]) {
      const net = afterAckedWrite(options);
      net.tick("1", 2);
      expect(heartbeatsOfNextReady(net, "1")).toEqual(["2", "3"]);
    }
  });

  test("followers of a group that keeps taking writes never campaign, though they get no heartbeats", () => {
    const net = afterAckedWrite({ quietHeartbeats: true });
    const term = net.node("1").status().term;
    let heartbeats = 0;
    net.onReady = (_id, rd) => {
      for (const m of [...rd.messagesBeforePersist, ...rd.messages])
        if (m.type === MessageType.Heartbeat) heartbeats++;
    };
    // Far past the election timeout (10 ticks), one write per tick.
    for (let tick = 0; tick < 100; tick++) {
      net.node("1").propose(bytes(`w${tick}`));
      net.tickAll();
      net.stabilize();
    }
    expect(heartbeats).toBe(0);
    for (const id of voters) expect(net.node(id).status().term).toBe(term);
    expect(net.leaders()).toEqual(["1"]);
    expect(net.node("3").status().commit).toBe(net.node("1").status().lastIndex);
  });
});

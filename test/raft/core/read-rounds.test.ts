/**
 * "Safe" ReadIndex: a read is answered only after a quorum acked a heartbeat round the
 * leader sent after the read arrived. Regression for a stale read served by a paused
 * ex-leader right after it resumed (verify seed 9, pause-stale-read).
 */
import { describe, expect, test } from "bun:test";
import { type Message, MessageType } from "../../../src/raft/core/index.ts";
import { bytes, Network } from "./network.ts";

const voters = ["1", "2", "3"];
/**
 * Five voters: a follower's request with the leader's own ack is no quorum there, so its
 * read takes a heartbeat round (in a group of three it is answered at once, see below).
 */
const fiveVoters = ["1", "2", "3", "4", "5"];

/** Runs readys and deliveries among everyone but `paused`; what is sent to it stays queued. */
function stabilizeWithout(net: Network, paused: string): void {
  for (let round = 0; round < 1_000; round++) {
    let readied = false;
    for (const id of net.members.keys())
      if (id !== paused && net.processReady(id) !== undefined) readied = true;
    const moved = net.deliver((m) => m.to !== paused);
    if (!readied && moved === 0) return;
  }
  throw new Error("did not stabilize");
}

describe("Raft rules: ReadIndex rounds", () => {
  test("a late ack of a request's first round does not confirm reads queued before it came back", () => {
    const net = Network.of(fiveVoters, { electionTicks: 10, heartbeatTicks: 1 });
    net.elect("1");
    net.node("1").propose(bytes("old"));
    net.stabilize();
    const oldCommit = net.node("1").status().commit;

    // Follower 2 forwards read "x"; leader 1 runs a round for it, which 2 to 5 ack; then
    // 1 pauses: it receives nothing more (its socket buffers fill) and ticks nothing.
    net.node("2").readIndex("x");
    stabilizeWithout(net, "1"); // the forward waits for 1
    net.deliver((m) => m.to === "1"); // 1 receives it and runs its round
    net.processReady("1");
    stabilizeWithout(net, "1"); // 2 to 5 ack the round; their acks wait for 1
    expect(net.queue.filter((m) => m.type === MessageType.HeartbeatResp)).toHaveLength(4);
    // 2 has no answer yet and asks again (the runtime re-asks after an election timeout).
    net.node("2").readIndex("x");
    stabilizeWithout(net, "1");

    // Meanwhile 2 to 5 elect a new leader, which overwrites the value.
    const others = ["2", "3", "4", "5"];
    let leader: string | undefined;
    for (let tick = 0; tick < 100 && leader === undefined; tick++) {
      for (const id of others) net.tick(id);
      stabilizeWithout(net, "1");
      leader = others.find((id) => net.node(id).status().role === "leader");
    }
    expect(leader).toBeDefined();
    net.node(leader!).propose(bytes("new"));
    stabilizeWithout(net, "1");
    expect(net.node(leader!).status().commit).toBeGreaterThan(oldCommit);

    // 1 resumes, still leading its old term: a client's read "r" arrives first ...
    expect(net.node("1").status().role).toBe("leader");
    net.node("1").readIndex("r");
    net.processReady("1");
    // ... then, each link in order, 2's ack of x's round and 2's repeated "x", then 3's
    // ack of that same first round of x (sent long before "r" arrived).
    const oldTermFrom = (from: string) => (m: Message) =>
      m.to === "1" && m.from === from && m.term <= 1 && m.type !== MessageType.Heartbeat;
    net.deliver(oldTermFrom("2"));
    net.deliver(oldTermFrom("3"));
    net.processReady("1");
    expect(net.get("1").readStates.map((rs) => rs.requestId)).not.toContain("r");

    // The rest of the buffered traffic tells 1 about the new term: it never answers "r".
    net.stabilize();
    expect(net.node("1").status().role).toBe("follower");
    expect(net.get("1").readStates.map((rs) => rs.requestId)).not.toContain("r");
  });

  test("a read is confirmed by its own round, and an ack of a later round confirms earlier reads", () => {
    const net = Network.of(voters);
    net.elect("1");
    net.node("1").readIndex("a");
    net.processReady("1");
    const roundA = net.queue.filter((m) => m.type === MessageType.Heartbeat);
    net.queue = [];
    net.node("1").readIndex("b");
    net.processReady("1");
    // Only b's round is delivered: its acks confirm a too (a was queued before it went out).
    net.stabilize();
    expect(net.get("1").readStates.map((rs) => rs.requestId)).toEqual(["a", "b"]);
    // "a" asked again gets a round of its own: acks of its first round, late, confirm nothing.
    net.node("1").readIndex("a");
    net.processReady("1");
    net.queue = net.queue.filter((m) => m.type !== MessageType.Heartbeat);
    net.queue.push(...roundA);
    net.stabilize();
    expect(net.get("1").readStates.map((rs) => rs.requestId)).toEqual(["a", "b"]);
  });
});

import { expect, test } from "bun:test";
import { MemoryLogStorage, type Message, MessageType, RaftNode } from "../../../src/raft/core/index.ts";
import { Network, seededRandom } from "./network.ts";

const enc = new TextEncoder();

function electedLeader(options = { appendsBeforePersist: true }): Network {
  const net = Network.of(["1", "2", "3"], options);
  net.node("1").campaign();
  net.stabilize();
  expect(net.node("1").status().role).toBe("leader");
  return net;
}

test("off by default: every message waits for persistence", () => {
  const net = electedLeader({ appendsBeforePersist: false });
  net.node("1").propose(enc.encode("x"));
  const rd = net.node("1").ready();
  expect(rd.messagesBeforePersist).toEqual([]);
  expect(rd.messages.some((m) => m.type === MessageType.Append)).toBe(true);
  net.node("1").advance();
});

test("a leader's appends of its term go before persistence; the rest waits", () => {
  const net = electedLeader();
  const leader = net.node("1");
  leader.propose(enc.encode("x"));
  leader.readIndex("r1");
  leader.tick(0);
  leader.tick(0);
  const rd = leader.ready();
  expect(rd.entries).toHaveLength(1);
  expect(rd.messagesBeforePersist.length).toBeGreaterThan(0);
  expect(
    rd.messagesBeforePersist.every((m) => m.type === MessageType.Append && m.term === leader.status().term),
  ).toBe(true);
  expect(rd.messages.some((m) => m.type === MessageType.Append)).toBe(false);
  leader.advance();
});

test("while its write is in flight the leader does not count itself toward commit", () => {
  const net = electedLeader();
  const leader = net.node("1");
  const before = leader.status().commit;
  leader.propose(enc.encode("x"));
  const rd = leader.ready();
  const index = rd.entries[0]?.index ?? 0;
  // Follower 2 gets the append and acks it while the leader's own write is still pending.
  const toTwo = rd.messagesBeforePersist.filter((m: Message) => m.to === "2");
  expect(toTwo).toHaveLength(1);
  const follower = net.node("2");
  for (const m of toTwo) follower.step(m);
  const frd = follower.ready();
  net.get("2").storage.append(frd.entries);
  if (frd.hardState) net.get("2").storage.setHardState(frd.hardState);
  follower.advance();
  const ack = frd.messages.find((m) => m.type === MessageType.AppendResp && !m.reject);
  expect(ack?.index).toBe(index);
  if (ack) leader.step(ack);
  // One follower's copy is not a quorum of three without the leader's own, not yet durable.
  expect(leader.status().commit).toBe(before);
  net.get("1").storage.append(rd.entries);
  leader.advance();
  expect(leader.status().commit).toBe(index);
});

test("a leader whose term and vote are not yet on disk sends nothing early", () => {
  // A single voter elects itself at once, before its new term is persisted; a learner must
  // not hear of that term until it is (a restart could lead the same term again).
  const storage = new MemoryLogStorage({
    hardState: { term: 1, vote: "1", commit: 0 },
    conf: { voters: ["1"], learners: ["2"] },
  });
  const node = new RaftNode({
    id: "1",
    storage,
    random: seededRandom(1),
    electionTicks: 10,
    heartbeatTicks: 1,
    appendsBeforePersist: true,
  });
  node.campaign();
  expect(node.status().role).toBe("leader");
  const rd = node.ready();
  expect(rd.hardState?.term).toBe(2);
  expect(rd.messagesBeforePersist).toEqual([]);
  expect(rd.messages.some((m) => m.type === MessageType.Append && m.to === "2")).toBe(true);
  storage.append(rd.entries);
  if (rd.hardState) storage.setHardState(rd.hardState);
  node.advance();
});

/**
 * A Ready's arrays belong to that Ready. The host steps messages into the node while a
 * Ready is being persisted (ready() … advance()); whatever those steps produce must wait
 * for the next Ready and its persistence. Before the fix, a Ready handed out the node's
 * outbox itself when the outbox was empty, so a vote granted (or an append acknowledged)
 * during the previous Ready's fsync was sent once that older, unrelated write was durable:
 * before the vote was on disk. The host simulator found it (DKV_HOST_SWARM=shared, seed
 * 4003329: a member voted, crashed before the vote reached its disk, and voted again in
 * the same term — two leaders of term 15).
 */
import { expect, test } from "bun:test";
import { EntryKind, type Message, MessageType } from "../../../src/raft/core/index.ts";
import { Network } from "./network.ts";

function message(fields: Partial<Message> & Pick<Message, "type" | "from" | "to" | "term">): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    ...fields,
  };
}

test("a vote granted while a Ready with no messages is persisted goes out only with the Ready that persists the vote", () => {
  const net = Network.of(["1", "2", "3"]);
  net.node("1").campaign();
  net.stabilize();
  const follower = net.node("2");
  const storage = net.get("2").storage;
  const term = follower.status().term;
  // A stale VoteResp of a higher term: member 2 adopts that term and has nothing to send.
  follower.step(message({ type: MessageType.VoteResp, from: "3", to: "2", term: term + 1, reject: true }));
  const first = follower.ready();
  expect(first.hardState).toMatchObject({ term: term + 1, vote: null });
  expect(first.mustSync).toBe(true);
  expect(first.messages).toEqual([]);
  // While that hard state is being written, member 3 asks for the vote in that term.
  const lastIndex = storage.lastIndex();
  follower.step(
    message({
      type: MessageType.Vote,
      from: "3",
      to: "2",
      term: term + 1,
      index: lastIndex,
      logTerm: storage.term(lastIndex),
    }),
  );
  // The first Ready's write does not hold the vote: its messages must not carry the grant.
  expect(first.messages).toEqual([]);
  storage.setHardState(first.hardState!);
  follower.advance();
  const second = follower.ready();
  expect(second.hardState).toMatchObject({ term: term + 1, vote: "3" });
  expect(second.mustSync).toBe(true);
  expect(second.messages.some((m) => m.type === MessageType.VoteResp && !m.reject && m.to === "3")).toBe(
    true,
  );
  follower.advance();
});

test("an append acknowledged while an empty-handed Ready is persisted waits for the Ready that persists it", () => {
  const net = Network.of(["1", "2", "3"]);
  net.node("1").campaign();
  net.stabilize();
  const follower = net.node("2");
  const storage = net.get("2").storage;
  const term = follower.status().term;
  follower.step(message({ type: MessageType.VoteResp, from: "3", to: "2", term: term + 1, reject: true }));
  const first = follower.ready();
  expect(first.messages).toEqual([]);
  // A leader of that term appends one entry while the first Ready is in flight.
  const lastIndex = storage.lastIndex();
  follower.step(
    message({
      type: MessageType.Append,
      from: "3",
      to: "2",
      term: term + 1,
      index: lastIndex,
      logTerm: storage.term(lastIndex),
      entries: [
        {
          index: lastIndex + 1,
          term: term + 1,
          kind: EntryKind.Normal,
          data: new Uint8Array([1]),
          timeMs: 0,
        },
      ],
    }),
  );
  expect(first.messages).toEqual([]);
  storage.setHardState(first.hardState!);
  follower.advance();
  const second = follower.ready();
  expect(second.entries.map((e) => e.index)).toEqual([lastIndex + 1]);
  expect(second.messages.some((m) => m.type === MessageType.AppendResp && !m.reject)).toBe(true);
  follower.advance();
});

test("a read answered while a Ready with no read states is in flight is handed out by the next Ready", () => {
  const net = Network.of(["1"]);
  net.node("1").campaign();
  net.stabilize();
  const node = net.node("1");
  expect(node.status().role).toBe("leader");
  node.propose(new Uint8Array([1]));
  const first = node.ready();
  expect(first.readStates).toEqual([]);
  node.readIndex("r1");
  expect(first.readStates).toEqual([]);
  net.get("1").storage.append(first.entries);
  node.advance();
  const second = node.ready();
  expect(second.readStates.map((r) => r.requestId)).toEqual(["r1"]);
  node.advance();
});

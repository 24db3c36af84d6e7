/**
 * Held commit notices (commit-notice-hold.ts) leave with a stretch that writes to every
 * follower anyway (raft-host.ts releaseNoticesWithSends): with writes spread over many
 * groups, a leader holding one group's notice usually sends another group's appends to the
 * same followers within the hold, and the notice then shares that socket write instead of
 * taking one of its own when the hold's timer fires.
 */
import { afterEach, expect, test } from "bun:test";
import type { Entry, Message, NodeId } from "../../../src/raft/core/types.ts";
import { MessageType } from "../../../src/raft/core/types.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import type { NodeTransport } from "../../../src/raft/transport/types.ts";
import { TestCluster } from "./cluster.ts";
import { MemoryNetwork } from "./memory-transport.ts";

const utf8 = new TextEncoder();

class IndexMachine implements StateMachine {
  apply(entry: Entry): Uint8Array {
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
  async restore(): Promise<void> {}
}

interface Sent {
  /** Sends in one synchronous run of the sender (what a socket flush would carry together). */
  batch: number;
  to: NodeId;
  groupId: number;
  type: MessageType;
}

/** Records every member's Raft sends, numbered by synchronous run (a microtask ends one). */
function recordingTransport(network: MemoryNetwork, id: NodeId, log: Map<NodeId, Sent[]>): NodeTransport {
  const inner = network.transport(id);
  const sent: Sent[] = [];
  log.set(id, sent);
  let batch = 0;
  let open = false;
  return {
    self: id,
    start: (handlers) => inner.start(handlers),
    sendRaft(to: NodeId, groupId: number, message: Message): void {
      if (!open) {
        open = true;
        batch++;
        queueMicrotask(() => {
          open = false;
        });
      }
      sent.push({ batch, to, groupId, type: message.type });
      inner.sendRaft(to, groupId, message);
    },
    sendHost: (to, payload) => inner.sendHost(to, payload),
    setPeers: (peers) => inner.setPeers(peers),
    close: () => inner.close(),
  };
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** Lets pending deliveries and passes run (the in-memory network delivers in microtasks). */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

test("a leader's held commit notice leaves with its next appends to every follower, before the hold's timer", async () => {
  const network = new MemoryNetwork();
  const log = new Map<NodeId, Sent[]>();
  // The hold's timers never fire on their own here: a notice leaves only with other sends.
  const timers: (() => void)[] = [];
  cluster = await TestCluster.start({
    groups: [1, 2],
    stateMachine: () => new IndexMachine(),
    transport: (id) => recordingTransport(network, id, log),
    after: (_ms, run) => timers.push(run),
    // Long ticks: no heartbeat carries a commit during the test.
    tickMs: 400,
    heartbeatTicks: 10,
    electionTicks: 40,
  });
  const c = cluster;
  const leader = await c.waitForLeader(1);
  expect(await c.waitForLeader(2)).toBe(leader);
  const followers = c.ids.filter((id) => id !== leader);
  const sent = log.get(leader)!;
  const releaseHeld = async () => {
    for (const run of timers.splice(0)) run();
    await settle();
  };
  // Both groups replicating to both followers (past the probes that follow an election).
  for (let i = 0; i < 3; i++) {
    await c.host(leader).propose(1, utf8.encode(`warm${i}`));
    await c.host(leader).propose(2, utf8.encode(`warm${i}`));
    await releaseHeld();
  }
  // Group 1 commits a write and both followers' acks are in: the leader holds its notices.
  await c.host(leader).propose(1, utf8.encode("a"));
  await settle();
  const from = sent.length;
  // Group 2's write sends appends to both followers: group 1's notices go in the same run.
  await c.host(leader).propose(2, utf8.encode("b"));
  const after = sent.slice(from);
  for (const follower of followers) {
    const append = after.find((s) => s.to === follower && s.groupId === 2 && s.type === MessageType.Append);
    expect(append).toBeDefined();
    const notice = after.find((s) => s.to === follower && s.groupId === 1 && s.type === MessageType.Commit);
    expect(notice?.batch).toBe(append!.batch);
  }
}, 15_000);

test("with nothing else sent, held notices wait for the hold's timer, then leave in one run to every follower", async () => {
  const network = new MemoryNetwork();
  const log = new Map<NodeId, Sent[]>();
  const timers: (() => void)[] = [];
  cluster = await TestCluster.start({
    groups: [1],
    stateMachine: () => new IndexMachine(),
    transport: (id) => recordingTransport(network, id, log),
    after: (_ms, run) => timers.push(run),
    tickMs: 400,
    heartbeatTicks: 10,
    electionTicks: 40,
  });
  const c = cluster;
  const leader = await c.waitForLeader(1);
  for (let i = 0; i < 3; i++) {
    await c.host(leader).propose(1, utf8.encode(`warm${i}`));
    for (const run of timers.splice(0)) run();
    await settle();
  }
  await c.host(leader).propose(1, utf8.encode("a"));
  await settle();
  // Nothing else to send: the notices wait for the hold's timer.
  const sent = log.get(leader)!;
  const from = sent.length;
  await settle();
  expect(sent.slice(from).filter((s) => s.type === MessageType.Commit)).toEqual([]);
  expect(timers.length).toBe(1);
  for (const run of timers.splice(0)) run();
  await settle();
  const notices = sent.slice(from).filter((s) => s.type === MessageType.Commit);
  expect(notices.map((s) => s.to).sort()).toEqual(c.ids.filter((id) => id !== leader).sort());
  expect(new Set(notices.map((s) => s.batch)).size).toBe(1);
}, 15_000);

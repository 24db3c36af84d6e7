/**
 * Core-only benchmark: `bun run test/raft/core/bench.ts`. Proposals committed per second
 * through an in-memory 3-node cluster with batching, and the cost of an idle tick.
 */
import { type Message, MessageType } from "../../../src/raft/core/index.ts";
import { Network } from "./network.ts";

const ids = ["1", "2", "3"];

function proposalsPerSecond(total: number, batch: number): number {
  const net = Network.of(ids, { maxInflightMsgs: 256, maxSizePerMsgBytes: 1 << 20 });
  net.elect("1");
  const leader = net.get("1");
  const data = new Uint8Array(16);
  const start = performance.now();
  let proposed = 0;
  // Bounded: every round commits at least the previous batch.
  for (let round = 0; leader.node.status().commit < total + 1 && round < total; round++) {
    for (let i = 0; i < batch && proposed < total; i++, proposed++) leader.node.propose(data);
    net.processAllReady();
    net.deliver();
  }
  net.stabilize();
  const seconds = (performance.now() - start) / 1000;
  for (const id of ids) {
    const m = net.get(id);
    if (m.applied.length < total) throw new Error(`${id} applied only ${m.applied.length}`);
    m.applied = []; // keep memory flat for the next run
  }
  return total / seconds;
}

function idleTickNs(groups: number, ticks: number): number {
  const nets = Array.from({ length: groups }, () => {
    const net = Network.of(ids, { heartbeatTicks: 10, electionTicks: 100 });
    net.elect("1");
    return net;
  });
  const sink: Message[] = [];
  const start = performance.now();
  for (let t = 0; t < ticks; t++) {
    for (const net of nets) {
      for (const member of net.members.values()) {
        member.node.tick(t);
        if (member.node.hasReady()) {
          const rd = member.node.ready();
          for (const m of rd.messages) if (m.type === MessageType.Heartbeat) sink.push(m);
          member.node.advance();
        }
      }
      sink.length = 0;
    }
  }
  return ((performance.now() - start) * 1e6) / (groups * ids.length * ticks);
}

proposalsPerSecond(50_000, 1000); // warm up
for (const batch of [100, 1000, 10_000]) {
  const rate = proposalsPerSecond(500_000, batch);
  console.log(`3-node commit, batch ${batch}: ${Math.round(rate).toLocaleString()} proposals/s`);
}
console.log(
  `idle tick (1000 groups x 3 nodes, heartbeat every 10 ticks, no elections): ${idleTickNs(1000, 90).toFixed(0)} ns/node/tick`,
);

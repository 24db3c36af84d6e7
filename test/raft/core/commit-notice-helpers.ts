/** What the commit-notice tests share: a settled three-voter group after one acked write. */
import type { Message } from "../../../src/raft/core/index.ts";
import { bytes, Network, type NodeOptions } from "./network.ts";

const voters = ["1", "2", "3"];

/** What `id` sends in its next Ready (before and after persisting). */
export function sentBy(net: Network, id: string): Message[] {
  const rd = net.processReady(id);
  return rd === undefined ? [] : [...rd.messagesBeforePersist, ...rd.messages];
}

/** Leader "1" with everything settled; then one write whose append both followers ack. */
export function afterAppendAcked(options: NodeOptions): Network {
  const net = Network.of(voters, { electionTicks: 10, heartbeatTicks: 2, ...options });
  net.elect("1");
  net.node("1").propose(bytes("w"));
  net.processReady("1");
  net.deliver();
  net.processReady("2");
  net.processReady("3");
  net.deliver((m) => m.to === "1");
  return net;
}

/** Messages as `type>to`, sorted. */
export const kinds = (messages: Message[]) => messages.map((m) => `${m.type}>${m.to}`).sort();

/**
 * Review of mem27 (a8c99f6, a539d2b): proposal waiters are reused once their receiver is
 * told. Receivers that propose again from inside proposalSettled (so a waiter is reused
 * while the batch that settled it is still being told), with short deadlines (TIMEOUT,
 * unknown), leadership moving between members (entries replaced at their index),
 * snapshots installed over pending writes (UNAVAILABLE, unknown) and a member stopped
 * with writes pending: every receiver is told once, an "ok" carries its own write's
 * result and that write was applied, and no member stops.
 */
import { afterEach, expect, test } from "bun:test";
import type { Entry } from "../../src/raft/core/types.ts";
import type { ProposalReceiver } from "../../src/raft/host/group-proposals.ts";
import type { StateMachine } from "../../src/raft/host/types.ts";
import { TestCluster, waitFor } from "../raft/host/cluster.ts";

const GROUP = 1;
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The result of an entry is its own data. */
class EchoMachine implements StateMachine {
  applied = new Set<string>();
  apply(entry: Entry): Uint8Array {
    const data = text.decode(entry.data);
    this.applied.add(data);
    return entry.data.slice();
  }
  snapshot(): Uint8Array {
    return utf8.encode(JSON.stringify([...this.applied]));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = new Set(JSON.parse(text.decode(data)) as string[]);
  }
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

test("receivers proposing again when told, deadlines passing, leaders moving, a member stopping: each told once with its own outcome", async () => {
  cluster = await TestCluster.start({
    size: 3,
    stateMachine: () => new EchoMachine(),
    snapshotEntries: 30,
    compactionOverheadEntries: 0,
  });
  const c = cluster;
  await c.waitForLeader(GROUP);
  const told = new Map<string, number>();
  const ok: string[] = [];
  const wrong: string[] = [];
  const errors = new Map<string, number>();
  let seq = 0;
  let stopping = false;
  const until = performance.now() + 8_000;
  const proposeNext = (chain: number, depth: number): void => {
    if (stopping || performance.now() > until) return;
    const leader = c.leader(GROUP);
    if (leader === undefined) {
      setTimeout(() => proposeNext(chain, depth), 5);
      return;
    }
    const data = `c${chain}/${++seq}`;
    const timeoutMs = seq % 7 === 0 ? 1 : 2_000;
    const receiver: ProposalReceiver = {
      proposalSettled(error, result) {
        told.set(data, (told.get(data) ?? 0) + 1);
        if (error === undefined) {
          if (text.decode(result) !== data) wrong.push(`${data} got ${text.decode(result)}`);
          else ok.push(data);
        } else errors.set(error.code, (errors.get(error.code) ?? 0) + 1);
        // Synchronously, from inside the batch being told: reuses the waiter just freed.
        if (depth < 3) proposeNext(chain, depth + 1);
        else queueMicrotask(() => proposeNext(chain, 0));
      },
    };
    c.host(leader).proposeTo(GROUP, utf8.encode(data), timeoutMs, receiver);
  };
  for (let chain = 0; chain < 64; chain++) proposeNext(chain, 0);
  // Leadership moves every 150 ms (entries the old leader had not replicated are replaced).
  for (let round = 0; round < 12; round++) {
    await Bun.sleep(100);
    const leader = c.leader(GROUP);
    if (leader === undefined) continue;
    if (round % 2 === 0) {
      const to = c.ids.find((id) => id !== leader)!;
      c.host(leader).transferLeadership(GROUP, to);
      continue;
    }
    // Cut off with writes in its log, then back and leading again: its unreplicated entries
    // are replaced, and it proposes at indexes whose old waiters are still pending.
    c.network.isolate(leader);
    await Bun.sleep(900);
    c.network.heal(leader);
    await Bun.sleep(60);
    const now = c.ids.find((id) => id !== leader && c.host(id).status(GROUP).raft.role === "leader");
    if (now !== undefined) c.host(now).transferLeadership(GROUP, leader);
  }
  await Bun.sleep(300);
  // A member stops with writes in flight (its waiters fail at close).
  const leader = c.leader(GROUP);
  if (leader !== undefined) await c.stopMember(leader);
  stopping = true;
  await waitFor(() => [...told.keys()].length === seq, "every proposal's receiver told", 10_000);
  expect(wrong).toEqual([]);
  expect([...told.values()].every((n) => n === 1)).toBe(true);
  expect(c.fatalErrors).toEqual([]);
  expect(ok.length).toBeGreaterThan(1_000);
  // Every "ok" write was applied (on a member still running).
  const alive = c.ids.find((id) => id !== leader)!;
  const machine = c.host(alive).stateMachine(GROUP) as EchoMachine;
  await waitFor(() => ok.every((d) => machine.applied.has(d)), "every ok write applied", 5_000);
  console.log({ proposals: seq, ok: ok.length, errors: Object.fromEntries(errors) });
}, 30_000);

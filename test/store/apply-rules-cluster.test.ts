/**
 * Apply rules across a cluster of startNode members (store/replicated/apply-rules.ts): a
 * shard's rules are raised once every member advertises them, never while one advertises
 * less; they survive a restart and a snapshot install; a member below them is refused.
 * The advertised version is injected through the composition (NodeDependencies).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/clock.ts";

import { resolveNodeOptions } from "../../src/config/node-options.ts";
import { readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import type { Logger } from "../../src/logger.ts";
import { type Node, startNode } from "../../src/server/node.ts";
import { APPLY_RULES_VERSION } from "../../src/store/replicated/apply-rules.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { MemoryNetwork } from "../raft/host/memory-transport.ts";

const SHARD = 200;
/** The rules this release implements: what every member of it advertises and raises a shard to. */
const V = APPLY_RULES_VERSION;
const RAISED = new RegExp(`apply rules raised to ${V}\\b`);
const IDS = ["node-1", "node-2", "node-3"] as const;
const MEMBERS = IDS.map((id, i) => `${id}=127.0.0.1:${63301 + i}`).join(",");

/** Collects every line logged, for assertions on what operators are told. */
class Lines {
  readonly lines: string[] = [];
  logger(id: string): Logger {
    const sink = (message: string) => this.lines.push(`${id}: ${message}`);
    const logger: Logger = { debug() {}, info: sink, warn: sink, error: sink, forComponent: () => logger };
    return logger;
  }
  matching(pattern: RegExp): string[] {
    return this.lines.filter((line) => pattern.test(line));
  }
}

class RulesCluster {
  readonly members = new Map<string, Node>();
  readonly clock = new ManualClock();
  readonly network = new MemoryNetwork();
  readonly log = new Lines();
  readonly fatal: { id: string; error: Error }[] = [];
  constructor(readonly root: string) {}

  static async create(): Promise<RulesCluster> {
    const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
    return new RulesCluster(await mkdtemp(join(base, "dkv-rules-")));
  }

  async start(id: string, applyRulesVersion?: number): Promise<Node> {
    const options = resolveNodeOptions({
      ...readOptions(serveOptions, {}),
      shards: `${SHARD}=dstore`,
      "replica-id": id,
      "cluster-members": MEMBERS,
      "data-dir": join(this.root, id),
      "rtt-millisecond": 10,
      "snapshot-entries": 50,
      "compaction-overhead": 5,
      transport: "tcp",
      "transport-endpoint": "127.0.0.1:0",
    });
    const node = await startNode(options, {
      clock: this.clock,
      nodeTransport: (raft) => this.network.transport(raft.replicaId),
      logger: this.log.logger(id),
      onFatal: (error) => this.fatal.push({ id, error }),
      ...(applyRulesVersion === undefined ? {} : { applyRulesVersion }),
    });
    this.members.set(id, node);
    return node;
  }

  async stop(id: string): Promise<void> {
    await this.members.get(id)?.stop();
    this.members.delete(id);
  }

  rules(id: string): number {
    return this.members.get(id)!.replicated!.rulesVersion(SHARD);
  }

  leader(): Node | undefined {
    for (const node of this.members.values()) {
      if (node.replicated?.host.status(SHARD).raft.role === "leader") return node;
    }
    return undefined;
  }

  async write(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      let done = false;
      for (let attempt = 0; attempt < 50 && !done; attempt++) {
        const leader = this.leader();
        if (leader === undefined) {
          await Bun.sleep(20);
          continue;
        }
        await leader
          .replicated!.shards.get(SHARD)!
          .store.set(`k${i}`, "v")
          .then(
            () => {
              done = true;
            },
            () => Bun.sleep(20),
          );
      }
      expect(done).toBe(true);
    }
  }

  async close(): Promise<void> {
    for (const id of [...this.members.keys()]) await this.stop(id);
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Advances the cluster's clock in small steps until `condition` (Raft ticks on it). */
async function until(cluster: RulesCluster, condition: () => boolean, what: string, timeoutMs = 8_000) {
  const ticking = setInterval(() => cluster.clock.advance(10), 2);
  try {
    await waitFor(condition, what, timeoutMs);
  } finally {
    clearInterval(ticking);
  }
}

let cluster: RulesCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("apply rules across the cluster", () => {
  test(`all members advertise ${V}: the shard is raised once, and stays raised across a restart and a snapshot install`, async () => {
    const c = await RulesCluster.create();
    cluster = c;
    for (const id of IDS) await c.start(id);
    c.members.get("node-1")!.replicated!.host.campaign(SHARD);
    await until(c, () => IDS.every((id) => c.rules(id) === V), `rules ${V} on every member`);
    expect(c.log.matching(RAISED)).toHaveLength(1);
    // Members refuse peers below the rules from the raising entry on.
    const status = c.members.get("node-2")!.replicated!.membership.status();
    expect(status.applyRules).toEqual({ implemented: V, inForce: V });
    // Restart: the raise replays from the member's own log.
    await c.stop("node-2");
    await c.start("node-2");
    expect(c.rules("node-2")).toBe(V);
    // A member whose data dir is gone rejoins from the leader's snapshot, which carries the rules.
    await c.stop("node-3");
    await rm(join(c.root, "node-3"), { recursive: true, force: true });
    await c.write(120);
    const leader = c.leader()!;
    expect(leader.replicated!.host.status(SHARD).snapshotIndex).toBeGreaterThan(0);
    await c.start("node-3");
    await until(
      c,
      () =>
        c.members.get("node-3")!.replicated!.host.status(SHARD).appliedIndex >=
        leader.replicated!.host.status(SHARD).raft.commit,
      "node-3 caught up",
    );
    expect(c.rules("node-3")).toBe(V);
    // Nothing above raised it again.
    expect(c.log.matching(RAISED)).toHaveLength(1);
    expect(c.fatal).toEqual([]);
  }, 30_000);

  test("one member advertises 1: the shard is never raised, and status shows who holds it back", async () => {
    const c = await RulesCluster.create();
    cluster = c;
    await c.start("node-1");
    await c.start("node-2");
    await c.start("node-3", 1);
    c.members.get("node-1")!.replicated!.host.campaign(SHARD);
    await c.write(10);
    // Several checks (1 s apart) and answers (asked at once, then every 5 s) pass.
    const members = () => c.members.get("node-1")!.replicated!.membership.status().members;
    await until(c, () => members().find((m) => m.id === "node-2")?.applyRules === V, "node-2's answer");
    const ticking = setInterval(() => c.clock.advance(10), 2);
    await Bun.sleep(3_000);
    clearInterval(ticking);
    for (const id of IDS) expect(c.rules(id)).toBe(1);
    expect(members().find((m) => m.id === "node-3")?.applyRules).toBe(1);
    expect(c.log.matching(/apply rules raised/)).toEqual([]);
    // Every write went on under rules 1, on every member alike.
    expect(c.fatal).toEqual([]);
  }, 30_000);

  test("a member below the rules in force is refused, and told what to do in its peers' logs", async () => {
    const c = await RulesCluster.create();
    cluster = c;
    for (const id of IDS) await c.start(id);
    c.members.get("node-1")!.replicated!.host.campaign(SHARD);
    await until(c, () => IDS.every((id) => c.rules(id) === V), `rules ${V} on every member`);
    // node-3 comes back as a member of an older release (its data dir gone, as a new one's).
    const leader = c.leader()!;
    const matchBefore = leader.replicated!.host.status(SHARD).raft.progress["node-3"]?.match ?? 0;
    await c.stop("node-3");
    await rm(join(c.root, "node-3"), { recursive: true, force: true });
    // Its peers still hold its answer from before (V, fresh for 15 s), but the restarted
    // process dials them anew: from then on it counts as 1 until it answers again, so it
    // is sent nothing at all (not for the ~2 s an unanswered query took to void it).
    const toNode3 = c.network.deliveredTo.get("node-3") ?? 0;
    await c.start("node-3", 1);
    await until(
      c,
      () => c.log.matching(/refused the Raft messages of member node-3/).length > 0,
      "node-3 refused",
    );
    const refusal = c.log.matching(/refused the Raft messages of member node-3/)[0]!;
    expect(refusal).toContain("Upgrade node-3");
    expect(refusal).toContain(`rules ${V} are in force`);
    // Refused both ways: its peers send it no Raft message (it would apply the entries by
    // rules 1), only membership frames asking what it advertises.
    await c.write(5);
    const until1s = Date.now() + 1_000;
    await until(c, () => Date.now() >= until1s, "a second of ticks");
    expect(c.network.deliveredTo.get("node-3") ?? 0).toBe(toNode3);
    // No leader hears node-3 acknowledge again (a new one starts it at 0): it takes no part in the shard.
    const raft = c.leader()!.replicated!.host.status(SHARD).raft;
    expect(raft.commit).toBeGreaterThan(matchBefore + 4);
    expect(raft.progress["node-3"]?.match ?? 0).toBeLessThanOrEqual(matchBefore);
    // It was sent no entry, so it never met the raising entry (which would stop it).
    expect(c.fatal).toEqual([]);
    // Upgraded (restarted with this release, its data dir wiped as the README says), it is
    // sent to again and catches up: the snapshots dropped while it was refused left no
    // group waiting for their outcome.
    await c.stop("node-3");
    await rm(join(c.root, "node-3"), { recursive: true, force: true });
    await c.start("node-3");
    const target = c.leader()!.replicated!.host.status(SHARD).raft.commit;
    await until(
      c,
      () => (c.members.get("node-3")!.replicated!.host.status(SHARD).appliedIndex ?? 0) >= target,
      "node-3 caught up",
    );
    expect(c.rules("node-3")).toBe(V);
  }, 30_000);
});

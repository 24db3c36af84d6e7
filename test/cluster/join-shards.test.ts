import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { DkvError } from "../../src/errors.ts";
import type { MembershipView } from "../../src/raft/host/membership-types.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";

/**
 * `dkv serve --join` with --shards that differ from the cluster's replicated shards: the
 * cluster adds a new member to every group it runs, so such a member would never catch
 * up on a shard it does not run (before: it started, and the cluster stayed DEGRADED).
 */

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A cluster's answer to --join after `dkv cluster add node-2=...`, with `shards`. */
function viewOf(shards: number[] | undefined): MembershipView {
  const bootstrap = [{ id: "node-1", address: "127.0.0.1:1" }];
  const members = [...bootstrap, { id: "node-2", address: "127.0.0.1:0" }];
  return {
    registry: { members, removed: [], pending: null },
    conf: { voters: ["node-1"], learners: ["node-2"] },
    bootstrap,
    ...(shards === undefined ? {} : { shards }),
  } as MembershipView;
}

async function joinWith(shards: number[] | undefined): Promise<ReplicatedShards | DkvError> {
  const dataDir = await mkdtemp(join(tmpdir(), "dkv-join-shards-"));
  dirs.push(dataDir);
  return startReplicatedShards({
    ...REPLICATED_TUNING_DEFAULT,
    replicaId: "node-2",
    clusterMembers: new Map(),
    dataDir,
    shards: [
      { id: 200, type: "dstore" },
      { id: 400, type: "dstore" },
    ],
    rttMs: 10,
    membership: { join: async () => viewOf(shards) },
  }).catch((error: unknown) => error as DkvError);
}

describe("--join checks the replicated shards", () => {
  test("shards that differ from the cluster's are refused before anything is written", async () => {
    const refused = await joinWith([200, 300]);
    expect(DkvError.is(refused, "USAGE")).toBe(true);
    expect((refused as DkvError).message).toContain(
      "the cluster runs replicated shards 200, 300, but --shards gives this member 200, 400",
    );
    expect(await readdir(dirs.at(-1)!)).toEqual([]);
  });

  test("the same shards, or an answer without them (an older member), go on to start", async () => {
    for (const shards of [[400, 200], undefined]) {
      const started = await joinWith(shards);
      expect(DkvError.is(started)).toBe(false);
      await (started as ReplicatedShards).close();
    }
  });
});

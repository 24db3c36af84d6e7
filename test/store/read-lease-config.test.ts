import { expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { DkvError } from "../../src/errors.ts";
import { startReplicatedShards } from "../../src/store/replicated/shards.ts";

test("--read-lease on with an election timeout that leaves no lease is a usage error, not a silent ReadIndex", async () => {
  const dir = await mkdtemp(join(tmpdir(), "dkv-lease-config-"));
  try {
    const start = (readLease: boolean) =>
      startReplicatedShards({
        ...REPLICATED_TUNING_DEFAULT,
        replicaId: "node-1",
        clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
        dataDir: dir,
        shards: [{ id: 200, type: "dstore" }],
        rttMs: 10,
        electionRttFactor: 2,
        heartbeatRttFactor: 1,
        readLease,
      });
    const error = await start(true).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(DkvError);
    expect((error as DkvError).code).toBe("USAGE");
    expect((error as DkvError).message).toContain("--election-rtt-factor 2 leaves none");
    // Off, the same timing is valid (ReadIndex needs no lease).
    const shards = await start(false);
    await shards.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

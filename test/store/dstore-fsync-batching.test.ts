/**
 * A one-member dstore under concurrent writes costs one fsync per batch and answers a
 * write one fsync after it joined a batch (as Redis with `appendfsync always`), not two.
 * The fsync is made slow on purpose (SharedLogOptions.syncFile), so the count of batches
 * depends on how the write path waits, not on how fast this machine runs.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type SyncFile, systemSyncFile } from "../../src/raft/storage/fs-util.ts";
import { SharedLog } from "../../src/raft/storage/shared-log.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";

const GROUP = 5;
const SLOW_FSYNC_MS = 15;
let cluster: TestCluster | undefined;
const logs: SharedLog[] = [];

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
  for (const log of logs.splice(0)) await log.close();
});

const slowSync: SyncFile = async (handle, path, mode) => {
  await Bun.sleep(SLOW_FSYNC_MS);
  await systemSyncFile(handle, path, mode);
};

async function oneMember(): Promise<{ store: DStore; log: () => SharedLog }> {
  let opened: SharedLog | undefined;
  cluster = await TestCluster.start({
    size: 1,
    groups: [GROUP],
    stateMachine: () => new DStoreStateMachine(),
    openStorage: (_id, dataDir) => async (groupId, initialConf) => {
      opened ??= await SharedLog.open(dataDir, { syncFile: slowSync, logger: { info() {}, warn() {} } });
      logs.push(opened);
      return opened.openGroup(groupId, join(dataDir, `group-${groupId}`), {
        initialConf,
        compactionOverheadEntries: 0,
      });
    },
  });
  return {
    store: new DStore(cluster.host("n1"), GROUP, { timeoutMs: 10_000, expiryTickMs: 0 }),
    log: () => opened!,
  };
}

describe("one-member dstore group commit", () => {
  test("50 writers in flight: about one batch per round of writes, each write answered after one fsync", async () => {
    const { store, log } = await oneMember();
    const writers = 50;
    const rounds = 8;
    const value = new Uint8Array(128).fill(0x61);
    await store.set("warm", value);
    const before = log().stats().batches;
    const startMs = performance.now();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let r = 0; r < rounds; r++) await store.set(`k${w}`, value);
      }),
    );
    const elapsedMs = performance.now() - startMs;
    const batches = log().stats().batches - before;
    console.log(`${writers * rounds} writes: ${batches} batches in ${elapsedMs.toFixed(0)} ms`);
    // Each round of 50 writes needs one batch; two per round (a write waiting for the
    // fsync of an unrelated commit-index record, or applied only after the next batch's
    // fsync) was the old behaviour.
    expect(batches).toBeLessThanOrEqual(rounds + 3);
  });
});

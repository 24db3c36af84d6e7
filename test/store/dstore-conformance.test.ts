import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { runLockConformance } from "../conformance/lock-conformance.ts";
import { runStoreConformance } from "../conformance/store-conformance.ts";
import { TestCluster } from "../raft/host/cluster.ts";

// Small enough that the over-limit tests stay cheap, big enough for a 10 KiB key and a 1 MiB value.
const limits = { maxKeyBytes: 16 * 1024, maxValueBytes: 2 * 1024 * 1024 };
const GROUP = 7;

async function cluster(): Promise<TestCluster> {
  return TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
}

// On the leader: proposals and reads are local to it.
runStoreConformance("DStore on the leader of a 3-member cluster", async () => {
  const c = await cluster();
  const store = new DStore(c.host(await c.waitForLeader(GROUP)), GROUP, { limits, clock: c.clock });
  return { store, clock: c.clock, limits, close: () => c.close() };
});

// On a follower: every write is forwarded to the leader's host, every read takes a ReadIndex.
runStoreConformance("DStore on a follower of a 3-member cluster", async () => {
  const c = await cluster();
  await c.waitForLeader(GROUP);
  const store = new DStore(c.host(c.follower(GROUP)), GROUP, { limits, clock: c.clock });
  return { store, clock: c.clock, limits, close: () => c.close() };
});

runLockConformance("LockManager over DStore on a follower of a 3-member cluster", async () => {
  const c = await cluster();
  await c.waitForLeader(GROUP);
  const store = new DStore(c.host(c.follower(GROUP)), GROUP, { limits });
  const locks = new LockManager(store, { clock: c.clock, retryIntervalMs: 10 });
  return { locks, clock: c.clock, close: () => c.close() };
});

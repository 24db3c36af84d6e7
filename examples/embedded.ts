/**
 * dkv as a library inside a Bun program: a local store and a lock manager, no server.
 *
 *   bun run examples/embedded.ts
 */
import { MapleDB } from "../src/db/maple/index.ts";
import { LockManager } from "../src/lockmgr/index.ts";
import { LocalStore } from "../src/store/local.ts";

const store = new LocalStore({ db: new MapleDB() });
try {
  await store.set("keys/foo", "bar");
  const value = await store.get("keys/foo");
  console.log("keys/foo =", value === undefined ? "(missing)" : new TextDecoder().decode(value));

  // A session that disappears for get after 30 s and entirely after 1 h.
  await store.setE("sessions/alice", "token-123", 30_000, 3_600_000);

  const locks = new LockManager(store);
  const lease = await locks.acquire("locks/report", 30_000);
  if (lease.acquired) {
    // Hand the fencing token to whatever you protect; it must reject smaller tokens.
    console.log(`holding locks/report, fencing token ${lease.fencingToken}`);
    await locks.release("locks/report", lease.ownerId!);
  }
} finally {
  await store.close();
}

/**
 * Talking to a running `dkv serve` from a Bun program (the CLI does the same).
 *
 *   dkv serve &                       # 100=lstore,200=lockmgr(lstore) on 127.0.0.1:8080
 *   bun run examples/client.ts [host:port]
 */
import { readOptions } from "../src/config/index.ts";
import { clientOptions, DEFAULT_ENDPOINT } from "../src/config/schema.ts";
import { RpcClient } from "../src/rpc/client/index.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";

// The same DKV_* variables the CLI reads (DKV_ENDPOINTS, DKV_TRANSPORT, DKV_TIMEOUT, ...).
const config = readOptions(clientOptions(100, "timeout"));
const endpoints = Bun.argv[2] ? [Bun.argv[2]] : [...(config.endpoints ?? [DEFAULT_ENDPOINT])];

const client = new RpcClient({
  endpoints,
  transport: config.transport as TransportName,
  serializer: config.serializer as SerializerName,
  timeoutMs: config.timeout,
  retryCount: config["retry-count"],
});
try {
  const kv = client.store(100);
  await kv.set("foo", "bar");
  const value = await kv.get("foo");
  console.log("foo =", value === undefined ? "(missing)" : new TextDecoder().decode(value));
  console.log("shard 100:", await client.info(100));

  const locks = client.locks(200);
  const lease = await locks.acquire("jobs/nightly", 30_000, { waitMs: 5_000 });
  console.log(lease.acquired ? `got the lock, fencing token ${lease.fencingToken}` : "someone else holds it");
  if (lease.acquired) await locks.release("jobs/nightly", lease.ownerId!);
} finally {
  await client.close();
}

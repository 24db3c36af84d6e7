/**
 * Watch fan-out: one write delivered to 100 prefix watchers, in process (LocalStore) and
 * over tcp (an in-process server, the watchers on one RpcClient connection). Reports
 * writes/s with every watcher keeping up, and the p99 delay from a write's return to its
 * delivery to the last watcher. Bounded: a fixed number of writes. `bun test/bench/watch-fanout.ts`.
 */
import { RpcClient } from "../../src/rpc/client/index.ts";
import { startRpcServer } from "../../src/rpc/server/index.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { IStore, WatchEvent } from "../../src/store/types.ts";

const WATCHERS = 100;
const WRITES = 2000;

async function fanOut(name: string, writer: IStore, watchOn: IStore): Promise<void> {
  const delivered = new Float64Array(WRITES).fill(0);
  const seen = new Int32Array(WRITES);
  const streams: AsyncIterator<WatchEvent>[] = [];
  for (let i = 0; i < WATCHERS; i++) {
    const stream = watchOn.watch("fan/", { prefix: true });
    await stream.next(); // registered
    streams.push(stream);
  }
  const readers = streams.map(async (stream) => {
    for (let n = 0; n < WRITES; n++) {
      const next = await stream.next();
      if (next.done === true) throw new Error("watch ended");
      if (next.value.type === "progress") {
        n--;
        continue;
      }
      const index = Number(next.value.key.slice(4));
      if (++seen[index]! === WATCHERS) delivered[index] = performance.now();
    }
  });
  const written = new Float64Array(WRITES);
  const start = performance.now();
  for (let i = 0; i < WRITES; i++) {
    await writer.set(`fan/${i}`, "v");
    written[i] = performance.now();
  }
  await Promise.all(readers);
  const seconds = (performance.now() - start) / 1000;
  const delays = Array.from(delivered, (at, i) => Math.max(0, at - written[i]!)).sort((a, b) => a - b);
  const p = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))]!.toFixed(2);
  console.log(
    `${name}: ${WRITES} writes x ${WATCHERS} watchers: ${(WRITES / seconds).toFixed(0)} writes/s (${((WRITES * WATCHERS) / seconds).toFixed(0)} deliveries/s), delay to the last watcher p50 ${p(0.5)} ms, p99 ${p(0.99)} ms`,
  );
  for (const stream of streams) await stream.return?.();
}

export async function run(): Promise<void> {
  const local = new LocalStore({ purgeIntervalMs: 0 });
  await fanOut("in process (LocalStore)", local, local);
  await local.close();

  const served = new LocalStore({ purgeIntervalMs: 0 });
  const server = await startRpcServer({
    transport: "tcp",
    serializer: "binary",
    endpoint: "127.0.0.1:0",
    shards: new Map([[100, { kind: "store" as const, store: served }]]),
    watchersPerConnection: WATCHERS,
  });
  const client = new RpcClient({ transport: "tcp", serializer: "binary", endpoints: [server.endpoint] });
  await fanOut("over tcp (one connection)", client.store(100), client.store(100));
  await client.close();
  await server.stop();
  await served.close();
}

if (import.meta.main) await run();

import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { SLAB_VALUE_MAX } from "../../src/db/maple/value-slab.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { SerializerName, TransportName } from "../../src/rpc/protocol/types.ts";
import { type RpcServer, startRpcServer } from "../../src/rpc/server/index.ts";
import { LocalStore } from "../../src/store/local.ts";
import { freshEndpoint, serializers, storeShard, testLimits } from "./harness.ts";

/**
 * A get on an lstore over Maple answers with the value lent from the engine's slab and
 * copied straight into the reply frame (KVDB.lendEntry): every serializer and transport
 * must send the right bytes, also when a set of the same key follows in the same turn
 * (pipelined on one connection), which rewrites the record in place.
 */

interface MapleStack {
  server: RpcServer;
  client: RpcClient;
  close(): Promise<void>;
}

const open: MapleStack[] = [];

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function mapleStack(transport: TransportName, serializer: SerializerName): Promise<MapleStack> {
  const store = new LocalStore({ db: new MapleDB(), clock: new ManualClock(), limits: testLimits });
  const server = await startRpcServer({
    transport,
    serializer,
    endpoint: freshEndpoint(transport),
    shards: new Map([[storeShard, { kind: "store", store }]]),
  });
  const client = new RpcClient({ transport, serializer, endpoints: [server.endpoint], timeoutMs: 10_000 });
  const s: MapleStack = {
    server,
    client,
    async close() {
      await client.close();
      await server.stop();
      await store.close();
    },
  };
  open.push(s);
  return s;
}

function patterned(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7 + length) & 0xff;
  return out;
}

/** In the slab (up to SLAB_VALUE_MAX), and outside it. */
const SIZES = [0, 1, 128, 300, SLAB_VALUE_MAX, SLAB_VALUE_MAX + 1, 70_000];

describe("get of a lent value", () => {
  for (const transport of ["tcp", "http"] as const) {
    for (const serializer of serializers) {
      test(`${transport}/${serializer}: the bytes and revisions of values in and out of the slab`, async () => {
        const store = (await mapleStack(transport, serializer)).client.store(storeShard);
        for (const [i, size] of SIZES.entries()) await store.set(`k${i}`, patterned(size, i));
        for (const [i, size] of SIZES.entries()) {
          expect(await store.getEntry(`k${i}`)).toEqual({
            key: `k${i}`,
            value: patterned(size, i),
            version: 1,
            createRevision: i + 1,
            modRevision: i + 1,
          });
        }
        expect(await store.get("missing")).toBeUndefined();
      });
    }
  }

  for (const serializer of serializers) {
    test(`tcp/${serializer}: gets pipelined with sets of the same key each answer the value of their moment`, async () => {
      const store = (await mapleStack("tcp", serializer)).client.store(storeShard);
      await store.set("k", patterned(128, 0));
      // Sent together on one connection, so the server takes them in one turn, in order:
      // each set rewrites the record the get before it was lent (same size class).
      const calls: Promise<Uint8Array | undefined>[] = [];
      for (let i = 1; i <= 50; i++) {
        calls.push(store.get("k"));
        void store.set("k", patterned(120 + (i % 16), i));
      }
      const got = await Promise.all(calls);
      for (const [i, value] of got.entries()) {
        expect(value).toEqual(i === 0 ? patterned(128, 0) : patterned(120 + (i % 16), i));
      }
    });
  }

  test("http JSON for humans: a slab value read after the dispatcher answered is still right", async () => {
    const s = await mapleStack("http", "binary");
    const base = `http://${s.server.endpoint}`;
    await fetch(`${base}/v1/100/set`, { method: "POST", body: '{"key":"foo","value":"bar"}' });
    const get = await fetch(`${base}/v1/100/get`, { method: "POST", body: '{"key":"foo"}' });
    expect(await get.json()).toEqual({
      found: true,
      value: "bar",
      version: 1,
      createRevision: 1,
      modRevision: 1,
    });
  });
});

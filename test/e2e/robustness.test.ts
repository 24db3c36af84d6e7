import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { parseHostPort } from "../../src/host-port.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { type RunningServer, startServer } from "./helpers.ts";

/**
 * The compiled server under hostile input: garbage, a frame announcing 4 GiB, frames cut
 * midway, floods of connections opened and dropped. It must stay up, keep answering a
 * well-behaved client, and not grow its memory with each wave.
 */
const WAVES = 20;
/** Waves after which the heap has warmed up (buffers, JIT, GC high-water mark): measured from there. */
const WARM_UP_WAVES = 5;
const CONNECTIONS_PER_WAVE = 300;
/**
 * Allowed RSS growth after warm-up. Measured here: it plateaus at ~70–75 MiB from ~56 MiB; a
 * leak of 10 KiB per hostile connection would add over 40 MiB across the measured waves.
 */
const RSS_GROWTH_MAX_BYTES = 32 * 1024 * 1024;

let server: RunningServer;
let client: RpcClient;

beforeAll(async () => {
  server = await startServer(["--transport-endpoint", "127.0.0.1:0", "--log-level", "error"]);
  client = new RpcClient({
    endpoints: [server.endpoint],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 5000,
  });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await server?.[Symbol.asyncDispose]();
});

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (kib === undefined) throw new Error("no VmRSS in /proc status");
  return Number(kib) * 1024;
}

function hostileFrame(i: number): Uint8Array {
  switch (i % 4) {
    case 0:
      return crypto.getRandomValues(new Uint8Array(1 + (i % 700)));
    case 1: {
      const frame = encodeRequestFrame("get", { key: "k" }, { shard: 100, requestId: i });
      new DataView(frame.buffer).setUint32(4, 0xffffffff, true); // announces 4 GiB
      return frame;
    }
    case 2:
      return encodeRequestFrame("set", { key: "k", value: new Uint8Array(8192) }, { shard: 100 }).subarray(
        0,
        600,
      );
    default:
      return new Uint8Array(0); // opened and dropped without a byte
  }
}

async function hostileWave(endpoint: string, wave: number): Promise<void> {
  const { hostname, port } = parseHostPort(endpoint, "the server endpoint");
  const sockets = await Promise.all(
    Array.from({ length: CONNECTIONS_PER_WAVE }, () =>
      Bun.connect({ hostname, port, socket: { data() {} } }),
    ),
  );
  for (const [i, socket] of sockets.entries()) {
    const bytes = hostileFrame(wave * CONNECTIONS_PER_WAVE + i);
    if (bytes.length > 0) socket.write(bytes);
    socket.end();
  }
}

describe("the compiled server under hostile input", () => {
  test("stays up, keeps answering, and does not grow its memory wave after wave", async () => {
    const store = client.store(100);
    const rss: number[] = [];
    for (let wave = 0; wave < WAVES; wave++) {
      await hostileWave(server.endpoint, wave);
      await store.set(`health-${wave}`, "ok");
      expect(new TextDecoder().decode(await store.get(`health-${wave}`))).toBe("ok");
      rss.push(await rssBytes(server.proc.pid));
    }
    expect(server.proc.exitCode).toBeNull();
    // The first waves pay for warm-up; later waves must not keep adding.
    expect(
      rss[WAVES - 1]! - rss[WARM_UP_WAVES - 1]!,
      `RSS per wave: ${rss.map((b) => (b / 2 ** 20).toFixed(1)).join(", ")} MiB`,
    ).toBeLessThan(RSS_GROWTH_MAX_BYTES);
    expect(await store.has("k")).toBe(false); // no cut frame was half-applied
  }, 60_000);
});

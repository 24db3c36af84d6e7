import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenSha256 } from "../../src/auth/index.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { authenticateOpCode, type OpName } from "../../src/rpc/protocol/types.ts";
import { type RunningServer, startServer } from "../e2e/helpers.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { seededRandom } from "../support/seeded-random.ts";

/**
 * Fuzzes the compiled server's client port with token auth on: random bytes, mutated
 * frames and token frames, from anonymous connections and from connections that
 * authenticated with a read-only token. The server must stay up, answer a well-behaved
 * client, change no data, and keep its memory bounded. DKV_SEED replays a run.
 */
const SEED = Number(process.env.DKV_SEED ?? 1);
/**
 * The heap's one-time growth (JIT, allocator arenas; seen as a single step of up to ~40 MiB
 * somewhere in the first waves, then flat) must fall in the warm-up; a leak keeps growing
 * wave after wave (12 waves × 120 connections after it).
 */
const WAVES = 20;
const WARM_UP_WAVES = 8;
const CONNECTIONS_PER_WAVE = 120;
const ITEMS_PER_CONNECTION = 6;
/** As test/e2e/robustness: a leak of 10 KiB per hostile connection would exceed it. */
const RSS_GROWTH_MAX_BYTES = 32 * 1024 * 1024;
const SEEDED_KEYS = 20;

const adminToken = "fuzz-admin-token-00112233445566778899";
const readerToken = "fuzz-reader-token-99887766554433221100";

let dir: string;
let server: RunningServer;
let admin: RpcClient;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dkv-fuzz-"));
  await writeFile(
    join(dir, "auth.json"),
    JSON.stringify({
      tokens: [
        { name: "admin", sha256: tokenSha256(adminToken), role: "admin" },
        { name: "reader", sha256: tokenSha256(readerToken), role: "read" },
      ],
    }),
  );
  server = await startServer([
    "--transport-endpoint",
    "127.0.0.1:0",
    "--auth-file",
    join(dir, "auth.json"),
    "--log-level",
    "error",
  ]);
  admin = new RpcClient({
    endpoints: [server.endpoint],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 5_000,
    token: adminToken,
  });
  for (let i = 0; i < SEEDED_KEYS; i++) await admin.store(100).set(`seed-${i}`, `value-${i}`);
}, 120_000);

afterAll(async () => {
  await admin?.close();
  await server?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

function tokenFrame(token: Uint8Array): Uint8Array {
  const frame = new Uint8Array(28 + token.length);
  frame[0] = 0xdb;
  frame[1] = 1;
  frame[2] = 1;
  const view = new DataView(frame.buffer);
  view.setUint32(4, token.length, true);
  view.setUint16(16, authenticateOpCode, true);
  frame.set(token, 28);
  return frame;
}

const writeOps: OpName[] = ["set", "setE", "setEIfUnset", "delete", "expire", "acquire", "release", "claim"];

function validFrame(random: () => number, requestId: number): Uint8Array {
  const op = writeOps[Math.floor(random() * writeOps.length)]!;
  const shard = random() < 0.5 ? 100 : 200;
  const key = random() < 0.5 ? `seed-${Math.floor(random() * SEEDED_KEYS)}` : `fuzz-${requestId}`;
  const message: Record<string, string | number | Uint8Array> = {
    key,
    value: "x",
    expected: "value-0",
    expireInMs: 0,
    deleteInMs: 1,
    ttlMs: 0,
    waitMs: 0,
    ownerId: "00",
  };
  return encodeRequestFrame(op, message, { shard, requestId });
}

/** One hostile item: random bytes, a mutated frame, a forged length, a cut frame, a wrong token. */
function fuzzItem(random: () => number, requestId: number): Uint8Array {
  const pick = random();
  if (pick < 0.2) return crypto.getRandomValues(new Uint8Array(1 + Math.floor(random() * 1500)));
  const frame = validFrame(random, requestId);
  if (pick < 0.55) {
    // Flip a few bytes anywhere, header included.
    const mutated = frame.slice();
    const flips = 1 + Math.floor(random() * 4);
    for (let i = 0; i < flips; i++)
      mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
    return mutated;
  }
  if (pick < 0.65) {
    const forged = frame.slice();
    new DataView(forged.buffer).setUint32(4, Math.floor(random() * 0xffffffff), true);
    return forged;
  }
  if (pick < 0.75) return frame.subarray(0, Math.floor(random() * frame.length));
  if (pick < 0.85) return tokenFrame(crypto.getRandomValues(new Uint8Array(1 + Math.floor(random() * 64))));
  // Header fields at random: op code, shard, serializer, flags.
  const odd = frame.slice();
  const view = new DataView(odd.buffer);
  view.setUint16(16, Math.floor(random() * 0x10000), true);
  view.setUint32(12, Math.floor(random() * 0x100000000), true);
  odd[2] = Math.floor(random() * 256);
  odd[3] = Math.floor(random() * 256);
  return odd;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (kib === undefined) throw new Error("no VmRSS in /proc status");
  return Number(kib) * 1024;
}

async function wave(random: () => number, waveIndex: number): Promise<void> {
  const colon = server.endpoint.lastIndexOf(":");
  const hostname = server.endpoint.slice(0, colon);
  const port = Number(server.endpoint.slice(colon + 1));
  const sockets = await Promise.all(
    Array.from({ length: CONNECTIONS_PER_WAVE }, () =>
      Bun.connect({ hostname, port, socket: { data() {} } }),
    ),
  );
  const reader = new TextEncoder().encode(readerToken);
  for (const [i, socket] of sockets.entries()) {
    const parts: Uint8Array[] = [];
    // A third authenticate as the read-only token first: fuzz after a valid handshake.
    if (i % 3 === 0) parts.push(tokenFrame(reader));
    for (let k = 0; k < ITEMS_PER_CONNECTION; k++) {
      parts.push(fuzzItem(random, (waveIndex * CONNECTIONS_PER_WAVE + i) * ITEMS_PER_CONNECTION + k + 1));
    }
    socket.write(Buffer.concat(parts));
    socket.end();
  }
}

describe("the client port under fuzzing, with token auth on", () => {
  test("no crash, no change of data, memory bounded", async () => {
    const random = seededRandom(SEED);
    const store = admin.store(100);
    const rss: number[] = [];
    for (let w = 0; w < WAVES; w++) {
      await wave(random, w);
      // Still answering an authenticated client after each wave.
      expect(await store.has("seed-0")).toBe(true);
      rss.push(await rssBytes(server.proc.pid));
    }
    expect(server.proc.exitCode).toBeNull();
    const info = await admin.info(100);
    expect(info.keys).toBe(SEEDED_KEYS);
    for (let i = 0; i < SEEDED_KEYS; i++) {
      expect(new TextDecoder().decode(await store.get(`seed-${i}`))).toBe(`value-${i}`);
    }
    expect((await admin.info(200)).keys).toBe(0);
    const rssReport = `RSS per wave (seed ${SEED}): ${rss.map((b) => (b / 2 ** 20).toFixed(1)).join(", ")} MiB`;
    // The step growth once seen here (50 -> 130 MiB) was memory the collector had not
    // reclaimed yet, not memory kept: each hostile connection left a 16 KiB reply buffer,
    // and a header claiming a large body got a buffer of the claimed size at once (up to
    // ~120 MiB of such ArrayBuffers between collections). Both are fixed; the bound holds.
    console.log(rssReport);
    expect(rss[WAVES - 1]! - rss[WARM_UP_WAVES - 1]!, rssReport).toBeLessThan(RSS_GROWTH_MAX_BYTES);
    expect(await server.stop()).toBe(0);
  }, 90_000);
});

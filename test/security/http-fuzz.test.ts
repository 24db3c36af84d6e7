import { describe, expect, test } from "bun:test";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { startStack, storeShard } from "../rpc/harness.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { seededRandom } from "../support/seeded-random.ts";

/**
 * Fuzzes the http transport's own HTTP/1.1 framing: mutated requests (flipped, cut,
 * inserted, repeated bytes; split across writes) from a read-only token. The server must
 * stay up, answer a well-behaved client, change no data, and close every fuzz connection
 * (nothing left counted against the cap). DKV_SEED replays a run.
 */
const SEED = Number(process.env.DKV_SEED ?? 1);
const CONNECTIONS = 240;
const CONCURRENT = 24;
const KEYS = 10;

const adminToken = "http-fuzz-admin-0123456789";
const readerToken = "http-fuzz-reader-0123456789";
const ascii = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function request(head: string, body: Uint8Array | string = ""): Uint8Array {
  const bytes = typeof body === "string" ? ascii.encode(body) : body;
  return concat(ascii.encode(head.replace("{len}", String(bytes.length))), bytes);
}

const auth = `Authorization: Bearer ${readerToken}\r\n`;
const bases: Uint8Array[] = [
  request(
    `POST /v1/${storeShard}/get HTTP/1.1\r\nHost: d\r\n${auth}Content-Length: {len}\r\n\r\n`,
    '{"key":"k1"}',
  ),
  request(
    `POST /v1/${storeShard}/set HTTP/1.1\r\nHost: d\r\n${auth}Content-Length: {len}\r\n\r\n`,
    '{"key":"k1","value":"evil"}',
  ),
  request(
    `POST /v1/${storeShard}/get HTTP/1.1\r\nHost: d\r\n${auth}Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n`,
    encodeRequestFrame("get", { key: "k2" }, { shard: storeShard }),
  ),
  request(
    `POST /v1/${storeShard}/delete HTTP/1.1\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`,
    '5\r\n{"key\r\n6\r\n":"k3"}\r\n0\r\n\r\n',
  ),
  request(`GET /healthz HTTP/1.1\r\n\r\nGET /v1/cluster/status HTTP/1.1\r\n${auth}\r\n\r\n`),
  request(`POST /v1/${storeShard}/get HTTP/1.1\r\n${auth}Expect: 100-continue\r\nContent-Length: 12\r\n\r\n`),
];

function mutate(base: Uint8Array, random: () => number): Uint8Array {
  let bytes: Uint8Array = base.slice();
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * bytes.length);
    const kind = Math.floor(random() * 5);
    if (kind === 0) bytes[at] = Math.floor(random() * 256);
    else if (kind === 1)
      bytes = concat(bytes.subarray(0, at), bytes.subarray(at + 1 + Math.floor(random() * 8)));
    else if (kind === 2)
      bytes = concat(
        bytes.subarray(0, at),
        ascii.encode(["\r\n", ":", " ", "\r", "\n", "0"][Math.floor(random() * 6)]!),
        bytes.subarray(at),
      );
    else if (kind === 3) bytes = concat(bytes, bytes.subarray(at, Math.min(bytes.length, at + 40)));
    else bytes = bytes.subarray(0, at);
  }
  return bytes;
}

describe("the http listener under fuzzing", () => {
  test("no crash, no change of data, every fuzz connection closed", async () => {
    const authority = new TokenAuthority(
      parseAuthFile(
        JSON.stringify({
          tokens: [
            { name: "admin", sha256: tokenSha256(adminToken), role: "admin" },
            { name: "reader", sha256: tokenSha256(readerToken), role: "read" },
          ],
        }),
        "test",
      ),
    );
    const stack = await startStack("http", "binary", {
      server: {
        authority,
        limits: { maxConnections: CONCURRENT + 4, handshakeTimeoutMs: 300, idleTimeoutMs: 300 },
      },
      client: { token: adminToken },
    });
    const random = seededRandom(SEED);
    const store = stack.client.store(storeShard);
    try {
      for (let i = 0; i < KEYS; i++) await store.set(`k${i}`, `v${i}`);
      const endpoint = stack.server.endpoint;
      const colon = endpoint.lastIndexOf(":");
      let answered = 0;
      let cutByUs = 0;
      const one = async () => {
        const payload = mutate(bases[Math.floor(random() * bases.length)]!, random);
        const cut = Math.floor(random() * (payload.length + 1));
        let resolveClosed: () => void = () => {};
        const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
        const socket = await Bun.connect({
          hostname: endpoint.slice(0, colon),
          port: Number(endpoint.slice(colon + 1)),
          socket: {
            data: () => {
              answered++;
            },
            close: () => resolveClosed(),
            error: () => resolveClosed(),
          },
        });
        socket.write(payload.subarray(0, cut));
        socket.write(payload.subarray(cut));
        // The server closes it (a refusal, the head or the idle timeout of 300 ms); else we do after 3 s.
        const timer = setTimeout(() => {
          cutByUs++;
          socket.terminate();
        }, 3_000);
        await closed;
        clearTimeout(timer);
      };
      for (let done = 0; done < CONNECTIONS; done += CONCURRENT) {
        await Promise.all(Array.from({ length: CONCURRENT }, one));
        // A well-behaved client is served between the waves.
        expect(await store.get("k0")).toEqual(new TextEncoder().encode("v0"));
      }
      expect(answered).toBeGreaterThan(0);
      expect(cutByUs).toBe(0);
      for (let i = 0; i < 200 && stack.server.connections > 1; i++) await Bun.sleep(10);
      // Only the well-behaved client's keep-alive connection may be left.
      expect(stack.server.connections).toBeLessThanOrEqual(1);
      for (let i = 0; i < KEYS; i++)
        expect(await store.get(`k${i}`)).toEqual(new TextEncoder().encode(`v${i}`));
    } finally {
      await stack.close();
    }
  }, 60_000);
});

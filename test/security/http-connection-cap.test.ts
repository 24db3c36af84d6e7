import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lockShard, startStack } from "../rpc/harness.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { type RawHttp, rawHttp, waitFor, within } from "../support/raw-http.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

/**
 * The http listener's connection cap (--max-client-connections) and head timeout: every
 * accepted connection counts from accept, a silent one is closed after the handshake
 * timeout, and one over the cap is refused at once with a 503 saying why.
 */

describe("http connection cap", () => {
  test("idle keep-alive connections make room, oldest first; busy ones fill the cap and the next is refused with 503", async () => {
    const stack = await startStack("http", "binary", { server: { limits: { maxConnections: 2 } } });
    const opened: RawHttp[] = [];
    const connect = async () => {
      const raw = await rawHttp(stack.server.endpoint);
      opened.push(raw);
      return raw;
    };
    try {
      // Two keep-alive connections, idle after one request each.
      const idle = [await connect(), await connect()];
      for (const raw of idle) expect((await raw.request("GET", "/healthz")).status).toBe(200);
      expect(stack.server.connections).toBe(2);
      await stack.locks.acquire("held", 0);
      // A blocking acquire that waits 2 s (of the stack's manual clock): in progress till then.
      const blockedAcquire = (raw: RawHttp) =>
        raw.request(
          "POST",
          `/v1/${lockShard}/acquire`,
          encodeRequestFrame("acquire", { key: "held", ttlMs: 0, waitMs: 2_000 }, { shard: lockShard }),
        );
      // Each new connection closes the longest-idle one to make room.
      const waits = [blockedAcquire(await connect())];
      await within(3_000, idle[0]!.closed, "closing the older idle connection");
      expect(idle[1]!.isClosed()).toBe(false);
      waits.push(blockedAcquire(await connect()));
      await within(3_000, idle[1]!.closed, "closing the other idle connection");
      await waitFor("two busy connections", () => stack.server.connections === 2);
      // Both busy (blocked acquires): the next connection is refused at once, with a reason, and closed.
      const extra = await connect();
      const refused = await within(3_000, extra.request("GET", "/healthz"), "the refusal");
      expect(refused.status).toBe(503);
      expect(refused.head.toLowerCase()).toContain("connection: close");
      expect(JSON.parse(refused.body)).toMatchObject({
        error: "UNAVAILABLE",
        message: expect.stringContaining("--max-client-connections"),
      });
      await within(3_000, extra.closed, "closing the refused connection");
      expect(stack.server.connections).toBe(2);
      // The busy ones still get their answers; then their slots are usable again.
      await stack.clock.advance(2_000);
      for (const response of await Promise.all(waits)) expect(response.status).toBe(200);
      const later = await connect();
      expect((await later.request("GET", "/healthz")).status).toBe(200);
    } finally {
      for (const raw of opened) raw.close();
      await stack.close();
    }
  });

  test("silent connections count from accept, the next real client is refused at once, and they are closed after the head timeout", async () => {
    const cap = 4;
    const headTimeoutMs = 400;
    const stack = await startStack("http", "binary", {
      server: { limits: { maxConnections: cap, handshakeTimeoutMs: headTimeoutMs } },
    });
    const opened: RawHttp[] = [];
    try {
      // A hostile client: `cap` connections that never send a byte, and one sending half a head.
      const silent: RawHttp[] = [];
      for (let i = 0; i < cap - 1; i++) silent.push(await rawHttp(stack.server.endpoint));
      const slow = await rawHttp(stack.server.endpoint);
      opened.push(...silent, slow);
      slow.send("POST /v1/100/get HTTP/1.1\r\nHost: dkv\r\n");
      const connectedAt = performance.now();
      await waitFor("the silent connections to be counted", () => stack.server.connections === cap);
      // The next real client gets a clear refusal right away, not a hang.
      const real = await rawHttp(stack.server.endpoint);
      opened.push(real);
      const refused = await within(headTimeoutMs, real.request("GET", "/healthz"), "the refusal");
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body).message).toContain("--max-client-connections");
      await within(3_000, real.closed, "closing the refused connection");
      // The head timeout closes them all: the silent ones without a word, the slow one with a 408.
      await within(
        5_000,
        Promise.all([...silent, slow].map((raw) => raw.closed)),
        "closing the connections that sent no complete head",
      );
      expect(performance.now() - connectedAt).toBeGreaterThanOrEqual(headTimeoutMs - 50);
      expect(slow.received()).toContain("408");
      await waitFor("the closed connections to be uncounted", () => stack.server.connections === 0);
      // Now a real client is served.
      const later = await rawHttp(stack.server.endpoint);
      opened.push(later);
      expect((await later.request("GET", "/healthz")).status).toBe(200);
      // A keep-alive connection between requests is not held to the head timeout (the idle timeout applies).
      await Bun.sleep(headTimeoutMs * 2);
      expect(later.isClosed()).toBe(false);
      expect((await later.request("GET", "/healthz")).status).toBe(200);
    } finally {
      for (const raw of opened) raw.close();
      await stack.close();
    }
  });

  test("a malformed request gets a 400 with a JSON reason and is closed; a token in it is not echoed", async () => {
    const stack = await startStack("http", "binary");
    const raw = await rawHttp(stack.server.endpoint);
    try {
      raw.send(
        "POST /v1/100/get HTTP/1.1\r\nAuthorization : Bearer secret-token-123\r\nContent-Length: 2\r\n\r\n{}",
      );
      await within(3_000, raw.closed, "closing the connection");
      const reply = raw.received();
      expect(reply).toStartWith("HTTP/1.1 400 ");
      expect(reply.toLowerCase()).toContain("connection: close");
      const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
      expect(body).toMatchObject({
        error: "BAD_REQUEST",
        message: expect.stringContaining("malformed header field"),
      });
      expect(reply).not.toContain("secret-token-123");
    } finally {
      raw.close();
      await stack.close();
    }
  });

  describe("with TLS", () => {
    let pki: TestPki;
    beforeAll(async () => {
      pki = await makeTestPki();
    });
    afterAll(async () => {
      await pki.remove();
    });

    test("connections that never start the TLS handshake count from accept and are closed after the timeout; the refused client is told why after its handshake", async () => {
      const cap = 2;
      const headTimeoutMs = 400;
      const stack = await startStack("http", "binary", {
        server: {
          limits: { maxConnections: cap, handshakeTimeoutMs: headTimeoutMs },
          tls: { cert: pki.member.cert, key: pki.member.key, requireClientCert: false },
        },
      });
      const opened: RawHttp[] = [];
      try {
        for (let i = 0; i < cap; i++) opened.push(await rawHttp(stack.server.endpoint));
        await waitFor("the silent connections to be counted", () => stack.server.connections === cap);
        const [host, port] = [stack.server.endpoint.split(":")[0]!, stack.server.endpoint.split(":")[1]!];
        const refused = await within(
          3_000,
          fetch(`https://${host}:${port}/healthz`, { tls: { ca: pki.ca.cert } }),
          "the refusal over TLS",
        );
        expect(refused.status).toBe(503);
        expect((await refused.json()) as unknown).toMatchObject({ error: "UNAVAILABLE" });
        await within(5_000, Promise.all(opened.map((raw) => raw.closed)), "closing the silent connections");
        await waitFor("the closed connections to be uncounted", () => stack.server.connections === 0);
        const served = await fetch(`https://${host}:${port}/healthz`, { tls: { ca: pki.ca.cert } });
        expect(served.status).toBe(200);
      } finally {
        for (const raw of opened) raw.close();
        await stack.close();
      }
    });
  });
});

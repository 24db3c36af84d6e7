import { describe, expect, test } from "bun:test";
import { lockShard, startStack } from "../rpc/harness.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";

/** The http listener's connection cap (--max-client-connections), which Bun.serve lacks. */

interface RawHttp {
  /** Sends one request and resolves with the status line, headers and body of its response. */
  request(
    method: string,
    path: string,
    body?: Uint8Array,
  ): Promise<{ status: number; head: string; body: string }>;
  closed: Promise<void>;
  isClosed(): boolean;
  close(): void;
}

const latin1 = new TextDecoder("latin1");

async function rawHttp(endpoint: string): Promise<RawHttp> {
  const colon = endpoint.lastIndexOf(":");
  let buffered = "";
  let onData: (() => void) | undefined;
  let closedFlag = false;
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    resolveClosed = () => {
      closedFlag = true;
      onData?.();
      resolve();
    };
  });
  const socket = await Bun.connect({
    hostname: endpoint.slice(0, colon),
    port: Number(endpoint.slice(colon + 1)),
    socket: {
      data: (_s, chunk) => {
        buffered += latin1.decode(chunk);
        onData?.();
      },
      close: () => resolveClosed(),
      error: () => resolveClosed(),
    },
  });
  const complete = (): { status: number; head: string; body: string } | undefined => {
    const end = buffered.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const head = buffered.slice(0, end);
    const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (buffered.length < end + 4 + length) return undefined;
    const body = buffered.slice(end + 4, end + 4 + length);
    buffered = buffered.slice(end + 4 + length);
    return { status: Number(head.split(" ")[1]), head, body };
  };
  return {
    closed,
    isClosed: () => closedFlag,
    close: () => socket.terminate(),
    async request(method, path, body = new Uint8Array(0)) {
      socket.write(
        `${method} ${path} HTTP/1.1\r\nHost: dkv\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      for (;;) {
        const response = complete();
        if (response !== undefined) return response;
        if (closedFlag) throw new Error(`closed before a response to ${method} ${path}`);
        await new Promise<void>((resolve) => (onData = resolve));
      }
    },
  };
}

async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("http connection cap", () => {
  test("idle keep-alive connections make room; busy ones fill the cap and the next is refused with 503", async () => {
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
      // A third is admitted: the idle two are closed to make room.
      await stack.locks.acquire("held", 0);
      // A blocking acquire that waits 2 s (of the stack's manual clock): in progress till then.
      const blockedAcquire = (raw: RawHttp) =>
        raw.request(
          "POST",
          `/v1/${lockShard}/acquire`,
          encodeRequestFrame("acquire", { key: "held", ttlMs: 0, waitMs: 2_000 }, { shard: lockShard }),
        );
      const waits = [blockedAcquire(await connect())];
      await within(3_000, Promise.all(idle.map((raw) => raw.closed)), "closing the idle connections");
      waits.push(blockedAcquire(await connect()));
      for (let i = 0; i < 200 && stack.server.connections < 2; i++) await Bun.sleep(5);
      expect(stack.server.connections).toBe(2);
      // Both busy (blocked acquires): the next connection is refused, with a reason, and closed.
      const extra = await connect();
      const refused = await extra.request("GET", "/healthz");
      expect(refused.status).toBe(503);
      expect(refused.head.toLowerCase()).toContain("connection: close");
      expect(JSON.parse(refused.body)).toMatchObject({
        error: "UNAVAILABLE",
        message: expect.stringContaining("--max-client-connections"),
      });
      await within(3_000, extra.closed, "closing the refused connection");
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
});

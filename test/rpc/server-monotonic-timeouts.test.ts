import { afterEach, describe, expect, test } from "bun:test";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { type Stack, startStack } from "./harness.ts";

/**
 * The server's connection timeouts (handshake, request head, idle) run on monotonic time
 * (issue 9: "monotonic time for deadlines"): a step of the wall clock (NTP, `date -s`) must
 * not close live connections. Before, the sweep, the accept and the data handlers read
 * Date.now(): a wall clock stepped an hour forward made the next sweep close every open
 * connection as idle for an hour (and, on http, as one that sent no request head).
 */
let stack: Stack | undefined;
const realDateNow = Date.now;
afterEach(async () => {
  Date.now = realDateNow;
  await stack?.close();
  stack = undefined;
});

const TIMEOUT_MS = 300;

/** A raw TCP connection to the server: resolves `closed` when the server closes it. */
async function openRaw(
  endpoint: string,
): Promise<{ closed: Promise<void>; isClosed: () => boolean; end: () => void }> {
  const [hostname, port] = [
    endpoint.slice(0, endpoint.lastIndexOf(":")),
    Number(endpoint.slice(endpoint.lastIndexOf(":") + 1)),
  ];
  let closedNow = false;
  let resolveClosed = () => {};
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  const socket = await Bun.connect({
    hostname,
    port,
    socket: {
      data() {},
      close() {
        closedNow = true;
        resolveClosed();
      },
    },
  });
  return { closed, isClosed: () => closedNow, end: () => socket.end() };
}

describe.each(["tcp", "http"] as TransportName[])("%s server", (transport) => {
  test("a wall clock stepped an hour forward closes no connection; the timeouts still fire on real time", async () => {
    stack = await startStack(transport, "binary", {
      server: { limits: { maxConnections: 16, idleTimeoutMs: TIMEOUT_MS, handshakeTimeoutMs: TIMEOUT_MS } },
    });
    const endpoint = stack.server.endpoint;
    const raw = await openRaw(endpoint);
    const stepped = realDateNow() + 3_600_000;
    const steppedAt = performance.now();
    Date.now = () => stepped + Math.floor(performance.now() - steppedAt);
    // Several sweeps (every TIMEOUT_MS / 4) run well within the timeout.
    await Bun.sleep(TIMEOUT_MS / 2);
    expect(raw.isClosed()).toBe(false);
    // On monotonic time the timeout still closes it (idle, or no request head on http).
    const start = performance.now();
    await raw.closed;
    expect(performance.now() - start).toBeLessThan(10 * TIMEOUT_MS);
    raw.end();
  });
});

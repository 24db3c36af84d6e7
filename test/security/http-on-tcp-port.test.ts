import { afterEach, describe, expect, test } from "bun:test";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";

/**
 * curl on the tcp port (the default transport) used to get a binary error frame, which curl
 * shows as "Received HTTP/0.9 when not allowed". It now gets an HTTP 400 whose JSON body
 * names the transport to use; the connection is closed and nothing is applied.
 */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("an HTTP request on the tcp port", () => {
  test("gets an HTTP 400 naming --transport http, and changes nothing", async () => {
    stack = await startStack("tcp", "binary");
    const response = await fetch(`http://${stack.server.endpoint}/v1/${storeShard}/set`, {
      method: "POST",
      body: '{"key":"k","value":"v"}',
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string; message: string; outcome: string };
    expect(body).toMatchObject({ error: "BAD_FRAME", outcome: "not-applied" });
    expect(body.message).toContain("--transport http");
    expect(await stack.store.has("k")).toBe(false);
    // The port still serves dkv clients.
    await stack.client.store(storeShard).set("k", "v");
    expect(await stack.store.has("k")).toBe(true);
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";

/**
 * Human JSON over http: a field the operation does not have (a typo such as "expireInMS",
 * or "ttl") is refused with BAD_REQUEST naming the fields it has, and nothing is written.
 * Before, it was dropped and the write applied without it: a key meant to expire never did.
 */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("http human JSON refuses unknown fields", () => {
  test("a misspelt expiry on setE is refused and changes nothing", async () => {
    stack = await startStack("http", "binary");
    const base = `http://${stack.server.endpoint}/v1/${storeShard}`;
    const response = await fetch(`${base}/setE`, {
      method: "POST",
      body: '{"key":"t","value":"x","expireInMS":5000}',
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string; message: string; outcome: string };
    expect(body.error).toBe("BAD_REQUEST");
    expect(body.outcome).toBe("not-applied");
    expect(body.message).toContain('unknown field "expireInMS"');
    expect(body.message).toContain("expireInMs");
    expect(await stack.store.has("t")).toBe(false);
  });

  test("inside txn records too; the documented shapes still work", async () => {
    stack = await startStack("http", "binary");
    const base = `http://${stack.server.endpoint}/v1/${storeShard}`;
    const bad = await fetch(`${base}/txn`, {
      method: "POST",
      body: '{"compare":[],"success":[{"op":"set","key":"a","value":"1","ttl":5}],"failure":[]}',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toContain('unknown field "ttl"');
    expect(await stack.store.has("a")).toBe(false);
    const good = await fetch(`${base}/setE`, {
      method: "POST",
      body: '{"key":"t","value":"x","expireInMs":5000}',
    });
    expect(await good.json()).toEqual({ ok: true });
  });
});

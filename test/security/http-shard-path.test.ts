import { afterEach, expect, test } from "bun:test";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

test("a shard id with a leading zero in the http path is refused, not taken for another spelling", async () => {
  stack = await startStack("http", "binary");
  const root = `http://${stack.server.endpoint}/v1`;
  const padded = await fetch(`${root}/0${storeShard}/set`, {
    method: "POST",
    body: '{"key":"k","value":"v"}',
  });
  expect(padded.status).toBe(400);
  const body = (await padded.json()) as { error: string; message: string; outcome: string };
  expect(body.error).toBe("BAD_REQUEST");
  expect(body.outcome).toBe("not-applied");
  expect(body.message).toContain(`/v1/${storeShard}/set`);
  expect(await stack.store.has("k")).toBe(false);
  const plain = await fetch(`${root}/${storeShard}/set`, { method: "POST", body: '{"key":"k","value":"v"}' });
  expect(plain.status).toBe(200);
  expect(await stack.store.has("k")).toBe(true);
});

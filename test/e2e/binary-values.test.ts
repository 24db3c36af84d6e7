import { afterAll, beforeAll, expect, test } from "bun:test";
import { DKV, onlyJson, type RunningServer, runDkv, startServer } from "./helpers.ts";

/** Values are bytes through the CLI too: '-' reads stdin, --base64 decodes VALUE. */
let server: RunningServer;
const flags = () => ["--endpoints", server.endpoint, "--json"];

beforeAll(async () => {
  server = await startServer(["--transport-endpoint", "127.0.0.1:0", "--log-level", "error"]);
}, 60_000);

afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
});

test("every byte value set from stdin comes back exactly (base64 in --json)", async () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  expect((await runDkv(["kv", "set", "bin", "-", ...flags()], {}, bytes)).code).toBe(0);
  const got = onlyJson(await runDkv(["kv", "get", "bin", ...flags()]));
  expect(got).toMatchObject({
    found: true,
    value: Buffer.from(bytes).toString("base64"),
    encoding: "base64",
  });
  const raw = Bun.spawnSync([DKV, "kv", "get", "bin", "--endpoints", server.endpoint], {
    env: {},
  });
  expect(new Uint8Array(raw.stdout).subarray(0, 256)).toEqual(bytes);
});

test("a value larger than a shell argument can hold goes through stdin", async () => {
  const big = new TextEncoder().encode("x".repeat(1024 * 1024));
  expect((await runDkv(["kv", "setE", "big", "-", "1h", "0", ...flags()], {}, big)).code).toBe(0);
  const got = onlyJson(await runDkv(["kv", "get", "big", ...flags()]));
  expect((got.value as string).length).toBe(1024 * 1024);
});

test("--base64 stores the decoded bytes; invalid base64 is a usage error that writes nothing", async () => {
  expect((await runDkv(["kv", "set", "b64", "--base64", "3q2+7w==", ...flags()])).code).toBe(0);
  expect(onlyJson(await runDkv(["kv", "get", "b64", ...flags()]))).toMatchObject({
    found: true,
    value: "3q2+7w==",
    encoding: "base64",
  });
  const bad = await runDkv(["kv", "set", "b64-bad", "--base64", "not base64!", ...flags()]);
  expect(bad.code).toBe(2);
  expect(onlyJson(bad).error).toBe("USAGE");
  expect(onlyJson(await runDkv(["kv", "has", "b64-bad", ...flags()]))).toEqual({ found: false });
});

import { afterEach, describe, expect, test } from "bun:test";
import { runCli } from "../../cli/app.ts";
import { parseTxnDocument, txnResultJson } from "../../cli/txn-json.ts";
import { DkvError } from "../../src/errors.ts";
import { type Stack, startStack } from "../rpc/harness.ts";
import { capturingIo } from "../support/cli-io.ts";

/** The data API's CLI commands in process, against an in-process server (no binary needed). */
let stack: Stack | undefined;

afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const captured = capturingIo();
  const io = captured.io;
  const code = await runCli(["kv", ...args, "--endpoints", stack!.server.endpoint, "--shard", "100"], io);
  return { code, out: captured.out(), err: captured.err() };
}

describe("dkv kv get/list", () => {
  test("get --json carries the revisions; list pages with --limit/--after; --count", async () => {
    stack = await startStack("tcp", "binary");
    for (const key of ["svc/b", "svc/a", "svc/c", "other"]) await stack.store.set(key, key);
    await stack.store.set("svc/a", "again");
    expect(JSON.parse((await run(["get", "svc/a", "--json"])).out)).toEqual({
      found: true,
      value: "again",
      version: 2,
      createRevision: 2,
      modRevision: 5,
    });
    const first = await run(["list", "--prefix", "svc/", "--limit", "2", "--json"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.out)).toEqual({
      items: [
        { key: "svc/a", value: "again", version: 2, modRevision: 5 },
        { key: "svc/b", value: "svc/b", version: 1, modRevision: 1 },
      ],
      more: true,
      next: "svc/b",
    });
    const second = await run([
      "list",
      "--prefix",
      "svc/",
      "--limit",
      "2",
      "--after",
      "svc/b",
      "--json",
      "--keys-only",
    ]);
    expect(JSON.parse(second.out)).toEqual({
      items: [{ key: "svc/c", version: 1, modRevision: 3 }],
      more: false,
    });
    expect(
      JSON.parse((await run(["list", "--from", "o", "--to", "svc/b", "--count", "--json"])).out),
    ).toEqual({
      count: 2,
    });
  });

  test("a prefix with a range is a usage error (exit 2); limit 0 is refused", async () => {
    stack = await startStack("tcp", "binary");
    expect((await run(["list", "--prefix", "a", "--from", "b"])).code).toBe(2);
    expect((await run(["list", "--limit", "0"])).code).toBe(2);
  });
});

describe("dkv kv txn's JSON document", () => {
  test("parses compares, both branches, base64 values and setE durations", () => {
    const request = parseTxnDocument(
      JSON.stringify({
        compare: [
          { key: "n", target: "value", op: "==", value: { base64: "AP8=" } },
          { key: "n", target: "version", op: ">", value: 2 },
        ],
        success: [{ op: "setE", key: "n", value: "v", expireIn: "30s", deleteInMs: 5 }],
        failure: [{ op: "get", key: "n" }],
      }),
    );
    expect(request).toEqual({
      compare: [
        { key: "n", target: "value", op: "==", value: Uint8Array.of(0, 255) },
        { key: "n", target: "version", op: ">", value: 2 },
      ],
      success: [{ op: "setE", key: "n", value: "v", expireInMs: 30_000, deleteInMs: 5 }],
      failure: [{ op: "get", key: "n" }],
    });
    expect(parseTxnDocument("{}")).toEqual({ compare: [], success: [], failure: [] });
  });

  test("a malformed document is a usage error naming the part", () => {
    for (const [document, message] of [
      ["not json", /not JSON/],
      ["[]", /one JSON object/],
      ['{"success":{}}', /"success" must be a list/],
      ['{"success":[{"op":"put","key":"k"}]}', /success\[0\]\.op/],
      ['{"compare":[{"key":"k","target":"value","op":"==","value":3}]}', /compare\[0\]\.value/],
    ] as const) {
      let caught: unknown;
      try {
        parseTxnDocument(document);
      } catch (error) {
        caught = error;
      }
      expect(DkvError.is(caught, "USAGE")).toBe(true);
      expect((caught as DkvError).message).toMatch(message);
    }
  });

  test("results print values as text, or base64 when not UTF-8", () => {
    expect(
      txnResultJson({
        succeeded: false,
        revision: 7,
        results: [
          {
            op: "get",
            key: "a",
            found: true,
            value: Uint8Array.of(0xff),
            version: 1,
            createRevision: 2,
            modRevision: 3,
          },
          { op: "get", key: "b", found: false },
          { op: "delete", key: "c" },
        ],
      }),
    ).toEqual({
      succeeded: false,
      revision: 7,
      results: [
        {
          op: "get",
          key: "a",
          found: true,
          value: "/w==",
          encoding: "base64",
          version: 1,
          createRevision: 2,
          modRevision: 3,
        },
        { op: "get", key: "b", found: false },
        { op: "delete", key: "c" },
      ],
    });
  });
});

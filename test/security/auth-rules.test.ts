import { describe, expect, test } from "bun:test";
import { opRules, parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { scopeWithinPrefixes } from "../../src/auth/permissions.ts";
import { DkvError } from "../../src/errors.ts";
import { type Message, opNames } from "../../src/rpc/protocol/types.ts";

const sha = tokenSha256("t");

function parseError(text: string): string {
  try {
    parseAuthFile(text, "auth.json");
  } catch (error) {
    if (error instanceof DkvError) {
      expect(error.code).toBe("USAGE");
      return error.message;
    }
    throw error;
  }
  throw new Error("expected the file to be refused");
}

describe("the auth file", () => {
  test("a valid file maps each token's digest to its grant", () => {
    const table = parseAuthFile(
      JSON.stringify({
        tokens: [
          { name: "app", sha256: sha.toUpperCase(), role: "write", shards: [200], prefixes: ["app/"] },
        ],
      }),
      "auth.json",
    );
    const grant = table.grants.get(sha);
    expect(grant?.name).toBe("app");
    expect([...(grant?.shards ?? [])]).toEqual([200]);
    expect(grant?.prefixes).toEqual(["app/"]);
  });

  test.each([
    ["{", "not valid JSON"],
    ["[]", '"tokens" array'],
    [JSON.stringify({ tokens: [{ name: "a", sha256: "xyz", role: "read" }] }), "64 hex digits"],
    [JSON.stringify({ tokens: [{ name: "a", sha256: sha, role: "root" }] }), '"role" of "a"'],
    [JSON.stringify({ tokens: [{ name: "a", sha256: sha, role: "read", shards: ["x"] }] }), '"shards"'],
    [JSON.stringify({ tokens: [{ name: "a", sha256: sha, role: "read", prefixes: [1] }] }), '"prefixes"'],
    [
      JSON.stringify({ tokens: [{ name: "a", sha256: sha, role: "read", token: "t" }] }),
      'unknown field "token"',
    ],
    [
      JSON.stringify({
        tokens: [
          { name: "a", sha256: sha, role: "read" },
          { name: "b", sha256: sha, role: "admin" },
        ],
      }),
      "same sha256",
    ],
  ])("%s is refused: %s", (text, expected) => {
    expect(parseError(text)).toContain(expected);
  });
});

describe("permissions", () => {
  test("every operation has a rule (a new op without one does not compile)", () => {
    for (const op of opNames) expect(opRules[op]).toBeDefined();
    expect(opRules.clusterStatus.scope).toBe("server");
  });

  test("prefix scopes: keys, prefixes and ranges must stay inside a granted prefix", () => {
    const p = ["app/"];
    expect(scopeWithinPrefixes({ kind: "key", key: "app/x" }, p)).toBe(true);
    expect(scopeWithinPrefixes({ kind: "key", key: "ap" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "keys", keys: ["app/a", "app/b"] }, p)).toBe(true);
    expect(scopeWithinPrefixes({ kind: "keys", keys: ["app/a", "b"] }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "prefix", prefix: "app/sub/" }, p)).toBe(true);
    expect(scopeWithinPrefixes({ kind: "prefix", prefix: "ap" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "range", from: "app/a", to: "app0" }, p)).toBe(true);
    expect(scopeWithinPrefixes({ kind: "range", from: "app/a", to: "app/z" }, p)).toBe(true);
    expect(scopeWithinPrefixes({ kind: "range", from: "app/a", to: "b" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "range", from: "app/a", to: "" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "range", from: "a", to: "app/z" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "shard" }, p)).toBe(false);
    expect(scopeWithinPrefixes({ kind: "range", from: "", to: "" }, [""])).toBe(true);
  });

  test("backups and membership: a token scoped by shards or prefixes reaches no more than its scope", () => {
    const tokens = [
      { name: "root", role: "admin" },
      { name: "shard200", role: "admin", shards: [200] },
      { name: "app", role: "admin", prefixes: ["app/"] },
    ].map((grant) => ({ ...grant, sha256: tokenSha256(grant.name) }));
    const authority = new TokenAuthority(parseAuthFile(JSON.stringify({ tokens }), "auth.json"));
    const check = (name: string, op: "snapshotSave" | "membership", shard: number, message: Message) =>
      authority.authorize(authority.identify(name), op, shard, message)?.code ?? "ok";
    // A backup of one shard: a token of that shard, without prefixes (it holds every key).
    expect(check("root", "snapshotSave", 200, { shard: 200 })).toBe("ok");
    expect(check("shard200", "snapshotSave", 200, { shard: 200 })).toBe("ok");
    expect(check("shard200", "snapshotSave", 300, { shard: 300 })).toBe("PERMISSION_DENIED");
    expect(check("app", "snapshotSave", 200, { shard: 200 })).toBe("PERMISSION_DENIED");
    // Every shard, and the cluster's make-up: unscoped tokens only.
    expect(check("root", "snapshotSave", 0, {})).toBe("ok");
    expect(check("shard200", "snapshotSave", 0, {})).toBe("PERMISSION_DENIED");
    expect(check("app", "snapshotSave", 0, {})).toBe("PERMISSION_DENIED");
    expect(check("root", "membership", 0, {})).toBe("ok");
    expect(check("shard200", "membership", 200, {})).toBe("PERMISSION_DENIED");
    expect(check("app", "membership", 0, {})).toBe("PERMISSION_DENIED");
  });
});

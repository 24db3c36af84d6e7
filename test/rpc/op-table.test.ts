import { expect, test } from "bun:test";
import { opRules } from "../../src/auth/permissions.ts";
import { lockOps, opNames, requestSchemas, responseSchemas, writeOps } from "../../src/rpc/protocol/types.ts";
import { opTable } from "../../src/rpc/server/op-table.ts";

test("the dispatch table has one entry per op, agreeing with the protocol's write and lock sets", () => {
  expect(Object.keys(opTable).sort()).toEqual([...opNames].sort());
  for (const op of opNames) {
    const entry = opTable[op];
    expect([op, entry.write]).toEqual([op, writeOps.has(op)]);
    expect([op, entry.shards === "lock"]).toEqual([op, lockOps.has(op)]);
    // A write needs the write permission (in the one permission table); reads need only read.
    expect([op, opRules[op].permission]).toEqual([op, entry.write ? "write" : "read"]);
    expect(requestSchemas[op]).toBeDefined();
    expect(responseSchemas[op]).toBeDefined();
  }
});

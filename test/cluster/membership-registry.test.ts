import { describe, expect, test } from "bun:test";
import { EntryKind } from "../../src/raft/core/types.ts";
import {
  decodeRegistryResult,
  encodeRegistryCommand,
  MemberRegistry,
  PENDING_LEASE_MS,
  type RegistryCommand,
} from "../../src/raft/host/membership-registry.ts";

/** The membership group's state machine alone: its rules are decided in log order. */

function entry(index: number, timeMs: number, command: RegistryCommand) {
  return { term: 1, index, kind: EntryKind.Normal, timeMs, data: encodeRegistryCommand(command) };
}

function fresh(): { registry: MemberRegistry; changes: () => number } {
  let changes = 0;
  const registry = new MemberRegistry(
    new Map([
      ["node-1", "127.0.0.1:1"],
      ["node-2", "127.0.0.1:2"],
    ]),
    () => changes++,
  );
  return { registry, changes: () => changes };
}

describe("MemberRegistry", () => {
  test("a second change of another member is refused until the first ends or its lease runs out", () => {
    const { registry } = fresh();
    const apply = (i: number, t: number, c: RegistryCommand) =>
      decodeRegistryResult(registry.apply(entry(i, t, c)));
    expect(
      apply(1, 1000, { t: "begin", op: "add", id: "node-3", address: "127.0.0.1:3", by: "node-1" }).ok,
    ).toBe(true);
    const second = apply(2, 1001, { t: "begin", op: "remove", id: "node-2", by: "node-1" });
    expect(second).toMatchObject({ ok: false, code: "CONFLICT" });
    // The same member's change may be re-run (finishing a half-done one).
    expect(
      apply(3, 1002, { t: "begin", op: "add", id: "node-3", address: "127.0.0.1:3", by: "node-2" }).ok,
    ).toBe(true);
    // After the lease, another change takes over.
    expect(
      apply(4, 1002 + PENDING_LEASE_MS, { t: "begin", op: "remove", id: "node-2", by: "node-1" }).ok,
    ).toBe(true);
  });

  test("a removed id is never reused, and a taken address is refused; state survives a snapshot", async () => {
    const { registry, changes } = fresh();
    const apply = (i: number, c: RegistryCommand) => decodeRegistryResult(registry.apply(entry(i, 5, c)));
    expect(apply(1, { t: "begin", op: "remove", id: "node-2", by: "node-1" }).ok).toBe(true);
    expect(apply(2, { t: "end", op: "remove", id: "node-2", completed: true }).ok).toBe(true);
    expect(registry.isRemoved("node-2")).toBe(true);
    expect(registry.addressOf("node-2")).toBeUndefined();
    expect(
      apply(3, { t: "begin", op: "add", id: "node-2", address: "127.0.0.1:9", by: "node-1" }),
    ).toMatchObject({
      ok: false,
    });
    expect(
      apply(4, { t: "begin", op: "add", id: "node-3", address: "127.0.0.1:1", by: "node-1" }),
    ).toMatchObject({
      ok: false,
    });
    expect(changes()).toBe(2);

    const copy = fresh().registry;
    await copy.restore(registry.snapshot());
    expect(copy.state()).toEqual(registry.state());
    expect(copy.isRemoved("node-2")).toBe(true);
  });

  test("only the one member of a cluster started without an address (port 0) adopts one, once", () => {
    const registry = new MemberRegistry(new Map([["node-1", "127.0.0.1:0"]]), () => {});
    const apply = (i: number, c: RegistryCommand) => decodeRegistryResult(registry.apply(entry(i, 5, c)));
    expect(apply(1, { t: "address", id: "node-1", address: "127.0.0.1:0" })).toMatchObject({ ok: false });
    expect(apply(2, { t: "address", id: "node-2", address: "127.0.0.1:7" })).toMatchObject({ ok: false });
    expect(apply(3, { t: "address", id: "node-1", address: "127.0.0.1:7" }).ok).toBe(true);
    expect(registry.addressOf("node-1")).toBe("127.0.0.1:7");
    // Once dialable, others may have dialed it: it never moves again this way.
    expect(apply(4, { t: "address", id: "node-1", address: "127.0.0.1:8" })).toMatchObject({
      ok: false,
      code: "CONFLICT",
    });
    // Nor does a member of a larger cluster.
    const { registry: two } = fresh();
    expect(
      decodeRegistryResult(two.apply(entry(1, 5, { t: "address", id: "node-1", address: "127.0.0.1:9" }))),
    ).toMatchObject({ ok: false });
    expect(two.addressOf("node-1")).toBe("127.0.0.1:1");
  });
});

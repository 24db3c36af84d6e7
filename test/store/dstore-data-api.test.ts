import { afterEach, describe, expect, test } from "bun:test";
import { EntryKind } from "../../src/raft/core/types.ts";
import {
  CLIENT_ID_BYTES,
  encodeCommand,
  Op,
  type RequestOrigin,
} from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { encodeTxn } from "../../src/store/replicated/txn-command.ts";
import { TestCluster as Cluster, type TestCluster, waitFor } from "../raft/host/cluster.ts";
import { bytes, text } from "../support/assertions.ts";

const GROUP = 5;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(): Promise<TestCluster> {
  cluster = await Cluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  return cluster;
}

function storeOn(c: TestCluster, id: string): DStore {
  return new DStore(c.host(id), GROUP, { timeoutMs: 3000 });
}

function machineOn(c: TestCluster, id: string): DStoreStateMachine {
  return c.host(id).stateMachine(GROUP) as DStoreStateMachine;
}

describe("dstore data API on a 3-member cluster", () => {
  test("revisions are Raft indexes, the same on every member; a txn is one entry", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const follower = c.follower(GROUP);
    await storeOn(c, follower).set("svc/a", "1");
    const afterSet = c.host(leader).status(GROUP).appliedIndex;
    const result = await storeOn(c, follower).txn({
      compare: [{ key: "svc/a", target: "version", op: "==", value: 1 }],
      success: [
        { op: "set", key: "svc/a", value: "2" },
        { op: "set", key: "svc/b", value: "3" },
      ],
      failure: [],
    });
    expect(result.succeeded).toBe(true);
    // The transaction's revision is the index of the one entry that carried it.
    expect(result.revision).toBe(afterSet + 1);
    expect(c.host(leader).status(GROUP).appliedIndex).toBe(afterSet + 1);
    for (const id of c.ids) {
      await waitFor(() => c.host(id).status(GROUP).appliedIndex >= result.revision, `apply on ${id}`);
      const db = machineOn(c, id).db;
      expect(db.getEntry("svc/a", 0)).toMatchObject({
        version: 2,
        createRevision: afterSet,
        modRevision: result.revision,
      });
      expect(db.getEntry("svc/b", 0)).toMatchObject({ version: 1, modRevision: result.revision });
      expect(db.revision).toBe(result.revision);
    }
    // A listing on any member sees every acknowledged write (linearizable, not stale).
    for (const id of c.ids) {
      const page = await storeOn(c, id).list({ prefix: "svc/" });
      expect(page.items.map((item) => [item.key, text(item.value)])).toEqual([
        ["svc/a", "2"],
        ["svc/b", "3"],
      ]);
    }
  });

  test("a retried txn (same request id) applies once and answers the first result", async () => {
    const c = await start();
    await c.waitForLeader(GROUP);
    const origin: RequestOrigin = { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(9), requestId: 1 };
    const casIncrement = {
      compare: [{ key: "n", target: "exists" as const, op: "==" as const, value: false }],
      success: [{ op: "set" as const, key: "n", value: "1" }],
      failure: [{ op: "set" as const, key: "n", value: "overwritten" }],
    };
    const first = await storeOn(c, "n1").txn(casIncrement, origin);
    const retry = await storeOn(c, "n2").txn(casIncrement, origin);
    expect(retry).toEqual(first);
    expect(first.succeeded).toBe(true);
    expect(text(await storeOn(c, "n3").get("n"))).toBe("1");
  });
});

describe("the dstore state machine and transaction entries", () => {
  const txnEntry = (index: number, body: Uint8Array) => ({
    term: 1,
    index,
    kind: EntryKind.Normal,
    timeMs: 1_000,
    data: encodeCommand({
      op: Op.Txn,
      key: "",
      value: body,
      expireInMs: 0,
      deleteInMs: 0,
      origin: undefined,
    }),
  });

  test("a transaction entry that does not decode is skipped whole on every member", () => {
    const machine = new DStoreStateMachine();
    const body = encodeTxn({
      compare: [],
      success: [
        { op: "set", key: "a", value: bytes("1") },
        { op: "set", key: "b", value: bytes("2") },
      ],
      failure: [],
    });
    machine.apply(txnEntry(1, body.subarray(0, body.length - 1)));
    expect(machine.db.get("a", 1_000)).toBeUndefined();
    machine.apply(txnEntry(2, body));
    expect(machine.db.getEntry("a", 1_000)).toMatchObject({ modRevision: 2 });
    expect(machine.db.getEntry("b", 1_000)).toMatchObject({ modRevision: 2 });
  });
});

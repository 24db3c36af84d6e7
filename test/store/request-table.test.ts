/**
 * The replicated state machine's request table (retry dedup): every request id is
 * remembered for at least the retention, in log time, whatever the load; memory is
 * bounded in bytes, and at the bound new ids are refused (not silently forgotten).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { clientOptions } from "../../src/config/schema.ts";
import { DkvError } from "../../src/errors.ts";
import type { Entry } from "../../src/raft/core/types.ts";
import {
  CLIENT_ID_BYTES,
  type Command,
  decodeClaim,
  decodeErrorResult,
  encodeCommand,
  Op,
  type RequestOrigin,
} from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import {
  CLIENT_DEADLINE_DEFAULT_MAX_MS,
  DEDUP_RETENTION_MIN_MS,
  defaultDedupOptions,
  REMEMBERED_OVERHEAD_BYTES,
  resolveDedupOptions,
} from "../../src/store/replicated/request-table.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";

const utf8 = new TextEncoder();

function origin(client: number, requestId: number): RequestOrigin {
  return { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(client), requestId };
}

function cmd(op: Op, key: string, from: RequestOrigin | undefined, value = "v"): Command {
  return { op, key, value: utf8.encode(value), expireInMs: 0, deleteInMs: 0, origin: from };
}

/** Applies commands to a machine as consecutive log entries stamped with the given log time. */
class Log {
  index = 0;
  constructor(readonly machine: DStoreStateMachine) {}
  apply(command: Command, timeMs: number): Uint8Array {
    const entry: Entry = { index: ++this.index, term: 1, kind: 0, timeMs, data: encodeCommand(command) };
    return this.machine.apply(entry);
  }
}

describe("a retry is recognised for the whole retention, whatever the load", () => {
  test("after more than 100 000 other writes within the retention, a retried claim returns its first answer", () => {
    const log = new Log(new DStoreStateMachine());
    const t0 = 1_000_000;
    const first = log.apply(cmd(Op.Claim, "lock", origin(1, 1)), t0);
    expect(decodeClaim(first)).toEqual({ written: true, revision: 1n });
    // 101 000 writes of other requests in 10.1 s of log time (~10 000 writes/s): more
    // than the old table's 100 000-entry cap, well within the retention.
    const writes = 101_000;
    for (let i = 0; i < writes; i++) log.apply(cmd(Op.Set, `k${i % 1000}`, origin(2, i + 1)), t0 + i / 10);
    log.apply(cmd(Op.Delete, "lock", undefined, ""), t0 + writes / 10);
    // The retry (its reply was lost) must not claim the now free key a second time.
    const retried = log.apply(cmd(Op.Claim, "lock", origin(1, 1)), t0 + writes / 10);
    expect(decodeClaim(retried)).toEqual({ written: true, revision: 1n });
    expect(log.machine.db.has("lock", t0 + writes / 10)).toBe(false);
  });

  test("an id is remembered until the log time passes the retention, then forgotten", () => {
    const retentionMs = DEDUP_RETENTION_MIN_MS;
    const log = new Log(new DStoreStateMachine({ retentionMs }));
    const first = log.apply(cmd(Op.Claim, "lock", origin(1, 1)), 0);
    log.apply(cmd(Op.Delete, "lock", undefined, ""), retentionMs);
    // At exactly the retention: still the first answer, nothing claimed.
    expect(log.apply(cmd(Op.Claim, "lock", origin(1, 1)), retentionMs)).toEqual(first);
    expect(log.machine.db.has("lock", retentionMs)).toBe(false);
    // Past it, in log time, the id is forgotten: the same request applies anew.
    const late = decodeClaim(log.apply(cmd(Op.Claim, "lock", origin(1, 1)), retentionMs + 1));
    expect(late).toEqual({ written: true, revision: BigInt(log.index) });
    expect(log.machine.dedupSize).toBe(1);
  });
});

describe("the byte bound", () => {
  const retentionMs = DEDUP_RETENTION_MIN_MS;
  const keyLength = `${"03".repeat(CLIENT_ID_BYTES)}/1`.length;
  /** Room for exactly `ids` remembered ids with boolean-sized results. */
  const boundFor = (ids: number) => ids * (REMEMBERED_OVERHEAD_BYTES + keyLength + 1) + 16;

  test("refuses writes with new ids, deterministically and changing nothing; ids are never forgotten early", () => {
    const machines = [
      new DStoreStateMachine({ retentionMs, bytesMax: boundFor(5) }),
      new DStoreStateMachine({ retentionMs, bytesMax: boundFor(5) }),
    ];
    const answers = machines.map((machine) => {
      const log = new Log(machine);
      const results: string[] = [];
      for (let i = 1; i <= 8; i++) {
        const result = log.apply(cmd(Op.SetEIfUnset, `k${i}`, origin(3, i)), 1000);
        results.push(decodeErrorResult(result)?.code ?? `written=${result[0]}`);
      }
      // Retries of remembered ids and writes without an id still go through.
      expect(log.apply(cmd(Op.SetEIfUnset, "k1", origin(3, 1)), 1000)).toEqual(new Uint8Array([1]));
      log.apply(cmd(Op.Set, "plain", undefined), 1000);
      expect(machine.db.has("plain", 1000)).toBe(true);
      // A refused write changed nothing.
      expect(machine.db.has("k6", 1000)).toBe(false);
      // Once the log time passes the retention, the old ids go and new ones fit again.
      const later = log.apply(cmd(Op.SetEIfUnset, "k6", origin(3, 6)), 1000 + retentionMs + 1);
      expect(later).toEqual(new Uint8Array([1]));
      expect(machine.dedupBytes).toBeLessThanOrEqual(boundFor(5));
      return results;
    });
    expect(answers[0]).toEqual([
      "written=1",
      "written=1",
      "written=1",
      "written=1",
      "written=1",
      "RESOURCE_EXHAUSTED",
      "RESOURCE_EXHAUSTED",
      "RESOURCE_EXHAUSTED",
    ]);
    expect(answers[1]).toEqual(answers[0]!);
  });

  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  test("a DStore caller gets RESOURCE_EXHAUSTED, outcome not-applied, with a message saying what to do", async () => {
    const c = await TestCluster.start({
      size: 1,
      groups: [5],
      stateMachine: () => new DStoreStateMachine({ retentionMs, bytesMax: boundFor(3) }),
    });
    cluster = c;
    const store = new DStore(c.host("n1"), 5, { timeoutMs: 3000 });
    let refusal: unknown;
    for (let i = 0; i < 10 && refusal === undefined; i++) {
      await store.set(`k${i}`, "v").catch((error: unknown) => {
        refusal = error;
      });
    }
    expect(DkvError.is(refusal, "RESOURCE_EXHAUSTED")).toBe(true);
    expect((refusal as DkvError).outcome).toBe("not-applied");
    expect((refusal as DkvError).message).toContain("request table is full");
    expect((refusal as DkvError).message).toContain("changed nothing");
  });
});

describe("the request table in snapshots", () => {
  test("a member restored from a snapshot recognises the same retries and holds the same table", async () => {
    const leader = new Log(new DStoreStateMachine());
    const first = leader.apply(cmd(Op.Claim, "lock", origin(1, 7)), 5000);
    for (let i = 0; i < 100; i++) leader.apply(cmd(Op.Set, `k${i}`, origin(2, i)), 5000 + i);
    leader.apply(cmd(Op.Delete, "lock", undefined, ""), 6000);
    const chunks: Uint8Array[] = [];
    for await (const chunk of leader.machine.snapshot()) chunks.push(chunk);
    const restored = new DStoreStateMachine();
    await restored.restore(Buffer.concat(chunks));
    expect(restored.dedupSize).toBe(leader.machine.dedupSize);
    expect(restored.dedupBytes).toBe(leader.machine.dedupBytes);
    const follower = new Log(restored);
    follower.index = leader.index;
    expect(follower.apply(cmd(Op.Claim, "lock", origin(1, 7)), 6000)).toEqual(first);
    expect(leader.apply(cmd(Op.Claim, "lock", origin(1, 7)), 6000)).toEqual(first);
  });
});

describe("dedup options", () => {
  test("the retention covers the longest default client deadline plus a retry pause", () => {
    const timeout = clientOptions(100, "timeout").find((option) => option.name === "timeout");
    expect(timeout?.default).toBeLessThanOrEqual(CLIENT_DEADLINE_DEFAULT_MAX_MS);
    expect(defaultDedupOptions.retentionMs).toBeGreaterThanOrEqual(DEDUP_RETENTION_MIN_MS);
    expect(() => resolveDedupOptions({ retentionMs: DEDUP_RETENTION_MIN_MS - 1 })).toThrow(DkvError);
    expect(() => resolveDedupOptions({ bytesMax: 0 })).toThrow(DkvError);
    expect(resolveDedupOptions({})).toEqual({ ...defaultDedupOptions });
  });
});

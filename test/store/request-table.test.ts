/**
 * The replicated state machine's request table (retry dedup): every request id is
 * remembered for at least the retention, in log time, whatever the load; memory is
 * bounded in bytes, and at the bound new ids are refused (not silently forgotten).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { CLI_REQUEST_TIMEOUT_MS_MAX, CLIENT_RETRY_DELAY_MS_MAX } from "../../src/config/defaults.ts";
import { clientOptions, type OptionSpec } from "../../src/config/schema.ts";
import { DkvError } from "../../src/errors.ts";
import type { Entry } from "../../src/raft/core/types.ts";
import { encodeRulesCommand } from "../../src/store/replicated/apply-rules.ts";
import {
  CLIENT_ID_BYTES,
  type Command,
  decodeClaim,
  decodeErrorResult,
  encodeCommand,
  encodeErrorResult,
  Op,
  type RequestOrigin,
} from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { RequestTable } from "../../src/store/replicated/request-table.ts";
import {
  DEDUP_RETENTION_MIN_MS,
  defaultDedupOptions,
  NEW_ID_RESERVE_BYTES,
  REMEMBERED_BLOCK_BYTES,
  REMEMBERED_CLIENT_BYTES,
  REMEMBERED_ERROR_BYTES,
  REMEMBERED_RUN_BYTES,
  resolveDedupOptions,
} from "../../src/store/replicated/request-table-options.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { seededRandom } from "../support/seeded-random.ts";

const utf8 = new TextEncoder();
const RESULT_VOID_FOR_TEST = new Uint8Array(0);

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
  /**
   * Room for exactly `ids` remembered ids of one client with boolean results, each in a
   * block of its own (32 apart), all at one log time: the last one is admitted with room
   * for its own block and run kept aside.
   */
  const boundFor = (ids: number) =>
    REMEMBERED_CLIENT_BYTES +
    (ids - 1) * REMEMBERED_BLOCK_BYTES +
    REMEMBERED_RUN_BYTES +
    NEW_ID_RESERVE_BYTES;

  test("refuses writes with new ids, deterministically and changing nothing; ids are never forgotten early", () => {
    const machines = [
      new DStoreStateMachine({ retentionMs, bytesMax: boundFor(5) }),
      new DStoreStateMachine({ retentionMs, bytesMax: boundFor(5) }),
    ];
    const answers = machines.map((machine) => {
      const log = new Log(machine);
      // The bound counts blocks under apply rules 2 (apply-rules.ts), raised by an entry.
      log.apply(cmd(Op.Rules, "", undefined, "\x02"), 1000);
      const results: string[] = [];
      for (let i = 1; i <= 8; i++) {
        const result = log.apply(cmd(Op.SetEIfUnset, `k${i}`, origin(3, 32 * i)), 1000);
        results.push(decodeErrorResult(result)?.code ?? `written=${result[0]}`);
      }
      // Retries of remembered ids and writes without an id still go through.
      expect(log.apply(cmd(Op.SetEIfUnset, "k1", origin(3, 32)), 1000)).toEqual(new Uint8Array([1]));
      log.apply(cmd(Op.Set, "plain", undefined), 1000);
      expect(machine.db.has("plain", 1000)).toBe(true);
      // A refused write changed nothing.
      expect(machine.db.has("k6", 1000)).toBe(false);
      // Once the log time passes the retention, the old ids go and new ones fit again.
      const later = log.apply(cmd(Op.SetEIfUnset, "k6", origin(3, 32 * 6)), 1000 + retentionMs + 1);
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
      // One id fits; the second needs a block and a run of its own kept aside: refused.
      stateMachine: () => new DStoreStateMachine({ retentionMs, bytesMax: boundFor(1) }),
    });
    cluster = c;
    await c.host("n1").propose(5, encodeRulesCommand(2));
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
    // What to do names a flag that exists (there is no flag for the byte bound).
    expect((refusal as DkvError).message).toContain("--dedup-retention");
    expect((refusal as DkvError).message).toContain("changed nothing");
    // It says what the table holds and the rate that sustains (one id in 31 s: 0 writes/s).
    expect((refusal as DkvError).message).toContain("1 request ids of 1 clients");
    expect((refusal as DkvError).message).toContain("about 0 writes/s sustained per shard at this mix");
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
  test("the retention covers the longest CLI client deadline plus a retry pause", () => {
    for (const flag of ["timeout", "request-timeout"] as const) {
      const timeout: OptionSpec | undefined = clientOptions(100, flag).find((option) => option.name === flag);
      expect(timeout?.max).toBe(CLI_REQUEST_TIMEOUT_MS_MAX);
      expect(timeout?.default).toBeLessThanOrEqual(CLI_REQUEST_TIMEOUT_MS_MAX);
    }
    expect(DEDUP_RETENTION_MIN_MS).toBeGreaterThanOrEqual(
      CLI_REQUEST_TIMEOUT_MS_MAX + CLIENT_RETRY_DELAY_MS_MAX,
    );
    expect(defaultDedupOptions.retentionMs).toBeGreaterThanOrEqual(DEDUP_RETENTION_MIN_MS);
    expect(() => resolveDedupOptions({ retentionMs: DEDUP_RETENTION_MIN_MS - 1 })).toThrow(DkvError);
    expect(() => resolveDedupOptions({ bytesMax: 0 })).toThrow(DkvError);
    expect(resolveDedupOptions({})).toEqual({ ...defaultDedupOptions });
  });
});

describe("the packed table against a plain model", () => {
  /** A deterministic pseudo-random stream, so a failure names its seed. */
  const random = seededRandom;
  const results = [
    new Uint8Array(0),
    new Uint8Array([0]),
    new Uint8Array([1]),
    new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    new Uint8Array([0xff, 3, 65, 66, 67, 33]),
  ];

  /** Request ids drawn at random: most ids are alone in their block. */
  const scattered = (next: () => number) => (_client: number) =>
    next() < 0.1 ? Number.MAX_SAFE_INTEGER - Math.floor(next() * 100) : Math.floor(next() * 5000);
  /**
   * Request ids as clients number them: each client counts up, mostly by one (a write
   * after a write), sometimes skipping (reads in between) or going back (a retry, or
   * ids reordered between members), sometimes near 2^32 and past it.
   */
  const counted = (next: () => number) => {
    const counters = new Map<number, number>();
    return (client: number) => {
      let id = counters.get(client) ?? (client % 7 === 6 ? 2 ** 32 - 40 : client * 1000);
      const draw = next();
      if (draw < 0.85) id += 1;
      else if (draw < 0.95) id += 1 + Math.floor(next() * 40);
      else id -= Math.floor(next() * 20);
      counters.set(client, id);
      return id;
    };
  };
  const modes = [
    ...[1, 2, 3, 4, 5].map((seed) => ({ seed, ids: scattered, name: "ids at random" })),
    ...[6, 7, 8, 9, 10].map((seed) => ({ seed, ids: counted, name: "ids counted up by each client" })),
  ];

  for (const { seed, ids, name } of modes) {
    test(`seed ${seed}, ${name}: the same answers as a Map, through growth, shrinking, forgetting and snapshots`, () => {
      const next = random(seed);
      const nextId = ids(next);
      const options = resolveDedupOptions({ retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 1 << 30 });
      let table = new RequestTable(options);
      const model = new Map<string, { result: Uint8Array; timeMs: number }>();
      const order: string[] = [];
      let timeMs = 0;
      const clients = 1 + Math.floor(next() * 40);
      let client = 0;
      let idsSeen = 0;
      let blocksSeen = 0;
      for (let step = 0; step < 30_000; step++) {
        // Bursts of writes, then long gaps: the ring grows past its minimum and shrinks again.
        timeMs += next() < 0.001 ? DEDUP_RETENTION_MIN_MS : Math.floor(next() * 3);
        // Runs of writes of one client, as a busy client's writes follow each other in the log.
        if (next() < 0.1) client = Math.floor(next() * clients);
        // Large request ids too: the hash splits them into two 32-bit halves.
        const requestId = nextId(client);
        const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(client);
        clientId[0] = 7;
        const key = `${client}/${requestId}`;
        table.forgetExpired(timeMs, 8);
        // The model forgets exactly what the table may: only ids older than the retention.
        while (
          order.length > 0 &&
          model.get(order[0]!)!.timeMs < timeMs - options.retentionMs &&
          table.size < model.size
        ) {
          model.delete(order.shift()!);
        }
        const seen = table.get(clientId, requestId);
        const expected = model.get(key);
        if (expected !== undefined) expect(seen).toEqual(expected.result);
        else {
          // Forgotten by the table only if the model would have forgotten it too.
          expect(seen).toBeUndefined();
          // Mostly void (a set's), as a run of writes of one kind shares a result kind.
          const result = next() < 0.8 ? results[0]! : results[Math.floor(next() * results.length)]!;
          table.remember(clientId, requestId, result, timeMs);
          model.set(key, { result, timeMs });
          order.push(key);
        }
        expect(table.size).toBe(model.size);
        idsSeen += table.size;
        blocksSeen += table.blocks;
        if (step % 5000 === 4999) {
          const copy = RequestTable.decode(table.encode(), options, false);
          expect(copy.size).toBe(table.size);
          expect(copy.bytes).toBe(table.bytes);
          expect(copy.encode()).toEqual(table.encode());
          table = copy;
        }
      }
      // Ids counted up share blocks (the checks above cover the sharing).
      if (ids === counted) expect(blocksSeen).toBeLessThan(idsSeen * 0.6);
      for (const key of order) {
        const [client, requestId] = key.split("/").map(Number) as [number, number];
        const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(client);
        clientId[0] = 7;
        expect(table.get(clientId, requestId)).toEqual(model.get(key)!.result);
      }
      // Everything forgotten: the byte estimate returns to zero (no client or result leaks).
      table.forgetExpired(timeMs + options.retentionMs + 1, Number.POSITIVE_INFINITY);
      expect(table.size).toBe(0);
      expect(table.bytes).toBe(0);
    });
  }

  test("a snapshot section of the first format (ids as strings) restores the same table", () => {
    const options = resolveDedupOptions({});
    const table = new RequestTable(options);
    const parts: Uint8Array[] = [];
    const ids = [
      { client: 1, requestId: 7, result: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]), timeMs: 100 },
      { client: 2, requestId: 2 ** 40, result: new Uint8Array(0), timeMs: 101 },
      { client: 1, requestId: 8, result: new Uint8Array([0]), timeMs: 102 },
    ];
    for (const { client, requestId, result, timeMs } of ids) {
      const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(client);
      table.remember(clientId, requestId, result, timeMs);
      const key = utf8.encode(`${Buffer.from(clientId).toString("hex")}/${requestId}`);
      const part = new Uint8Array(2 + key.byteLength + 12 + result.byteLength);
      const view = new DataView(part.buffer);
      view.setUint16(0, key.byteLength, true);
      part.set(key, 2);
      view.setFloat64(2 + key.byteLength, timeMs, true);
      view.setUint32(2 + key.byteLength + 8, result.byteLength, true);
      part.set(result, 2 + key.byteLength + 12);
      parts.push(part);
    }
    const legacy = RequestTable.decode(Buffer.concat(parts), options, true);
    expect(legacy.encode()).toEqual(table.encode());
    expect(legacy.bytes).toBe(table.bytes);
    expect(legacy.get(new Uint8Array(CLIENT_ID_BYTES).fill(1), 7)).toEqual(ids[0]!.result);
    expect(() => RequestTable.decode(Buffer.concat(parts).subarray(0, 20), options, true)).toThrow(DkvError);
    expect(() => RequestTable.decode(table.encode().subarray(0, 30), options, false)).toThrow(DkvError);
  });
});

describe("a block's mask (an int32: bit 31 is negative)", () => {
  test("a whole 32-id block (bit 31 of its mask set) is held, encoded and forgotten id by id", () => {
    const options = resolveDedupOptions({ retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 1 << 30 });
    const table = new RequestTable(options);
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(4);
    // Ids 32..95: two full blocks, each with the id at bit 31 (63, 95).
    for (let id = 32; id < 96; id++) table.remember(clientId, id, RESULT_VOID_FOR_TEST, 1000 + id);
    expect(table.blocks).toBe(2);
    expect(table.size).toBe(64);
    for (let id = 32; id < 96; id++) expect(table.get(clientId, id)).toEqual(RESULT_VOID_FOR_TEST);
    expect(table.get(clientId, 31)).toBeUndefined();
    expect(table.get(clientId, 96)).toBeUndefined();
    const copy = RequestTable.decode(table.encode(), options, false);
    expect(copy.encode()).toEqual(table.encode());
    for (let id = 32; id < 96; id++) expect(copy.get(clientId, id)).toEqual(RESULT_VOID_FOR_TEST);
    // Oldest first, one id per log millisecond: the block goes once its bit 31 (id 63) does.
    for (let id = 32; id < 96; id++) {
      table.forgetExpired(1000 + id + options.retentionMs + 1, Number.POSITIVE_INFINITY);
      expect(table.get(clientId, id)).toBeUndefined();
      if (id + 1 < 96) expect(table.get(clientId, id + 1)).toEqual(RESULT_VOID_FOR_TEST);
      expect(table.blocks).toBe(id < 63 ? 2 : id < 95 ? 1 : 0);
    }
    // A new id after the block ended starts a new one.
    table.remember(clientId, 96, RESULT_VOID_FOR_TEST, 1000 + 96 + options.retentionMs);
    expect(table.blocks).toBe(1);
  });
});

describe("the packed table's size", () => {
  test("a million ids of one client at ~30 per log millisecond take under 2 B each (one record per id: 17 B)", () => {
    const table = new RequestTable(resolveDedupOptions({ bytesMax: 1 << 30 }));
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(9);
    const ids = 1_000_000;
    for (let i = 0; i < ids; i++)
      table.remember(clientId, i + 1, RESULT_VOID_FOR_TEST, 1000 + Math.floor(i / 30));
    expect(table.size).toBe(ids);
    // Mostly the time runs (12 B per log millisecond); the blocks take ~0.7 B per id.
    expect(table.allocatedBytes / ids).toBeLessThan(2);
    // The estimate the bound counts stays above what is allocated.
    expect(table.bytes).toBeGreaterThan(table.allocatedBytes);
    expect(table.get(clientId, 1)).toEqual(RESULT_VOID_FOR_TEST);
    expect(table.get(clientId, ids)).toEqual(RESULT_VOID_FOR_TEST);
    expect(table.get(clientId, ids + 1)).toBeUndefined();
  });

  test("ids of two clients taking turns in the log, each counting up, take under 22 B each", () => {
    const table = new RequestTable(resolveDedupOptions({ bytesMax: 1 << 30 }));
    const clients = [new Uint8Array(CLIENT_ID_BYTES).fill(1), new Uint8Array(CLIENT_ID_BYTES).fill(2)];
    // As many as the ring's capacity (a power of two): ~21 B each, runs of ~30 ids aside.
    const ids = 2 ** 19;
    for (let i = 0; i < ids; i++)
      table.remember(clients[i % 2]!, (i >> 1) + 1, RESULT_VOID_FOR_TEST, 1000 + Math.floor(i / 30));
    expect(table.blocks).toBe(ids);
    expect(table.allocatedBytes / ids).toBeLessThan(22);
    expect(table.bytes).toBeGreaterThan(table.allocatedBytes);
  });

  test("a client's reads between its writes (every other id) still share blocks", () => {
    const table = new RequestTable(resolveDedupOptions({}));
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(5);
    for (let i = 0; i < 6400; i++) table.remember(clientId, 2 * i + 1, RESULT_VOID_FOR_TEST, 7);
    expect(table.blocks).toBe(400);
    for (let i = 0; i < 6400; i++) {
      expect(table.get(clientId, 2 * i + 1)).toEqual(RESULT_VOID_FOR_TEST);
      expect(table.get(clientId, 2 * i + 2)).toBeUndefined();
    }
  });

  test("request ids that share their low 32 bits, negative ones too, are told apart", () => {
    const table = new RequestTable(resolveDedupOptions({}));
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(4);
    const ids = [5, 5 + 2 ** 32, 5 + 2 ** 40, 5 - 2 ** 32, -(2 ** 32 - 5)];
    table.remember(clientId, ids[0]!, new Uint8Array([1]), 10);
    expect(table.get(clientId, ids[0]!)).toEqual(new Uint8Array([1]));
    for (const other of ids.slice(1)) expect(table.get(clientId, other)).toBeUndefined();
    table.remember(clientId, ids[1]!, new Uint8Array([0]), 10);
    table.remember(clientId, ids[3]!, new Uint8Array([9, 9]), 11);
    expect(table.get(clientId, ids[1]!)).toEqual(new Uint8Array([0]));
    expect(table.get(clientId, ids[3]!)).toEqual(new Uint8Array([9, 9]));
    expect(table.get(clientId, ids[2]!)).toBeUndefined();
    const copy = RequestTable.decode(table.encode(), table.options, false);
    for (const id of ids) expect(copy.get(clientId, id)).toEqual(table.get(clientId, id));
    expect(copy.bytes).toBe(table.bytes);
    table.forgetExpired(11 + table.options.retentionMs + 1, Number.POSITIVE_INFINITY);
    expect(table.size).toBe(0);
    expect(table.bytes).toBe(0);
  });
});

describe("snapshot sections of earlier versions", () => {
  test("format 2 (an f64 time per id) restores the same table as this version's", () => {
    const options = resolveDedupOptions({});
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(6);
    const ids = [
      { requestId: 1, timeMs: 100, code: 0, result: new Uint8Array(0) },
      { requestId: 2 ** 40 + 3, timeMs: 100, code: 2, result: new Uint8Array([1]) },
      { requestId: 3, timeMs: 105, code: 3, result: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]) },
    ];
    const table = new RequestTable(options);
    const parts: Uint8Array[] = [
      new Uint8Array([2, 1, 0, 0, 0]),
      clientId,
      new Uint8Array([ids.length, 0, 0, 0]),
    ];
    for (const { requestId, timeMs, code, result } of ids) {
      table.remember(clientId, requestId, result, timeMs);
      const part = new Uint8Array(21 + (code === 3 ? 4 + result.byteLength : 0));
      const view = new DataView(part.buffer);
      view.setUint32(0, 0, true);
      view.setFloat64(4, requestId, true);
      view.setFloat64(12, timeMs, true);
      part[20] = code;
      if (code === 3) {
        view.setUint32(21, result.byteLength, true);
        part.set(result, 25);
      }
      parts.push(part);
    }
    const old = RequestTable.decode(Buffer.concat(parts), options, false);
    expect(old.encode()).toEqual(table.encode());
    expect(old.bytes).toBe(table.bytes);
    for (const { requestId, result } of ids) expect(old.get(clientId, requestId)).toEqual(result);
    // Forgotten by the same log times.
    old.forgetExpired(100 + options.retentionMs + 1, Number.POSITIVE_INFINITY);
    expect(old.size).toBe(1);
    expect(() => RequestTable.decode(Buffer.concat(parts).subarray(0, 40), options, false)).toThrow(DkvError);
  });

  test("format 3 (one record per id, time runs) restores the same table as this version's", () => {
    const options = resolveDedupOptions({});
    const clients = [new Uint8Array(CLIENT_ID_BYTES).fill(6), new Uint8Array(CLIENT_ID_BYTES).fill(8)];
    const ids = [
      { client: 0, requestId: 31, code: 0, result: new Uint8Array(0) },
      { client: 0, requestId: 32, code: 0, result: new Uint8Array(0) },
      { client: 0, requestId: 33, code: 0, result: new Uint8Array(0) },
      { client: 1, requestId: 34, code: 0, result: new Uint8Array(0) },
      { client: 0, requestId: 2 ** 40 + 35, code: 2 | 4, result: new Uint8Array([1]) },
      { client: 0, requestId: 36, code: 3, result: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]) },
      { client: 0, requestId: 37, code: 1, result: new Uint8Array([0]) },
    ];
    // Runs: three ids at 100, four at 105.
    const runs = [
      [100, 3],
      [105, 4],
    ] as const;
    const header = new Uint8Array(1 + 4 + 2 * CLIENT_ID_BYTES + 4 + runs.length * 12 + 4);
    const headerView = new DataView(header.buffer);
    header[0] = 3;
    headerView.setUint32(1, clients.length, true);
    header.set(clients[0]!, 5);
    header.set(clients[1]!, 5 + CLIENT_ID_BYTES);
    let at = 5 + 2 * CLIENT_ID_BYTES;
    headerView.setUint32(at, runs.length, true);
    at += 4;
    for (const [timeMs, count] of runs) {
      headerView.setFloat64(at, timeMs, true);
      headerView.setUint32(at + 8, count, true);
      at += 12;
    }
    headerView.setUint32(at, ids.length, true);
    const table = new RequestTable(options);
    const parts: Uint8Array[] = [header];
    ids.forEach(({ client, requestId, code, result }, i) => {
      table.remember(clients[client]!, requestId, result, i < 3 ? 100 : 105);
      const high = (code & 4) !== 0;
      const other = (code & 3) === 3;
      const part = new Uint8Array(9 + (high ? 8 : 0) + (other ? 4 + result.byteLength : 0));
      const view = new DataView(part.buffer);
      view.setUint32(0, client, true);
      view.setUint32(4, requestId >>> 0, true);
      part[8] = code;
      if (high) view.setFloat64(9, requestId, true);
      if (other) {
        view.setUint32(9, result.byteLength, true);
        part.set(result, 13);
      }
      parts.push(part);
    });
    const section = Buffer.concat(parts);
    const old = RequestTable.decode(section, options, false);
    expect(old.encode()).toEqual(table.encode());
    expect(old.bytes).toBe(table.bytes);
    expect(old.size).toBe(ids.length);
    for (const { client, requestId, result } of ids)
      expect(old.get(clients[client]!, requestId)).toEqual(result);
    expect(old.get(clients[1]!, 33)).toBeUndefined();
    old.forgetExpired(100 + options.retentionMs + 1, Number.POSITIVE_INFINITY);
    expect(old.size).toBe(4);
    expect(old.get(clients[0]!, 33)).toBeUndefined();
    expect(old.get(clients[1]!, 34)).toEqual(new Uint8Array(0));
    expect(() => RequestTable.decode(section.subarray(0, section.byteLength - 3), options, false)).toThrow(
      DkvError,
    );
  });

  test("this version's section (format 4, one record per block) is smaller than one record per id", () => {
    const table = new RequestTable(resolveDedupOptions({}));
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(3);
    for (let i = 0; i < 32_000; i++) table.remember(clientId, i, RESULT_VOID_FOR_TEST, 1000 + (i >> 5));
    const section = table.encode();
    expect(section[0]).toBe(4);
    // 1,000 runs of 12 B and 1,000 blocks of 13 B; format 3 took 9 B per id (288,000 B).
    expect(section.byteLength).toBeLessThan(26_000);
    const copy = RequestTable.decode(section, table.options, false);
    expect(copy.blocks).toBe(1000);
    expect(copy.encode()).toEqual(section);
    // A block with two ids where one id must be alone (a high id) is refused.
    const bad = new RequestTable(table.options);
    bad.remember(clientId, 2 ** 40, RESULT_VOID_FOR_TEST, 5);
    const badSection = bad.encode();
    const blockAt = 1 + 4 + CLIENT_ID_BYTES + 4 + 12 + 4;
    badSection[blockAt + 8] = 3;
    expect(() => RequestTable.decode(badSection, table.options, false)).toThrow(DkvError);
  });
});

/**
 * What the state machine does for a write with a request id (DStoreStateMachine.applyEntry):
 * forget a few expired ids, answer a remembered id, refuse a new one without room, else
 * remember it. "seen", "refused" or "remembered".
 */
function applyWrite(
  table: RequestTable,
  clientId: Uint8Array,
  requestId: number,
  result: Uint8Array,
  nowMs: number,
): string {
  // FORGET_PER_APPLY of state-machine.ts.
  table.forgetExpired(nowMs, 8);
  const seen = table.get(clientId, requestId);
  if (seen !== undefined) return `seen ${seen.join(",")}`;
  if (!table.hasRoomFor(clientId, nowMs)) return "refused";
  table.remember(clientId, requestId, result, nowMs);
  return "remembered";
}

describe("the bound counts blocks and time runs, not ids", () => {
  const writesPerMs = 170;

  test("one write-only client at 170 000 writes/s for 70 s of log time is never refused (32 B per id refused it after ~12 s)", () => {
    const table = new RequestTable(defaultDedupOptions);
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(11);
    const ids = 70_000 * writesPerMs;
    let refused = 0;
    let peakIds = 0;
    for (let i = 0; i < ids; i++) {
      const nowMs = 1_000 + Math.floor(i / writesPerMs);
      if (applyWrite(table, clientId, i + 1, RESULT_VOID_FOR_TEST, nowMs) !== "remembered") refused++;
      if (table.size > peakIds) peakIds = table.size;
    }
    expect(refused).toBe(0);
    // The last 60 s of ids, all held: at 32 B each they would take ~5 times the bound.
    expect(peakIds).toBeGreaterThanOrEqual(60_000 * writesPerMs);
    expect(peakIds * 32).toBeGreaterThan(4 * defaultDedupOptions.bytesMax);
    // 32 ids share a block (42 B) and a log millisecond's ids a run (24 B): ~1.5 B per id.
    expect(table.bytes / table.size).toBeLessThan(1.6);
    expect(table.allocatedBytes).toBeLessThanOrEqual(table.bytes);
    expect(table.get(clientId, ids)).toEqual(RESULT_VOID_FOR_TEST);
    expect(table.get(clientId, ids - 60_000 * writesPerMs)).toEqual(RESULT_VOID_FOR_TEST);
  });

  test("four clients with 50 writes in flight each, taking turns in the log in batches, are never refused at 170 000 writes/s", () => {
    const table = new RequestTable(defaultDedupOptions);
    const next = seededRandom(27);
    const clients = [1, 2, 3, 4].map((c) => new Uint8Array(CLIENT_ID_BYTES).fill(20 + c));
    const counters = [0, 0, 0, 0];
    const ids = 70_000 * writesPerMs;
    let refused = 0;
    for (let i = 0; i < ids; ) {
      // A batch: what one client's connection delivered at once (1 to 50 requests, in order).
      const c = Math.floor(next() * clients.length);
      const batch = 1 + Math.floor(next() * 50);
      for (let b = 0; b < batch && i < ids; b++, i++) {
        const nowMs = 1_000 + Math.floor(i / writesPerMs);
        const result = applyWrite(table, clients[c]!, ++counters[c]!, RESULT_VOID_FOR_TEST, nowMs);
        if (result !== "remembered") refused++;
      }
    }
    expect(refused).toBe(0);
    expect(table.size).toBeGreaterThanOrEqual(60_000 * writesPerMs);
    expect(table.bytes).toBeLessThan(defaultDedupOptions.bytesMax * 0.75);
  });

  test("ids of a thousand clients taking turns (each alone in its block) are refused at the bound, and the arrays never pass it", () => {
    const bytesMax = 4 * 1024 * 1024;
    const options = resolveDedupOptions({ bytesMax });
    const table = new RequestTable(options);
    const clients = Array.from({ length: 1000 }, (_, c) => {
      const id = new Uint8Array(CLIENT_ID_BYTES);
      new DataView(id.buffer).setUint32(0, c + 1);
      return id;
    });
    let firstRefusalAt = -1;
    let refused = 0;
    let allocatedMax = 0;
    const ids = 2_000 * writesPerMs;
    for (let i = 0; i < ids; i++) {
      const nowMs = 1_000 + Math.floor(i / writesPerMs);
      const c = i % clients.length;
      const requestId = Math.floor(i / clients.length) + 1;
      if (applyWrite(table, clients[c]!, requestId, RESULT_VOID_FOR_TEST, nowMs) === "refused") {
        refused++;
        if (firstRefusalAt < 0) firstRefusalAt = table.size;
      }
      allocatedMax = Math.max(allocatedMax, table.allocatedBytes);
      expect(table.bytes).toBeLessThanOrEqual(bytesMax);
    }
    // Refused once the blocks fill the bound (at 32 B per id: after ~131 000 ids).
    expect(table.blocks).toBe(table.size);
    expect(firstRefusalAt).toBeGreaterThan(0.95 * (bytesMax / REMEMBERED_BLOCK_BYTES));
    expect(firstRefusalAt).toBeLessThan(bytesMax / REMEMBERED_BLOCK_BYTES);
    expect(refused).toBe(ids - table.size);
    // The ring of blocks and its index grow by doubling: never past the bound.
    expect(allocatedMax).toBeLessThanOrEqual(bytesMax);
    // Past the retention the old ids go and new ones fit again.
    const laterMs = 1_000 + options.retentionMs + 2_001;
    expect(applyWrite(table, clients[0]!, 10 ** 9, RESULT_VOID_FOR_TEST, laterMs)).toBe("remembered");
    table.forgetExpired(laterMs, Number.POSITIVE_INFINITY);
    expect(table.size).toBe(1);
  });
});

describe("every member decides alike", () => {
  const results = [
    new Uint8Array(0),
    new Uint8Array([0]),
    new Uint8Array([1]),
    new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]),
  ];
  for (const seed of [31, 32, 33, 34, 35, 36, 37, 38]) {
    test(`seed ${seed}: a table restored from snapshots midway agrees with one that never was, on every decision, over clients taking turns`, () => {
      const next = seededRandom(seed);
      const clients = 1 + Math.floor(next() * 12);
      // Small enough to be reached often, large enough for every client's entry.
      const options = resolveDedupOptions({
        retentionMs: DEDUP_RETENTION_MIN_MS,
        bytesMax: 2_000 + clients * REMEMBERED_CLIENT_BYTES + Math.floor(next() * 30_000),
      });
      const live = new RequestTable(options);
      let restored = new RequestTable(options);
      // Some clients count past 2^32 (their ids' high bits go to a side map).
      const counters = Array.from({ length: clients }, (_, c) => (c % 5 === 4 ? 2 ** 32 - 50 : c * 10_000));
      const issued: number[][] = counters.map(() => []);
      let timeMs = 0;
      let client = 0;
      const seenDecisions = new Map<string, number>();
      let restores = 0;
      for (let step = 0; step < 20_000; step++) {
        // Log time: mostly the same or the next milliseconds, sometimes a jump (ids expire).
        const pace = next();
        if (pace >= 0.5) timeMs += pace < 0.995 ? 1 + Math.floor(next() * 3) : Math.floor(next() * 20_000);
        // Clients take turns in the log in batches of random length.
        if (next() < 0.3) client = Math.floor(next() * clients);
        const draw = next();
        let requestId: number;
        const mine = issued[client]!;
        if (draw < 0.05 && mine.length > 0) {
          // A retry: of a remembered id (the first answer), or of a refused or forgotten one.
          requestId = mine[Math.floor(next() * mine.length)]!;
        } else {
          counters[client]! += draw < 0.9 ? 1 : 1 + Math.floor(next() * 40);
          requestId = counters[client]!;
          mine.push(requestId);
          if (mine.length > 64) mine.shift();
        }
        const result = next() < 0.85 ? results[0]! : results[Math.floor(next() * results.length)]!;
        const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(client + 1);
        const decided = applyWrite(live, clientId, requestId, result, timeMs);
        expect(applyWrite(restored, clientId, requestId, result, timeMs)).toBe(decided);
        const kind = decided.startsWith("seen") ? "seen" : decided;
        seenDecisions.set(kind, (seenDecisions.get(kind) ?? 0) + 1);
        expect(restored.bytes).toBe(live.bytes);
        expect(restored.size).toBe(live.size);
        expect(restored.blocks).toBe(live.blocks);
        expect(live.bytes).toBeLessThanOrEqual(options.bytesMax);
        // A member restored from a snapshot: of its own table or of the other member's.
        if (next() < 0.003) {
          restored = RequestTable.decode((next() < 0.5 ? live : restored).encode(), options, false);
          restores++;
        }
      }
      // Every kind of decision happened, around many restores.
      expect(seenDecisions.get("seen")).toBeGreaterThan(0);
      expect(seenDecisions.get("refused")).toBeGreaterThan(0);
      expect(seenDecisions.get("remembered")).toBeGreaterThan(1000);
      expect(restores).toBeGreaterThan(20);
      expect(restored.encode()).toEqual(live.encode());
    });
  }
});

describe("every member decides alike, through the state machine", () => {
  for (const seed of [41, 42, 43]) {
    test(`seed ${seed}: a member restored from another's snapshot midway answers every later entry alike`, async () => {
      const next = seededRandom(seed);
      const dedup = { retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 6_000 + Math.floor(next() * 6_000) };
      const leader = new Log(new DStoreStateMachine(dedup));
      let follower = new Log(new DStoreStateMachine(dedup));
      const clients = 2 + Math.floor(next() * 6);
      const counters = Array.from({ length: clients }, (_, c) => c * 1_000);
      const ops = [Op.Set, Op.Set, Op.Set, Op.SetEIfUnset, Op.Claim, Op.Delete] as const;
      let timeMs = 1_000;
      let client = 0;
      let refused = 0;
      let restores = 0;
      for (let step = 0; step < 3_000; step++) {
        if (next() < 0.5) timeMs += next() < 0.99 ? 1 : Math.floor(next() * 20_000);
        if (next() < 0.4) client = Math.floor(next() * clients);
        // Mostly a new id, sometimes a retry of a recent one.
        if (next() < 0.9) counters[client]! += next() < 0.9 ? 1 : 2 + Math.floor(next() * 40);
        const requestId = counters[client]! - (next() < 0.1 ? Math.floor(next() * 5) : 0);
        const op = ops[Math.floor(next() * ops.length)]!;
        const command = cmd(op, `k${Math.floor(next() * 50)}`, origin(client + 1, requestId), `v${step}`);
        const answer = leader.apply(command, timeMs);
        expect(follower.apply(command, timeMs)).toEqual(answer);
        if (decodeErrorResult(answer)?.code === "RESOURCE_EXHAUSTED") refused++;
        expect(follower.machine.dedupBytes).toBe(leader.machine.dedupBytes);
        if (next() < 0.01) {
          // The follower falls behind and installs the leader's snapshot at this index.
          const chunks: Uint8Array[] = [];
          for await (const chunk of leader.machine.snapshot()) chunks.push(chunk);
          const restored = new DStoreStateMachine(dedup);
          await restored.restore(Buffer.concat(chunks));
          follower = new Log(restored);
          follower.index = leader.index;
          restores++;
        }
      }
      expect(refused).toBeGreaterThan(0);
      expect(restores).toBeGreaterThan(5);
      expect(follower.machine.dedupSize).toBe(leader.machine.dedupSize);
    });
  }
});

describe("members of two releases that word a refusal differently (apply rules 3)", () => {
  // The same refusal (same code) as two releases may word it: one short, one long.
  const terse = encodeErrorResult(new DkvError("TOO_LARGE", "value too large"));
  const wordy = encodeErrorResult(
    new DkvError(
      "TOO_LARGE",
      `the value is larger than this shard takes: ${"é".repeat(400)}. Send a smaller one`,
    ),
  );

  /** Two tables fed the same log, one remembering `terse` and the other `wordy` for its refusals; the first step they decide apart, or -1. */
  function firstDisagreement(rules: 2 | 3, seed: number): number {
    const next = seededRandom(seed);
    const options = resolveDedupOptions({ retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 20_000 });
    const a = new RequestTable(options);
    const b = new RequestTable(options);
    a.setRules(rules);
    b.setRules(rules);
    let timeMs = 0;
    for (let step = 0; step < 5_000; step++) {
      if (next() < 0.3) timeMs += 1 + Math.floor(next() * 50);
      const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(1 + Math.floor(next() * 40));
      const requestId = 1 + Math.floor(next() * 1_000_000);
      const refusal = next() < 0.3;
      const decidedA = applyWrite(a, clientId, requestId, refusal ? terse : RESULT_VOID_FOR_TEST, timeMs);
      const decidedB = applyWrite(b, clientId, requestId, refusal ? wordy : RESULT_VOID_FOR_TEST, timeMs);
      const seenAlike = decidedA.startsWith("seen") && decidedB.startsWith("seen");
      if (!seenAlike && decidedA !== decidedB) return step;
      if (a.bytes !== b.bytes) return step;
    }
    return -1;
  }

  test("under rules 3 they count and decide alike at the bound; under rules 2 the text's length decided", () => {
    for (const seed of [51, 52, 53]) {
      expect(firstDisagreement(3, seed)).toBe(-1);
      expect(firstDisagreement(2, seed)).toBeGreaterThanOrEqual(0);
    }
  });

  test("a remembered refusal keeps its code and at most REMEMBERED_ERROR_BYTES, cut at a character boundary", () => {
    const table = new RequestTable(defaultDedupOptions);
    const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(7);
    table.remember(clientId, 1, wordy, 1_000);
    table.remember(clientId, 2, terse, 1_000);
    const kept = table.get(clientId, 1)!;
    expect(wordy.byteLength).toBeGreaterThan(REMEMBERED_ERROR_BYTES);
    expect(kept.byteLength).toBeLessThanOrEqual(REMEMBERED_ERROR_BYTES);
    expect(kept.byteLength).toBeGreaterThan(REMEMBERED_ERROR_BYTES - 2);
    const error = decodeErrorResult(kept)!;
    expect(error.code).toBe("TOO_LARGE");
    expect(error.message).not.toContain("\ufffd");
    expect(decodeErrorResult(wordy)!.message.startsWith(error.message)).toBe(true);
    // A short one is kept whole; and both survive a snapshot as kept.
    expect(table.get(clientId, 2)).toEqual(terse);
    const restored = RequestTable.decode(table.encode(), table.options, false);
    expect(restored.get(clientId, 1)).toEqual(kept);
    expect(restored.encode()).toEqual(table.encode());
    // Under rules 2 the whole text is kept (and counted), as that release did.
    const older = new RequestTable(defaultDedupOptions);
    older.setRules(2);
    older.remember(clientId, 1, wordy, 1_000);
    expect(older.get(clientId, 1)).toEqual(wordy);
  });
});

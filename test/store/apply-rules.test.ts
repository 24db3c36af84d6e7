/**
 * The apply rules in force are state in the log (apply-rules.ts): under rules 1 a replica
 * of this release decides what the release before them (dc8206c) decides, entry by entry;
 * an Op.Rules entry switches every replica at its index; snapshots carry the rules.
 */
import { describe, expect, test } from "bun:test";
import type { Entry } from "../../src/raft/core/types.ts";
import { APPLY_RULES_VERSION, encodeRulesCommand } from "../../src/store/replicated/apply-rules.ts";
import {
  CLIENT_ID_BYTES,
  type Command,
  decodeErrorResult,
  encodeCommand,
  Op,
} from "../../src/store/replicated/command.ts";
import { RequestTable } from "../../src/store/replicated/request-table.ts";
import {
  DEDUP_RETENTION_MIN_MS,
  REMEMBERED_CLIENT_BYTES,
  resolveDedupOptions,
} from "../../src/store/replicated/request-table-options.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { RequestTable as ReleaseBeforeTable } from "./fixtures/request-table-dc8206c.ts";

/** What the state machine does with a write's id (its applyEntry): "seen", "refused" or "remembered". */
interface Table {
  forgetExpired(nowMs: number, countMax: number): void;
  get(clientId: Uint8Array, requestId: number): Uint8Array | undefined;
  hasRoomFor(clientId: Uint8Array, nowMs: number): boolean;
  remember(clientId: Uint8Array, requestId: number, result: Uint8Array, timeMs: number): void;
  readonly bytes: number;
  readonly size: number;
}

function applyWrite(
  table: Table,
  clientId: Uint8Array,
  requestId: number,
  result: Uint8Array,
  nowMs: number,
) {
  table.forgetExpired(nowMs, 8);
  const seen = table.get(clientId, requestId);
  if (seen !== undefined) return `seen ${seen.join(",")}`;
  if (!table.hasRoomFor(clientId, nowMs)) return "refused";
  table.remember(clientId, requestId, result, nowMs);
  return "remembered";
}

const results = [
  new Uint8Array(0),
  new Uint8Array([0]),
  new Uint8Array([1]),
  new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]),
];

/** A seeded stream of writes: clients taking turns in batches, ids counted up / skipping / retried, time jumps. */
function writes(seed: number, clients: number) {
  const next = seededRandom(seed);
  const counters = Array.from({ length: clients }, (_, c) => (c % 5 === 4 ? 2 ** 32 - 50 : c * 10_000));
  const issued: number[][] = counters.map(() => []);
  let timeMs = 0;
  let client = 0;
  return () => {
    const pace = next();
    if (pace >= 0.5) timeMs += pace < 0.995 ? 1 + Math.floor(next() * 3) : Math.floor(next() * 20_000);
    if (next() < 0.3) client = Math.floor(next() * clients);
    const mine = issued[client]!;
    let requestId: number;
    const draw = next();
    if (draw < 0.05 && mine.length > 0) requestId = mine[Math.floor(next() * mine.length)]!;
    else {
      counters[client]! += draw < 0.9 ? 1 : 1 + Math.floor(next() * 40);
      requestId = counters[client]!;
      mine.push(requestId);
      if (mine.length > 64) mine.shift();
    }
    const result = next() < 0.85 ? results[0]! : results[Math.floor(next() * results.length)]!;
    return { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(client + 1), requestId, result, timeMs };
  };
}

describe("rules 1: this release's table decides as the release before's", () => {
  for (const seed of [51, 52, 53, 54, 55, 56]) {
    test(`seed ${seed}: every decision and byte count equal to dc8206c's table, where rule 2 would decide otherwise`, () => {
      const clients = 1 + (seed % 12);
      const options = resolveDedupOptions({
        retentionMs: DEDUP_RETENTION_MIN_MS,
        bytesMax: 4_000 + clients * REMEMBERED_CLIENT_BYTES + ((seed * 7919) % 20_000),
      });
      const before = new ReleaseBeforeTable(options);
      const rule1 = new RequestTable(options);
      rule1.setRules(1);
      const rule2 = new RequestTable(options);
      const next = writes(seed, clients);
      const counts = new Map<string, number>();
      let rule2Differs = 0;
      for (let step = 0; step < 20_000; step++) {
        const { clientId, requestId, result, timeMs } = next();
        const decided = applyWrite(before, clientId, requestId, result, timeMs);
        expect(applyWrite(rule1, clientId, requestId, result, timeMs)).toBe(decided);
        expect(rule1.bytes).toBe(before.bytes);
        expect(rule1.size).toBe(before.size);
        if (applyWrite(rule2, clientId, requestId, result, timeMs) !== decided) rule2Differs++;
        const kind = decided.startsWith("seen") ? "seen" : decided;
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
        // A member restored from a snapshot (under rules 1, as the state machine sets them).
        if (step % 997 === 0) {
          const restored = RequestTable.decode(rule1.encode(), options, false);
          restored.setRules(1);
          expect(restored.bytes).toBe(rule1.bytes);
        }
      }
      expect(counts.get("refused")).toBeGreaterThan(100);
      expect(counts.get("remembered")).toBeGreaterThan(1000);
      // The two rules really differ on this stream: a member deciding by rule 2 would diverge.
      expect(rule2Differs).toBeGreaterThan(0);
      expect(rule1.encode()).toEqual(before.encode());
    });
  }
});

const utf8 = new TextEncoder();

class Log {
  index = 0;
  constructor(readonly machine: DStoreStateMachine) {}
  apply(data: Uint8Array, timeMs: number): Uint8Array {
    const entry: Entry = { index: ++this.index, term: 1, kind: 0, timeMs, data };
    return this.machine.apply(entry);
  }
}

async function snapshotOf(machine: DStoreStateMachine): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of machine.snapshot()) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("replicas fed the same entries decide alike before and after the raising entry", () => {
  for (const seed of [61, 62, 63]) {
    test(`seed ${seed}: a replica that installs snapshots on either side of the raise answers every entry alike`, async () => {
      const next = seededRandom(seed);
      const dedup = { retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 6_000 + Math.floor(next() * 6_000) };
      const leader = new Log(new DStoreStateMachine(dedup));
      let follower = new Log(new DStoreStateMachine(dedup));
      const clients = 2 + Math.floor(next() * 6);
      const counters = Array.from({ length: clients }, (_, c) => c * 1_000);
      const ops = [Op.Set, Op.Set, Op.SetEIfUnset, Op.Claim, Op.Delete] as const;
      let timeMs = 1_000;
      let client = 0;
      const refused = [0, 0];
      let restores = 0;
      const raiseAt = 1_500;
      for (let step = 0; step < 3_000; step++) {
        if (step === raiseAt) {
          expect(leader.machine.rulesVersion).toBe(1);
          const raise = encodeRulesCommand(2);
          expect(leader.apply(raise, timeMs)).toEqual(follower.apply(raise, timeMs));
          expect(follower.machine.rulesVersion).toBe(2);
          // A second raise (a new leader proposing again) changes nothing.
          leader.apply(raise, timeMs);
          follower.apply(raise, timeMs);
        }
        if (next() < 0.5) timeMs += next() < 0.99 ? 1 : Math.floor(next() * 20_000);
        if (next() < 0.4) client = Math.floor(next() * clients);
        if (next() < 0.9) counters[client]! += next() < 0.9 ? 1 : 2 + Math.floor(next() * 40);
        const requestId = counters[client]! - (next() < 0.1 ? Math.floor(next() * 5) : 0);
        const command: Command = {
          op: ops[Math.floor(next() * ops.length)]!,
          key: `k${Math.floor(next() * 50)}`,
          value: utf8.encode(`v${step}`),
          expireInMs: 0,
          deleteInMs: 0,
          origin: { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(client + 1), requestId },
        };
        if (command.op === Op.Delete) command.value = new Uint8Array(0);
        const data = encodeCommand(command);
        const answer = leader.apply(data, timeMs);
        expect(follower.apply(data, timeMs)).toEqual(answer);
        if (decodeErrorResult(answer)?.code === "RESOURCE_EXHAUSTED") refused[step < raiseAt ? 0 : 1]!++;
        expect(follower.machine.dedupBytes).toBe(leader.machine.dedupBytes);
        expect(follower.machine.rulesVersion).toBe(leader.machine.rulesVersion);
        if (next() < 0.01) {
          const snapshot = await snapshotOf(leader.machine);
          // Rules 1 writes the format every release reads; rules 2 the one that carries them.
          expect(new TextDecoder().decode(snapshot.subarray(0, 8))).toBe(
            step < raiseAt ? "DKVDSM02" : "DKVDSM03",
          );
          const restored = new DStoreStateMachine(dedup);
          await restored.restore(snapshot);
          follower = new Log(restored);
          follower.index = leader.index;
          restores++;
        }
      }
      // Refusals on both sides of the raise: each rule's bound was reached.
      expect(refused[0]).toBeGreaterThan(0);
      expect(refused[1]).toBeGreaterThan(0);
      expect(restores).toBeGreaterThan(10);
      expect(follower.machine.dedupSize).toBe(leader.machine.dedupSize);
    });
  }

  test("the same table state decides differently under each rule: the switch happens at the raising entry's index", () => {
    // One client with ids 32 apart (a block each): rule 1 counts 32 B an id, rule 2 42 B a block.
    const dedup = { retentionMs: DEDUP_RETENTION_MIN_MS, bytesMax: 4_000 };
    const log = new Log(new DStoreStateMachine(dedup));
    const write = (i: number) =>
      log.apply(
        encodeCommand({
          op: Op.Set,
          key: `k${i}`,
          value: utf8.encode("v"),
          expireInMs: 0,
          deleteInMs: 0,
          origin: { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(9), requestId: 32 * i },
        }),
        1_000,
      );
    let i = 0;
    while (decodeErrorResult(write(++i)) === undefined) expect(i).toBeLessThan(1_000);
    const admittedUnderRule1 = i - 1;
    // (4000 - 160 - 256) / 32 = 112 ids under rule 1; (4000 - 160 - 322) / 42 + 1 = 84 under rule 2.
    expect(admittedUnderRule1).toBe(112);
    log.apply(encodeRulesCommand(2), 1_000);
    // Rule 2 counts this table at more than its bound: the same write is refused still, and
    // the table's count jumped at the entry, not before.
    expect(log.machine.dedupBytes).toBeGreaterThan(dedup.bytesMax);
    const fresh = new Log(new DStoreStateMachine(dedup));
    fresh.apply(encodeRulesCommand(2), 1_000);
    let j = 0;
    const freshWrite = (n: number) =>
      fresh.apply(
        encodeCommand({
          op: Op.Set,
          key: `k${n}`,
          value: utf8.encode("v"),
          expireInMs: 0,
          deleteInMs: 0,
          origin: { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(9), requestId: 32 * n },
        }),
        1_000,
      );
    while (decodeErrorResult(freshWrite(++j)) === undefined) expect(j).toBeLessThan(1_000);
    expect(j - 1).toBe(84);
  });
});

describe("a replica that does not implement the rules in force stops instead of deciding otherwise", () => {
  test("a raising entry above what it implements throws (the group stops); one it implements applies", () => {
    const old = new Log(new DStoreStateMachine({}, {}, {}, 1));
    expect(() => old.apply(encodeRulesCommand(2), 1_000)).toThrow(/implements rules up to 1/);
    const current = new Log(new DStoreStateMachine());
    expect(decodeErrorResult(current.apply(encodeRulesCommand(APPLY_RULES_VERSION), 1_000))).toBeUndefined();
    expect(current.machine.rulesVersion).toBe(APPLY_RULES_VERSION);
  });

  test("a snapshot under rules 2 is refused by a replica implementing 1; under rules 1 it is the old format", async () => {
    const leader = new Log(new DStoreStateMachine());
    const plain = await snapshotOf(leader.machine);
    expect(new TextDecoder().decode(plain.subarray(0, 8))).toBe("DKVDSM02");
    leader.apply(encodeRulesCommand(2), 1_000);
    const raised = await snapshotOf(leader.machine);
    const old = new DStoreStateMachine({}, {}, {}, 1);
    await expect(old.restore(raised)).rejects.toThrow(/implements rules up to 1/);
    const current = new DStoreStateMachine();
    await current.restore(raised);
    expect(current.rulesVersion).toBe(2);
  });

  test("a rules entry with a key, an origin, no version or a longer value is refused alike (a no-op)", () => {
    const machine = new Log(new DStoreStateMachine());
    const bad = [
      { key: "k", value: Uint8Array.of(2), origin: undefined },
      { key: "", value: Uint8Array.of(0), origin: undefined },
      { key: "", value: Uint8Array.of(2, 0), origin: undefined },
      {
        key: "",
        value: Uint8Array.of(2),
        origin: { clientId: new Uint8Array(CLIENT_ID_BYTES), requestId: 1 },
      },
    ];
    for (const fields of bad) {
      const data = encodeCommand({ op: Op.Rules, expireInMs: 0, deleteInMs: 0, ...fields });
      expect(decodeErrorResult(machine.apply(data, 1_000))?.code).toBe("BAD_REQUEST");
    }
    expect(machine.machine.rulesVersion).toBe(1);
  });
});

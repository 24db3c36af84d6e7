import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Operation } from "../history.ts";
import {
  effectiveCompleteMs,
  HistoryRecorder,
  historyToJsonLines,
  loadHistory,
  parseHistoryJsonLines,
  saveHistory,
} from "../history.ts";

const dir = mkdtempSync(join(tmpdir(), "dkv-history-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sample: Operation[] = [
  {
    id: 0,
    client: 1,
    kind: "set",
    key: "a",
    value: "x",
    invokeMs: 1,
    completeMs: 2,
    outcome: "ok",
    member: "n1",
  },
  {
    id: 1,
    client: "c2",
    kind: "get",
    key: "a",
    invokeMs: 3,
    completeMs: 4,
    outcome: "ok",
    result: { found: true, value: "x" },
    phase: "final",
  },
  {
    id: 2,
    client: 1,
    kind: "setE",
    key: "b",
    value: "y",
    expireInMs: 50,
    deleteInMs: 0,
    invokeMs: 5,
    outcome: "unknown",
    error: "TIMEOUT",
  },
  {
    id: 3,
    client: 3,
    kind: "acquire",
    key: "L",
    ttlMs: 1000,
    invokeMs: 6,
    completeMs: 7,
    outcome: "ok",
    result: { acquired: true, ownerId: "ab", fencingToken: "18446744073709551617" },
  },
  {
    id: 4,
    client: 3,
    kind: "resourceWrite",
    key: "L",
    fencingToken: "5",
    invokeMs: 8,
    completeMs: 9,
    outcome: "ok",
    result: { accepted: false, seq: 3 },
  },
];

describe("history JSON lines", () => {
  test("save then load gives back the same operations", async () => {
    const path = join(dir, "h.jsonl");
    await saveHistory(path, sample);
    expect(await loadHistory(path)).toEqual(sample);
  });

  test("an unknown completion stored as Infinity in memory is written as absent", () => {
    const op: Operation = {
      id: 0,
      client: 0,
      kind: "set",
      key: "a",
      invokeMs: 0,
      completeMs: Number.POSITIVE_INFINITY,
      outcome: "unknown",
    };
    const [back] = parseHistoryJsonLines(historyToJsonLines([op]));
    expect(back?.completeMs).toBeUndefined();
    expect(back !== undefined && effectiveCompleteMs(back)).toBe(Number.POSITIVE_INFINITY);
  });

  test("malformed lines are rejected with their line number", () => {
    expect(() => parseHistoryJsonLines("{}\n")).toThrow("line 1");
    expect(() => parseHistoryJsonLines(`${JSON.stringify(sample[0])}\nnot json\n`)).toThrow(
      "line 2: not JSON",
    );
    const badKind = JSON.stringify({ ...sample[0], kind: "frobnicate" });
    expect(() => parseHistoryJsonLines(badKind)).toThrow("unknown kind");
  });
});

describe("HistoryRecorder", () => {
  test("stamps invocations and completions with the injected clock; open ops stay unknown", () => {
    let clock = 10;
    const recorder = new HistoryRecorder({ now: () => clock++ });
    const a = recorder.invoke({ client: 0, kind: "set", key: "k", value: "v" });
    const b = recorder.invoke({ client: 1, kind: "get", key: "k" });
    recorder.complete(a, "ok");
    const ops = recorder.history();
    expect(ops[a]).toMatchObject({ invokeMs: 10, completeMs: 12, outcome: "ok" });
    expect(ops[b]).toMatchObject({ invokeMs: 11, outcome: "unknown" });
    expect(ops[b]?.completeMs).toBeUndefined();
    expect(() => recorder.complete(a, "ok")).toThrow("completed twice");
  });

  test("refuses to grow past its bound", () => {
    const recorder = new HistoryRecorder({ maxOps: 2 });
    recorder.invoke({ client: 0, kind: "get", key: "k" });
    recorder.invoke({ client: 0, kind: "get", key: "k" });
    expect(() => recorder.invoke({ client: 0, kind: "get", key: "k" })).toThrow("history is full");
  });
});

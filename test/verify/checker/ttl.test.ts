import { describe, expect, test } from "bun:test";
import type { Operation } from "../history.ts";
import { HistoryBuilder } from "./fixtures.ts";
import { checkTtl } from "./ttl.ts";

function setE(
  h: HistoryBuilder,
  value: string,
  expireInMs: number,
  invokeMs: number,
  completeMs: number,
): Operation {
  return h.add({ kind: "setE", value, expireInMs, deleteInMs: 0, invokeMs, completeMs });
}

function kinds(h: HistoryBuilder, toleranceMs = 10): string[] {
  return checkTtl(h.history(), { toleranceMs }).violations.map((v) => v.kind);
}

describe("ttl: passing histories", () => {
  test("the value is readable before its deadline and gone after, on every member", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 5);
    h.get("t", 10, 11, "k", "n1");
    h.get("t", 50, 51, "k", "n2");
    h.get(null, 120, 121, "k", "n3");
    h.get(null, 130, 131, "k", "n1");
    const verdict = checkTtl(h.history(), { toleranceMs: 10 });
    expect(verdict.status).toBe("ok");
    expect(verdict.keysChecked).toBe(1);
  });

  test("around the deadline, members may disagree while their reads overlap", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 5);
    h.get(null, 99, 110, "k", "n1");
    h.get("t", 100, 104, "k", "n2"); // began before the miss completed
    expect(kinds(h)).toEqual([]);
  });

  test("a read within the stamp's uncertainty plus tolerance is fine", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 20); // expiry somewhere in [100, 120]
    h.get("t", 125, 126);
    expect(kinds(h)).toEqual([]);
  });

  test("a rewrite of the same value explains a later read", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 5);
    h.get(null, 120, 121);
    setE(h, "t", 100, 130, 131);
    h.get("t", 140, 141);
    expect(kinds(h)).toEqual([]);
  });

  test("keys without deadlines are left to the linearizability checker", () => {
    const h = new HistoryBuilder();
    h.set("v", 0, 1);
    h.get(null, 2, 3);
    h.get("v", 4, 5);
    expect(checkTtl(h.history()).keysChecked).toBe(0);
  });

  test("a delete before the deadline explains an early miss", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 1000, 0, 5);
    h.add({ kind: "delete", invokeMs: 10, completeMs: 11 });
    h.get(null, 20, 21);
    expect(kinds(h)).toEqual([]);
  });

  test("an unknown-outcome rewrite may keep the value alive", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 5);
    h.add({ kind: "set", value: "t", invokeMs: 50, outcome: "unknown" });
    h.get("t", 500, 501);
    expect(kinds(h)).toEqual([]);
  });
});

describe("ttl: violations", () => {
  test("a member serves the value after another member reported it expired", () => {
    const h = new HistoryBuilder();
    const write = setE(h, "t", 100, 0, 5);
    const gone = h.get(null, 110, 111, "k", "n1");
    const back = h.get("t", 112, 113, "k", "n2");
    const verdict = checkTtl(h.history(), { toleranceMs: 1000 }); // the deadline check alone would forgive it
    expect(verdict.violations.map((v) => v.kind)).toEqual(["value-reappeared"]);
    expect(verdict.violations[0]?.ops.map((o) => o.id)).toEqual([write.id, gone.id, back.id]);
    expect(verdict.violations[0]?.message).toContain("member n1");
    expect(verdict.violations[0]?.message).toContain("member n2");
  });

  test("a read that begins well past the latest possible expiry returns the value", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 100, 0, 5);
    h.get("t", 200, 201, "k", "n3");
    expect(kinds(h)).toEqual(["read-after-deadline"]);
  });

  test("a delete deadline alone also ends the value", () => {
    const h = new HistoryBuilder();
    h.add({ kind: "setE", value: "t", expireInMs: 0, deleteInMs: 100, invokeMs: 0, completeMs: 5 });
    h.get("t", 200, 201);
    expect(kinds(h)).toEqual(["read-after-deadline"]);
  });

  test("a member finds nothing long before the earliest possible expiry", () => {
    const h = new HistoryBuilder();
    setE(h, "t", 1000, 0, 5);
    h.get(null, 100, 101);
    expect(kinds(h)).toEqual(["expired-early"]);
  });

  test("setEIfUnset that wrote carries deadlines too", () => {
    const h = new HistoryBuilder();
    h.add({
      kind: "setEIfUnset",
      value: "t",
      expireInMs: 100,
      deleteInMs: 0,
      invokeMs: 0,
      completeMs: 5,
      result: { written: true },
    });
    h.get("t", 300, 301);
    expect(kinds(h)).toEqual(["read-after-deadline"]);
  });
});

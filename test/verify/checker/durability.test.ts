import { describe, expect, test } from "bun:test";
import type { Operation } from "../history.ts";
import { checkDurability } from "./durability.ts";
import { HistoryBuilder } from "./fixtures.ts";

function finalRead(h: HistoryBuilder, found: string | null, invokeMs: number, key = "k"): Operation {
  const op = h.get(found, invokeMs, invokeMs + 1, key);
  op.phase = "final";
  return op;
}

function kinds(h: HistoryBuilder): string[] {
  return checkDurability(h.history()).violations.map((v) => v.kind);
}

describe("durability: passing histories", () => {
  test("the final read sees the last acknowledged write", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.set("2", 2, 3);
    finalRead(h, "2", 100);
    expect(checkDurability(h.history()).status).toBe("ok");
    expect(checkDurability(h.history()).keysChecked).toBe(1);
  });

  test("a later write with an unknown outcome may be what the final read sees", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.set("2", 2, undefined, "unknown");
    finalRead(h, "2", 100);
    expect(kinds(h)).toEqual([]);
  });

  test("a write concurrent with the last acknowledged one may have won", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 10);
    h.set("2", 5, 6);
    finalRead(h, "1", 100);
    expect(kinds(h)).toEqual([]);
  });

  test("missing is fine when a later delete, expire or deadline explains it", () => {
    for (const last of ["delete", "expire", "setE"] as const) {
      const h = new HistoryBuilder();
      h.set("1", 0, 1);
      if (last === "setE")
        h.add({ kind: "setE", value: "t", expireInMs: 10, deleteInMs: 0, invokeMs: 2, completeMs: 3 });
      else h.add({ kind: last, invokeMs: 2, completeMs: 3 });
      finalRead(h, null, 100);
      expect(kinds(h)).toEqual([]);
    }
  });

  test("keys without a final read are not judged, and main-phase reads are ignored", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.get("0", 2, 3);
    const verdict = checkDurability(h.history());
    expect(verdict.status).toBe("ok");
    expect(verdict.keysChecked).toBe(0);
  });

  test("a setEIfUnset that did not write is not a write that could be lost", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.setEIfUnset("2", false, 2, 3);
    finalRead(h, "1", 100);
    expect(kinds(h)).toEqual([]);
  });
});

describe("durability: violations", () => {
  test("the final read sees an older value than the last acknowledged write", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    const lost = h.set("2", 2, 3);
    const read = finalRead(h, "1", 100);
    const verdict = checkDurability(h.history());
    expect(verdict.status).toBe("violation");
    expect(verdict.violations[0]?.kind).toBe("lost-write");
    expect(verdict.violations[0]?.ops.map((o) => o.id)).toEqual([lost.id, read.id]);
  });

  test("the final read finds nothing though the last acknowledged write had no deadline", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    finalRead(h, null, 100);
    expect(kinds(h)).toEqual(["lost-write"]);
  });

  test("an acknowledged delete that is undone", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.add({ kind: "delete", invokeMs: 2, completeMs: 3 });
    finalRead(h, "1", 100);
    expect(kinds(h)).toEqual(["lost-write"]);
  });

  test("a failed write cannot explain the final value", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.set("2", 2, 3, "fail");
    finalRead(h, "2", 100);
    expect(kinds(h)).toEqual(["final-read-never-written"]);
  });

  test("each key is judged on its own; every final read is checked", () => {
    const h = new HistoryBuilder();
    h.set("a1", 0, 1, "ok", "a");
    h.set("b1", 0, 1, "ok", "b");
    finalRead(h, "a1", 100, "a");
    finalRead(h, null, 100, "b");
    finalRead(h, "b1", 101, "b");
    const verdict = checkDurability(h.history());
    expect(verdict.keysChecked).toBe(2);
    expect(verdict.violations.map((v) => v.key)).toEqual(["b"]);
  });
});

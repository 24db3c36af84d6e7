import { describe, expect, test } from "bun:test";
import type { Operation, Outcome } from "../history.ts";
import { HistoryBuilder } from "./fixtures.ts";
import { checkLocks } from "./locks.ts";

/** A lock history in a few words: owners are named after their client. */
class LockHistory {
  readonly h = new HistoryBuilder();

  acquire(client: string, token: number, invokeMs: number, completeMs: number, ttlMs = 0): Operation {
    return this.h.add({
      kind: "acquire",
      key: "L",
      client,
      ttlMs,
      invokeMs,
      completeMs,
      result: { acquired: true, ownerId: `owner-${client}-${token}`, fencingToken: String(token) },
    });
  }

  refused(client: string, invokeMs: number, completeMs: number): Operation {
    return this.h.add({
      kind: "acquire",
      key: "L",
      client,
      ttlMs: 0,
      invokeMs,
      completeMs,
      result: { acquired: false },
    });
  }

  release(
    client: string,
    token: number,
    invokeMs: number,
    completeMs: number,
    outcome: Outcome = "ok",
  ): Operation {
    return this.h.add({
      kind: "release",
      key: "L",
      client,
      ownerId: `owner-${client}-${token}`,
      invokeMs,
      completeMs,
      outcome,
      result: outcome === "ok" ? { released: true } : undefined,
    });
  }

  refresh(
    client: string,
    token: number,
    ttlMs: number,
    invokeMs: number,
    completeMs: number,
    refreshed: boolean,
  ) {
    return this.h.add({
      kind: "refresh",
      key: "L",
      client,
      ownerId: `owner-${client}-${token}`,
      ttlMs,
      invokeMs,
      completeMs,
      result: { refreshed },
    });
  }

  write(client: string, token: number, seq: number, accepted: boolean, atMs: number): Operation {
    return this.h.add({
      kind: "resourceWrite",
      key: "L",
      client,
      fencingToken: String(token),
      value: `${client}:${seq}`,
      invokeMs: atMs,
      completeMs: atMs + 1,
      result: { accepted, seq },
    });
  }

  kinds(): string[] {
    return checkLocks(this.h.history()).violations.map((v) => v.kind);
  }
}

describe("locks: passing histories", () => {
  test("holders one after another with increasing tokens and releases are safe", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1);
    l.write("a", 10, 1, true, 2);
    l.release("a", 10, 3, 4);
    l.refused("c", 2, 3);
    l.acquire("b", 20, 5, 6);
    l.write("b", 20, 2, true, 7);
    l.write("a", 10, 3, false, 8); // the stale holder is turned away
    l.release("b", 20, 9, 10);
    expect(l.kinds()).toEqual([]);
    expect(checkLocks(l.h.history()).status).toBe("ok");
  });

  test("a lease that ran out lets the next holder in without a release", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 100);
    l.acquire("b", 20, 160, 161, 100);
    expect(l.kinds()).toEqual([]);
  });

  test("a release that failed outright does not end the hold, but an unknown one may have", () => {
    const unknown = new LockHistory();
    unknown.acquire("a", 10, 0, 1);
    unknown.release("a", 10, 2, 50, "unknown");
    unknown.acquire("b", 20, 5, 6);
    expect(unknown.kinds()).toEqual([]);
  });

  test("concurrent acquires may complete in either order", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 5);
    l.acquire("b", 20, 2, 30, 100); // invoked early, granted after a's short lease, answered late
    l.acquire("c", 30, 140, 141, 0);
    expect(l.kinds()).toEqual([]);
  });
});

describe("locks: violations", () => {
  test("a later acquire with a smaller token", () => {
    const l = new LockHistory();
    l.acquire("a", 20, 0, 1, 10);
    l.acquire("b", 10, 100, 101, 10);
    expect(l.kinds()).toContain("token-order");
  });

  test("two grants with the same token", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 10);
    l.acquire("b", 10, 100, 101, 10);
    expect(l.kinds()).toContain("duplicate-token");
  });

  test("a second holder while the first has neither released nor run out its lease", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 1000);
    l.acquire("b", 20, 100, 101, 1000);
    const verdict = checkLocks(l.h.history());
    expect(verdict.status).toBe("violation");
    expect(verdict.violations[0]?.kind).toBe("overlapping-holders");
    expect(verdict.violations[0]?.ops.map((o) => o.client)).toEqual(["a", "b"]);
  });

  test("a held-forever lock (ttl 0) granted again", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 0);
    l.acquire("b", 20, 10_000, 10_001, 0);
    expect(l.kinds()).toEqual(["overlapping-holders"]);
  });

  test("a refresh that said yes extends the hold it proves", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 100);
    l.refresh("a", 10, 100, 80, 81, true);
    l.acquire("b", 20, 110, 111, 100); // a's lease runs to at least 180 (130 with the default 50 ms slack)
    expect(l.kinds()).toEqual(["overlapping-holders"]);
    const unrefreshed = new LockHistory();
    unrefreshed.acquire("a", 10, 0, 1, 100);
    unrefreshed.acquire("b", 20, 110, 111, 100);
    expect(unrefreshed.kinds()).toEqual([]);
  });

  test("a refresh that succeeds after the release completed", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 1000);
    l.release("a", 10, 2, 3);
    l.refresh("a", 10, 1000, 5, 6, true);
    expect(l.kinds()).toContain("held-after-release");
  });

  test("a refresh that revives a lease that had certainly expired", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 100);
    l.refresh("a", 10, 100, 500, 501, true);
    expect(l.kinds()).toEqual(["refresh-after-expiry"]);
    const inTime = new LockHistory();
    inTime.acquire("a", 10, 0, 1, 100);
    inTime.refresh("a", 10, 100, 60, 61, true);
    inTime.refresh("a", 10, 100, 140, 141, true); // the first refresh carried it to at least 160
    expect(inTime.kinds()).toEqual([]);
  });

  test("the resource accepted a stale token after a newer one", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 50);
    l.acquire("b", 20, 100, 101, 50);
    l.write("b", 20, 1, true, 102);
    l.write("a", 10, 2, true, 103); // paused holder wakes up; the resource must refuse
    const verdict = checkLocks(l.h.history());
    expect(verdict.violations.map((v) => v.kind)).toEqual(["stale-token-accepted"]);
  });

  test("acceptance order comes from the resource's sequence, not from completion times", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 50);
    l.acquire("b", 20, 100, 101, 50);
    l.write("a", 10, 1, true, 200); // accepted first, though its reply came later
    l.write("b", 20, 2, true, 150);
    expect(l.kinds()).toEqual([]);
  });

  test("the resource accepted a token nobody was granted, or another client's token", () => {
    const l = new LockHistory();
    l.acquire("a", 10, 0, 1, 50);
    l.write("a", 5, 1, true, 2);
    l.write("b", 10, 2, true, 3);
    expect(l.kinds()).toEqual(["foreign-token", "foreign-token"]);
  });

  test("a grant without a token is reported, not trusted", () => {
    const h = new HistoryBuilder();
    h.add({ kind: "acquire", key: "L", invokeMs: 0, completeMs: 1, ttlMs: 0, result: { acquired: true } });
    expect(checkLocks(h.history()).violations[0]?.kind).toBe("malformed-grant");
  });

  test("locks on different keys are independent", () => {
    const h = new HistoryBuilder();
    for (const key of ["x", "y"]) {
      h.add({
        kind: "acquire",
        key,
        client: key,
        ttlMs: 0,
        invokeMs: 0,
        completeMs: 1,
        result: { acquired: true, ownerId: key, fencingToken: "5" },
      });
    }
    const verdict = checkLocks(h.history());
    expect(verdict.status).toBe("ok");
    expect(verdict.keysChecked).toBe(2);
  });
});

import { describe, expect, test } from "bun:test";
import type { WatchedChange, WatchStream } from "../watch-workload.ts";
import { HistoryBuilder } from "./fixtures.ts";
import { checkWatch } from "./watch.ts";

function stream(watcher: string, changes: WatchedChange[], extra: Partial<WatchStream> = {}): WatchStream {
  return { watcher, changes, restarts: 0, gaps: [], complete: true, ...extra };
}

const put = (key: string, value: string, revision: number): WatchedChange => ({
  type: "put",
  key,
  value,
  revision,
});

/** A history of two acknowledged sets and a final read, and the changes they make. */
function scenario() {
  const h = new HistoryBuilder();
  h.set("a", 0, 1);
  h.set("b", 2, 3);
  h.add({ kind: "get", invokeMs: 10, completeMs: 11, result: { found: true, value: "b" }, phase: "final" });
  const changes = [put("k", "a", 5), put("k", "b", 6), put("~watch-end", "end", 9)];
  return { history: h.history(), changes };
}

describe("watch checker", () => {
  test("identical complete streams that carry every acknowledged write once are OK", () => {
    const { history, changes } = scenario();
    const verdict = checkWatch(history, { streams: [stream("n1", changes), stream("n2", [...changes])] });
    expect(verdict.status).toBe("ok");
  });

  test("a stream missing a change another has is a violation naming where they part", () => {
    const { history, changes } = scenario();
    const verdict = checkWatch(history, {
      streams: [stream("n1", changes), stream("n2", [changes[0]!, changes[2]!])],
    });
    expect(verdict.status).toBe("violation");
    expect(verdict.violations[0]?.kind).toBe("watch-streams-differ");
    expect(verdict.violations[0]?.message).toContain("part at change 1");
  });

  test("a duplicated change (a resume that did not skip what it had) is a violation", () => {
    const { history, changes } = scenario();
    const verdict = checkWatch(history, {
      streams: [stream("n1", [changes[0]!, changes[0]!, changes[1]!, changes[2]!])],
    });
    expect(verdict.violations[0]?.kind).toBe("watch-duplicate");
  });

  test("revisions going back are a violation", () => {
    const { history } = scenario();
    const verdict = checkWatch(history, {
      streams: [stream("n1", [put("k", "b", 6), put("k", "a", 5), put("~watch-end", "end", 9)])],
    });
    expect(verdict.violations[0]?.kind).toBe("watch-out-of-order");
  });

  test("an acknowledged write no stream shows is a missed write", () => {
    const { history } = scenario();
    const verdict = checkWatch(history, {
      streams: [stream("n1", [put("k", "b", 6), put("~watch-end", "end", 9)])],
    });
    expect(verdict.violations.map((v) => v.kind)).toContain("watch-missed-write");
  });

  test("with many kv shards only the watched shard's keys are expected in the streams", () => {
    const { history } = scenario();
    const streams = [stream("n1", [put("k", "b", 6), put("~watch-end", "end", 9)])];
    // Key "k" lives in another shard: its writes are not the watched stream's business.
    expect(checkWatch(history, { streams, watchedKey: (key) => key !== "k" }).status).toBe("ok");
    // It lives in the watched shard: the missing put of "a" is a missed write.
    const watched = checkWatch(history, { streams, watchedKey: (key) => key === "k" });
    expect(watched.violations.map((v) => v.kind)).toContain("watch-missed-write");
  });

  test("a write that certainly failed must not appear; an unknown one may, once", () => {
    const h = new HistoryBuilder();
    h.set("x", 0, 1, "fail");
    h.set("y", 2, undefined, "unknown");
    const seen = [put("k", "x", 3), put("k", "y", 4)];
    const verdict = checkWatch(h.history(), { streams: [stream("n1", seen)] });
    expect(verdict.violations.map((v) => v.kind)).toEqual(["watch-failed-write-seen"]);
  });

  test("the stream's last change of a key must match what the final reads found", () => {
    const { history } = scenario();
    const verdict = checkWatch(history, {
      streams: [
        stream("n1", [
          put("k", "a", 5),
          put("k", "b", 6),
          { type: "delete", key: "k", revision: 7 },
          put("~watch-end", "end", 9),
        ]),
      ],
    });
    expect(verdict.violations.map((v) => v.kind)).toEqual(["watch-final-state"]);
  });

  test("a stream that never saw the sentinel makes the verdict unknown, not ok", () => {
    const { history, changes } = scenario();
    const verdict = checkWatch(history, {
      streams: [stream("n1", changes), stream("n2", changes.slice(0, 2), { complete: false })],
    });
    expect(verdict.status).toBe("unknown");
  });

  test("a removed member's watcher that stopped early is checked as a prefix, not for completeness", () => {
    const { history, changes } = scenario();
    const ok = checkWatch(history, {
      streams: [stream("n1", changes), stream("n9", changes.slice(0, 1), { complete: false, retired: true })],
    });
    expect(ok.status).toBe("ok");
    const wrong = checkWatch(history, {
      streams: [stream("n1", changes), stream("n9", [put("k", "b", 6)], { complete: false, retired: true })],
    });
    expect(wrong.violations[0]?.kind).toBe("watch-streams-differ");
  });

  test("revisions inside a COMPACTED gap are not compared", () => {
    const { history, changes } = scenario();
    const verdict = checkWatch(history, {
      streams: [
        stream("n1", changes),
        stream("n2", changes.slice(1), { gaps: [{ fromRevision: 1, toRevision: 6 }] }),
      ],
    });
    expect(verdict.status).toBe("ok");
  });
});

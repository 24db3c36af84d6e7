import { expect, test } from "bun:test";
import {
  COMMIT_NOTICE_HOLD_MS_MAX,
  CommitNoticeHold,
  commitNoticeHoldEnv,
  commitNoticeHoldMs,
} from "../../../src/raft/host/commit-notice-hold.ts";

test("a notice is held at most 5 ms and a sixteenth of a tick; not at all when that is under 1 ms", () => {
  expect(commitNoticeHoldMs(100)).toBe(COMMIT_NOTICE_HOLD_MS_MAX);
  expect(commitNoticeHoldMs(400)).toBe(COMMIT_NOTICE_HOLD_MS_MAX);
  expect(commitNoticeHoldMs(32)).toBe(2);
  expect(commitNoticeHoldMs(15)).toBe(0);
  expect(commitNoticeHoldEnv({ after() {} }, 10)).toEqual({});
  expect(commitNoticeHoldEnv({}, 100)).toEqual({});
  expect(commitNoticeHoldEnv({ after() {} }, 100).holdCommitNotices).toBeFunction();
});

test("groups holding notices share one timer; each is released once, then a new hold arms it again", () => {
  const timers: { ms: number; run: () => void }[] = [];
  const hold = new CommitNoticeHold(5, (ms, run) => timers.push({ ms, run }));
  const released: string[] = [];
  const group = (name: string) => ({ releaseCommitNotices: () => released.push(name) });
  const a = group("a");
  const b = group("b");
  hold.hold(a);
  hold.hold(b);
  hold.hold(a);
  expect(timers.map((t) => t.ms)).toEqual([5]);
  timers[0]!.run();
  expect(released).toEqual(["a", "b"]);
  hold.hold(b);
  expect(timers.length).toBe(2);
  timers[1]!.run();
  expect(released).toEqual(["a", "b", "b"]);
});

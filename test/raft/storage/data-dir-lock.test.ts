import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import { LOCK_FILE, lockDataDir, lockSocketName } from "../../../src/raft/storage/data-dir-lock.ts";
import { withinDeadline } from "../transport/hostile-client.ts";

async function refusal(dir: string): Promise<DkvError> {
  const outcome = await lockDataDir(dir, "test").then(
    async (lock) => {
      await lock[Symbol.asyncDispose]();
      return undefined;
    },
    (error: unknown) => error,
  );
  expect(DkvError.is(outcome, "USAGE")).toBe(true);
  return outcome as DkvError;
}

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-lock-"));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("the data dir lock", () => {
  test("a second opener is refused with the holder named; released, the dir opens again", () =>
    withDir(async (dir) => {
      const held = await lockDataDir(dir, "dkv serve");
      const error = await refusal(dir);
      expect(error.message).toContain(`in use by dkv serve (pid ${process.pid})`);
      expect(error.message).toContain("give this one its own --data-dir");
      await held[Symbol.asyncDispose]();
      await using again = await lockDataDir(dir, "dkv serve");
      expect(again.dir).toBe(dir);
    }));

  test.if(process.platform === "linux")("a process that connects to the lock's socket is cut at once", () =>
    withDir(async (dir) => {
      await using _held = await lockDataDir(dir, "dkv serve");
      const { dev, ino } = await stat(dir);
      let closed!: () => void;
      const cut = new Promise<void>((resolve) => (closed = resolve));
      await Bun.connect({ unix: lockSocketName(dev, ino), socket: { data() {}, close: () => closed() } });
      await withinDeadline(cut, "the lock socket to cut the connection");
    }),
  );

  test("a stale LOCK file of a process that is gone does not keep the dir", () =>
    withDir(async (dir) => {
      // A pid far above any pid_max: no such process.
      await writeFile(join(dir, LOCK_FILE), `${JSON.stringify({ pid: 2 ** 30, by: "dkv serve" })}\n`);
      await using lock = await lockDataDir(dir, "dkv serve");
      expect(lock.dir).toBe(dir);
    }));

  test.if(process.platform === "linux")("two paths to one dir are one lock", () =>
    withDir(async (dir) => {
      const real = join(dir, "data");
      const link = join(dir, "link");
      await Bun.write(join(real, ".keep"), "");
      await symlink(real, link);
      await using _held = await lockDataDir(real, "dkv serve");
      await refusal(link);
    }),
  );

  test("another process's lock: refused while it runs, free once it is killed (kill -9 included)", () =>
    withDir(async (dir) => {
      const holder = Bun.spawn(
        [
          process.execPath,
          "-e",
          `const { lockDataDir } = await import(${JSON.stringify(join(import.meta.dir, "../../../src/raft/storage/data-dir-lock.ts"))});
           await lockDataDir(${JSON.stringify(dir)}, "dkv serve");
           console.log("held");
           setInterval(() => {}, 1000);`,
        ],
        { stdout: "pipe", stderr: "inherit" },
      );
      try {
        const reader = holder.stdout.getReader();
        const first = await reader.read();
        expect(new TextDecoder().decode(first.value)).toContain("held");
        const error = await refusal(dir);
        expect(error.message).toContain(`(pid ${holder.pid})`);
      } finally {
        holder.kill("SIGKILL");
        await holder.exited;
      }
      await using lock = await lockDataDir(dir, "dkv serve");
      expect(lock.dir).toBe(dir);
    }));
});

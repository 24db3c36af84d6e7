import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ETCD_BENCHMARK_TAG,
  ensureEtcdBenchmark,
  etcdBenchmarkCachePath,
} from "../bench/etcd-benchmark-tool.ts";

// How etcd-compare.ts finds etcd's Go tool without building it: a path given, or the cache.
// (Building it needs Go, Debian's etcd packages and etcd's source: exercised by the script.)
describe("etcd benchmark tool", () => {
  const dirs: string[] = [];
  const savedCache = process.env.XDG_CACHE_HOME;
  afterAll(async () => {
    if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedCache;
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  test("a given path must be an executable file, with a message saying what to do", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dkv-etcd-tool-"));
    dirs.push(dir);
    const notExecutable = join(dir, "benchmark");
    await writeFile(notExecutable, "#!/bin/sh\n");
    for (const path of [join(dir, "missing"), notExecutable, dir]) {
      await expect(ensureEtcdBenchmark({ explicit: path })).rejects.toThrow(
        `--etcd-benchmark ${path}: no executable file there (drop the flag to build one)`,
      );
    }
    await chmod(notExecutable, 0o755);
    expect(await ensureEtcdBenchmark({ explicit: notExecutable })).toBe(notExecutable);
  });

  test("a tool built before is taken from the cache, named after the tag", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dkv-etcd-cache-"));
    dirs.push(dir);
    process.env.XDG_CACHE_HOME = dir;
    const cached = etcdBenchmarkCachePath();
    expect(cached).toBe(join(dir, "dkv", `etcd-benchmark-${ETCD_BENCHMARK_TAG}`));
    await mkdir(join(dir, "dkv"), { recursive: true });
    await writeFile(cached, "#!/bin/sh\n");
    await chmod(cached, 0o755);
    expect(await ensureEtcdBenchmark()).toBe(cached);
  });
});

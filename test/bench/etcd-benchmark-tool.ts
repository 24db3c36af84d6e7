/**
 * etcd's own Go load tool (`tools/benchmark` of etcd v3.4.23), built here when missing, so
 * `etcd-compare.ts` drives etcd the way etcd's maintainers do (gRPC, N clients on N
 * connections) and not only through its JSON gateway.
 *
 *   bun run test/bench/etcd-benchmark-tool.ts [--etcd-source DIR]   (prints the tool's path)
 *
 * Debian packages no `benchmark` binary, but everything it imports: `golang-go` (the
 * compiler) and `golang-etcd-server-dev` (etcd 3.4.23's packages and their dependencies
 * under /usr/share/gocode). Only the tool's own directory, `tools/benchmark`, comes from
 * etcd's source at tag v3.4.23, taken from (in this order):
 * - `--etcd-source DIR` / ETCD_SOURCE=DIR: a clone of github.com/etcd-io/etcd (a work tree
 *   or a bare repository holding the tag; `git archive v3.4.23`), or an unpacked source
 *   tree of 3.4.23 with `tools/benchmark` in it;
 * - otherwise GitHub's tarball of the tag (codeload.github.com), downloaded once.
 * The build runs in GOPATH mode (GO111MODULE=off, GOPROXY=off: nothing else is fetched)
 * with a GOPATH of a scratch directory holding `go.etcd.io/etcd/tools/benchmark` followed
 * by /usr/share/gocode, and the binary is cached under `$XDG_CACHE_HOME/dkv` (default
 * `~/.cache/dkv`): later runs reuse it.
 */
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages, flagValue, runCommand } from "./commands.ts";

export const ETCD_BENCHMARK_TAG = "v3.4.23";
const GOCODE = "/usr/share/gocode";
/** A package of golang-etcd-server-dev the tool imports: present when the package is installed. */
const GOCODE_ETCD_PROBE = join(GOCODE, "src/go.etcd.io/etcd/clientv3");
/** A build on a loaded 2-core machine takes 1-3 minutes (Debian's packages are compiled too). */
const BUILD_TIMEOUT_MS = 900_000;
const TARBALL_URL = `https://codeload.github.com/etcd-io/etcd/tar.gz/refs/tags/${ETCD_BENCHMARK_TAG}`;

/** Where a built tool is kept between runs. */
export function etcdBenchmarkCachePath(): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(cache, "dkv", `etcd-benchmark-${ETCD_BENCHMARK_TAG}`);
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isFile() && (s.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Puts etcd's `tools/benchmark` of the tag into `goSrcEtcd` (…/src/go.etcd.io/etcd). */
async function placeToolSource(
  goSrcEtcd: string,
  source: string | undefined,
  scratch: string,
): Promise<void> {
  await mkdir(goSrcEtcd, { recursive: true });
  if (source !== undefined) {
    if (existsSync(join(source, "tools/benchmark/main.go"))) {
      // An unpacked tree: its version must be the tag's (another version may not build
      // against Debian's 3.4.23 packages, and would not be the tool the README names).
      const version = await Bun.file(join(source, "version/version.go"))
        .text()
        .catch(() => "");
      if (!version.includes(`"${ETCD_BENCHMARK_TAG.slice(1)}"`)) {
        throw new Error(
          `${source} holds etcd's tools/benchmark, but not of ${ETCD_BENCHMARK_TAG} (version/version.go): ` +
            `check out the tag (git -C ${source} checkout ${ETCD_BENCHMARK_TAG}) or pass a clone with the tag`,
        );
      }
      await runCommand(["cp", "-r", join(source, "tools"), goSrcEtcd]);
      return;
    }
    // A clone (work tree or bare): the tag's files, whatever is checked out.
    const archive = join(scratch, "tools.tar");
    try {
      await runCommand([
        "git",
        "-C",
        source,
        "archive",
        "-o",
        archive,
        ETCD_BENCHMARK_TAG,
        "tools/benchmark",
      ]);
    } catch (error) {
      throw new Error(
        `could not read tag ${ETCD_BENCHMARK_TAG} of ${source} (${(error as Error).message.split("\n")[0]}): ` +
          `--etcd-source must be a clone of github.com/etcd-io/etcd with its tags, or an unpacked ${ETCD_BENCHMARK_TAG} tree`,
      );
    }
    await runCommand(["tar", "-x", "-f", archive, "-C", goSrcEtcd]);
    return;
  }
  console.log(`downloading etcd ${ETCD_BENCHMARK_TAG}'s source for tools/benchmark (${TARBALL_URL})...`);
  let response: Response;
  try {
    response = await fetch(TARBALL_URL, { signal: AbortSignal.timeout(120_000) });
  } catch (error) {
    throw new Error(
      `could not download ${TARBALL_URL} (${(error as Error).message}): ` +
        `pass --etcd-source DIR (a clone of github.com/etcd-io/etcd) or --etcd-benchmark PATH (a built tool)`,
    );
  }
  if (!response.ok) {
    throw new Error(
      `${TARBALL_URL} answered HTTP ${response.status}: pass --etcd-source DIR or --etcd-benchmark PATH`,
    );
  }
  const tarball = join(scratch, "etcd.tar.gz");
  await writeFile(tarball, new Uint8Array(await response.arrayBuffer()));
  const top = `etcd-${ETCD_BENCHMARK_TAG.slice(1)}`;
  await runCommand([
    "tar",
    "-x",
    "-z",
    "-f",
    tarball,
    "-C",
    goSrcEtcd,
    "--strip-components=1",
    `${top}/tools/benchmark`,
  ]);
}

/**
 * The path of etcd's benchmark tool: `explicit` when given (it must exist), else the cached
 * build, else a fresh build (installing Debian's Go and etcd packages when missing).
 */
export async function ensureEtcdBenchmark(
  options: { explicit?: string; source?: string } = {},
): Promise<string> {
  if (options.explicit !== undefined) {
    if (!(await isExecutableFile(options.explicit))) {
      throw new Error(
        `--etcd-benchmark ${options.explicit}: no executable file there (drop the flag to build one)`,
      );
    }
    return options.explicit;
  }
  const cached = etcdBenchmarkCachePath();
  if (await isExecutableFile(cached)) return cached;

  await ensureDebianPackages(["go"], ["golang-go", "golang-etcd-server-dev"], [GOCODE_ETCD_PROBE]);
  if (!existsSync(GOCODE_ETCD_PROBE)) {
    throw new Error(
      `${GOCODE_ETCD_PROBE} is missing after installing golang-etcd-server-dev: cannot build the tool`,
    );
  }
  const scratch = await mkdtemp(join(tmpdir(), "dkv-etcd-benchmark-"));
  try {
    const gopath = join(scratch, "gopath");
    const goSrcEtcd = join(gopath, "src/go.etcd.io/etcd");
    await placeToolSource(goSrcEtcd, options.source, scratch);
    console.log(`building etcd's tools/benchmark ${ETCD_BENCHMARK_TAG} (GOPATH mode, Debian's packages)...`);
    await mkdir(join(cached, ".."), { recursive: true });
    const partial = `${cached}.partial-${process.pid}`;
    const proc = Bun.spawn(["go", "build", "-o", partial, "."], {
      cwd: join(goSrcEtcd, "tools/benchmark"),
      env: {
        ...process.env,
        GOPATH: `${gopath}:${GOCODE}`,
        GO111MODULE: "off",
        GOPROXY: "off",
        GOFLAGS: "",
        GOTOOLCHAIN: "local",
        GOCACHE: process.env.GOCACHE || join(scratch, "gocache"),
      },
      stdout: "pipe",
      stderr: "pipe",
      timeout: BUILD_TIMEOUT_MS,
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) {
      await rm(partial, { force: true });
      throw new Error(
        `go build of etcd's tools/benchmark failed (exit ${code}):\n${(out + err).slice(-3000)}`,
      );
    }
    await chmod(partial, 0o755);
    await rename(partial, cached);
    console.log(`built ${cached}`);
    return cached;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const source = flagValue(argv, "--etcd-source", process.env.ETCD_SOURCE ?? "") || undefined;
  try {
    console.log(await ensureEtcdBenchmark({ source }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    process.exit(1);
  }
}

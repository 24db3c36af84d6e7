/**
 * Builds the single dkv executable with `bun build --compile`.
 *
 *   bun run build.ts              dist/dkv for this machine (works offline)
 *   bun run build.ts --release    dist/dkv-<os>-<arch>[.exe] for linux x64/arm64, darwin x64/arm64,
 *                                 windows x64, plus install.sh and SHA256SUMS
 *   bun run build.ts --outfile F  the host build written to F instead
 *
 * The version from package.json is embedded (DKV_BUILD_VERSION). Cross targets need Bun to
 * download that platform's runtime once; a target that cannot be built is reported and
 * the build fails, but the targets that did build and their checksums are kept.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { basename, join } from "node:path";

const ROOT = import.meta.dir;
const ENTRY = join(ROOT, "cli", "main.ts");
const DIST = join(ROOT, "dist");

interface ReleaseTarget {
  os: "linux" | "darwin" | "windows";
  arch: "x64" | "arm64";
}

const RELEASE_TARGETS: readonly ReleaseTarget[] = [
  { os: "linux", arch: "x64" },
  { os: "linux", arch: "arm64" },
  { os: "darwin", arch: "x64" },
  { os: "darwin", arch: "arm64" },
  { os: "windows", arch: "x64" },
];

function releaseName(target: ReleaseTarget): string {
  return `dkv-${target.os}-${target.arch}${target.os === "windows" ? ".exe" : ""}`;
}

async function packageVersion(): Promise<string> {
  const manifest: { version?: unknown } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
  if (typeof manifest.version !== "string") throw new Error("package.json has no version");
  return manifest.version;
}

/** One `bun build --compile`; `target` undefined builds for this machine with the running Bun. */
async function compile(outfile: string, version: string, target?: Bun.Build.CompileTarget): Promise<void> {
  const result = await Bun.build({
    entrypoints: [ENTRY],
    // Bytecode compiled ahead of time: JavaScriptCore skips parsing at start-up
    // (`dkv kv get` ~80 -> ~50 ms here); bytecode needs ESM output for top-level await.
    bytecode: true,
    format: "esm",
    // Lazily imported modules (cli/app.ts) become separate chunks inside the binary, loaded
    // only when used: a client command or an idle server maps less code (RSS, start-up).
    splitting: true,
    // Identifiers kept so a stack trace from a user's binary is readable without a source map.
    minify: { whitespace: true, syntax: true, identifiers: false },
    define: { DKV_BUILD_VERSION: JSON.stringify(version) },
    compile: {
      outfile,
      ...(target === undefined ? {} : { target }),
      // The binary's behaviour must not depend on a bunfig.toml or .env in the directory it
      // runs in: configuration comes from flags and DKV_* variables only.
      autoloadBunfig: false,
      autoloadDotenv: false,
    },
  });
  if (!result.success) {
    throw new Error(result.logs.map((log) => String(log)).join("\n") || "bun build failed");
  }
}

async function sha256(path: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(path))
    .digest("hex");
}

async function buildHost(outfile: string, version: string): Promise<void> {
  const started = performance.now();
  await compile(outfile, version);
  console.log(`built ${outfile} (dkv v${version}) in ${Math.round(performance.now() - started)} ms`);
}

async function buildRelease(version: string): Promise<boolean> {
  const built: string[] = [];
  const failed: string[] = [];
  for (const target of RELEASE_TARGETS) {
    const name = releaseName(target);
    const outfile = join(DIST, name);
    try {
      await compile(outfile, version, `bun-${target.os}-${target.arch}`);
      built.push(outfile);
      console.log(`built ${outfile}`);
    } catch (error) {
      failed.push(name);
      console.error(`could not build ${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  // install.sh is published next to the binaries so `dkv upgrade` can fetch it from the same place.
  const installer = join(DIST, "install.sh");
  await Bun.write(installer, Bun.file(join(ROOT, "install.sh")));
  built.push(installer);
  const lines = await Promise.all(built.map(async (path) => `${await sha256(path)}  ${basename(path)}`));
  await Bun.write(join(DIST, "SHA256SUMS"), `${lines.join("\n")}\n`);
  console.log(`wrote ${join(DIST, "SHA256SUMS")} (${built.length} files)`);
  if (failed.length > 0) {
    console.error(
      `release incomplete: ${failed.join(", ")} failed (cross targets download Bun runtimes once).`,
    );
    return false;
  }
  return true;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log("usage: bun run build.ts [--release] [--outfile FILE]");
    return 0;
  }
  const unknown = argv.filter(
    (arg, i) => arg !== "--release" && arg !== "--outfile" && argv[i - 1] !== "--outfile",
  );
  if (unknown.length > 0) {
    console.error(
      `unknown argument ${unknown.join(" ")}; usage: bun run build.ts [--release] [--outfile FILE]`,
    );
    return 2;
  }
  const version = await packageVersion();
  await mkdir(DIST, { recursive: true });
  if (argv.includes("--release")) {
    await rm(join(DIST, "SHA256SUMS"), { force: true });
    return (await buildRelease(version)) ? 0 : 1;
  }
  const outfileIndex = argv.indexOf("--outfile");
  const outfile = outfileIndex === -1 ? join(DIST, "dkv") : argv[outfileIndex + 1];
  if (outfile === undefined) {
    console.error("--outfile needs a path");
    return 2;
  }
  await buildHost(outfile, version);
  return 0;
}

process.exit(await main(Bun.argv.slice(2)));

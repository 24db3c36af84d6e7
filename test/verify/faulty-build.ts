import { readFile, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { ensureBinary, ROOT } from "../e2e/helpers.ts";

/**
 * dist/dkv-faulty: the same executable as dist/dkv, compiled with
 * `--define DKV_TEST_FAULTS=true`, which is the only way the deliberate bugs of
 * src/raft/storage/test-faults.ts can be switched on (then by DKV_TEST_FAULT=<name>).
 * It exists to show that the checkers flag broken builds; never ship it.
 */

export const FAULTY_BINARY = join(ROOT, "dist", "dkv-faulty");

let building: Promise<string> | undefined;

/** Built once per process, when missing or older than dist/dkv (itself rebuilt when stale). */
export function ensureFaultyBinary(): Promise<string> {
  building ??= (async () => {
    const normal = await stat(await ensureBinary());
    const faulty = await stat(FAULTY_BINARY).catch(() => undefined);
    if (faulty !== undefined && faulty.mtimeMs >= normal.mtimeMs) return FAULTY_BINARY;
    const manifest: { version?: unknown } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const version = typeof manifest.version === "string" ? manifest.version : "0.0.0";
    const staged = join(ROOT, "dist", `.dkv-faulty.build-${process.pid}`);
    const result = await Bun.build({
      entrypoints: [join(ROOT, "cli", "main.ts")],
      minify: { whitespace: true, syntax: true, identifiers: false },
      define: {
        DKV_BUILD_VERSION: JSON.stringify(`${version}-faulty`),
        DKV_TEST_FAULTS: "true",
      },
      compile: { outfile: staged, autoloadBunfig: false, autoloadDotenv: false },
    });
    if (!result.success) {
      throw new Error(`building dist/dkv-faulty failed:\n${result.logs.map(String).join("\n")}`);
    }
    await rename(staged, FAULTY_BINARY);
    return FAULTY_BINARY;
  })();
  return building;
}

import { defineOption } from "../src/config/schema.ts";
import { defineLeaf } from "./command.ts";
import { EXIT_OK, jsonLine } from "./io.ts";

/** Replaced by build.ts (`--define`) with package.json's version when compiling dist/dkv. */
declare const DKV_BUILD_VERSION: string | undefined;

/** The version: embedded in a compiled binary, read from package.json when run from source. */
export async function dkvVersion(): Promise<string> {
  if (typeof DKV_BUILD_VERSION === "string") return DKV_BUILD_VERSION;
  try {
    const manifest: { version?: unknown } = await Bun.file(
      new URL("../package.json", import.meta.url),
    ).json();
    return typeof manifest.version === "string" ? manifest.version : "unknown";
  } catch {
    return "unknown";
  }
}

const versionOptions = [
  defineOption({ name: "json", type: "boolean", default: false, description: "Print one JSON object" }),
] as const;

export const versionCommand = defineLeaf({
  path: "dkv version",
  description: "Print the version of dkv",
  options: versionOptions,
  run: async ({ options, io }) => {
    const version = await dkvVersion();
    const target = `${process.platform}-${process.arch}`;
    io.out(
      options.json
        ? jsonLine({ version, bun: Bun.version, target, compiled: Bun.isStandaloneExecutable })
        : `dkv v${version} (bun ${Bun.version}, ${target})\n`,
    );
    return EXIT_OK;
  },
});

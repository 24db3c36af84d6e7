import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { upgradeOptions } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK } from "./io.ts";

/** Where releases (binaries, SHA256SUMS, install.sh) are published; install.sh has the same default. */
export const RELEASE_BASE_URL = "https://github.com/dkv-dev/dkv/releases/latest/download";

const DOWNLOAD_TIMEOUT_MS = 30_000;

export const upgradeCommand = defineLeaf({
  path: "dkv upgrade",
  description: "Re-run install.sh to replace this dkv with the latest release (or a build from source)",
  options: upgradeOptions,
  examples: [
    "dkv upgrade",
    "dkv upgrade --path ~/.local/bin",
    "DKV_INSTALL_BASE_URL=https://mirror.example/dkv dkv upgrade",
    "dkv upgrade --script ./install.sh --source",
  ],
  notes: [
    "Downloads <base-url>/install.sh and runs it with sh; install.sh downloads dkv-<os>-<arch> and SHA256SUMS from the",
    "same base URL, verifies the checksum and installs; a wrong checksum installs nothing.",
    "Without --path the new binary replaces the running one (when dkv runs as a compiled binary).",
  ],
  run: async ({ options, io }) => {
    if (process.platform === "win32") {
      throw new DkvError(
        "USAGE",
        "dkv upgrade needs a POSIX shell; on Windows download dkv-windows-x64.exe instead.",
      );
    }
    const baseUrl = (options["base-url"] ?? RELEASE_BASE_URL).replace(/\/+$/, "");
    const args: string[] = [];
    const path = options.path ?? (Bun.isStandaloneExecutable ? dirname(process.execPath) : undefined);
    if (path !== undefined) args.push(`--path=${path}`);
    if (options.source) args.push("--source");

    let scratch: string | undefined;
    try {
      let script = options.script;
      if (script === undefined) {
        scratch = await mkdtemp(join(tmpdir(), "dkv-upgrade-"));
        script = join(scratch, "install.sh");
        const url = `${baseUrl}/install.sh`;
        io.err(`downloading ${url}\n`);
        const response = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) }).catch(
          (error) => {
            throw new DkvError(
              "UNAVAILABLE",
              `could not download ${url}: ${String(error)}; check the network or --base-url.`,
            );
          },
        );
        if (!response.ok) {
          throw new DkvError(
            "UNAVAILABLE",
            `could not download ${url}: HTTP ${response.status}; check --base-url.`,
          );
        }
        await Bun.write(script, response);
      }
      io.err(`running sh ${script} ${args.join(" ")}\n`);
      const child = Bun.spawn(["sh", script, ...args], {
        stdio: ["inherit", "inherit", "inherit"],
        env: { ...process.env, DKV_INSTALL_BASE_URL: baseUrl },
      });
      const status = await child.exited;
      if (status !== 0) {
        io.err(`dkv: install.sh failed with status ${status}; the installed dkv is unchanged.\n`);
        return EXIT_FAILED;
      }
      return EXIT_OK;
    } finally {
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
    }
  },
});

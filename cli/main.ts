#!/usr/bin/env bun
/**
 * The dkv executable: `bun run cli/main.ts ...` from a checkout, or dist/dkv once built.
 * Exit statuses: 0 the server answered, 1 the request failed, 2 usage error.
 */
import { DkvError } from "../src/errors.ts";
// A test build (dist/dkv-faulty) announces its faults on every command, not only when a
// command happens to load Raft (subcommands load lazily); a leaf module without imports.
import "../src/raft/storage/test-faults.ts";
import { runCli } from "./app.ts";
import { checkArgumentsUtf8, rawProcessArguments } from "./argv.ts";
import {
  EXIT_FAILED,
  EXIT_STDOUT_CLOSED,
  flushProcessIo,
  processIo,
  reportFailure,
  stdoutState,
} from "./io.ts";

/** Once stdout's reader is gone, how long a command (a watch) has to close its connections. */
const WIND_DOWN_MS = 1000;

/** Runs the CLI once every argument is known to be what was typed (valid UTF-8). */
async function runChecked(args: readonly string[]): Promise<number> {
  try {
    checkArgumentsUtf8(args, rawProcessArguments);
  } catch (error) {
    const beforeDashes = args.includes("--") ? args.slice(0, args.indexOf("--")) : args;
    return reportFailure(processIo, beforeDashes.includes("--json"), error);
  }
  return runCli(args, processIo);
}

let status: number;
try {
  const stdoutClosed = new Promise<number>((resolve) =>
    processIo.stdoutClosed?.addEventListener("abort", () => setTimeout(resolve, WIND_DOWN_MS, EXIT_FAILED), {
      once: true,
    }),
  );
  const args = process.argv.slice(2);
  status = await Promise.race([runChecked(args), stdoutClosed]);
} catch (error) {
  // A bug, not an operating condition: say so with the stack for the report.
  const failure = DkvError.from(error, "unknown");
  processIo.err(
    `dkv: internal error: ${failure.message}\n${error instanceof Error ? (error.stack ?? "") : ""}\n`,
  );
  status = EXIT_FAILED;
}
await flushProcessIo();
const stdout = stdoutState();
if (stdout === "closed") status = EXIT_STDOUT_CLOSED;
else if (stdout !== "open") {
  processIo.err(`dkv: cannot write to stdout: ${stdout.message}\n`);
  await flushProcessIo();
  status = EXIT_FAILED;
}
process.exit(status);

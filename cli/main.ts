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
import { EXIT_FAILED, flushProcessIo, processIo } from "./io.ts";

let status: number;
try {
  status = await runCli(process.argv.slice(2), processIo);
} catch (error) {
  // A bug, not an operating condition: say so with the stack for the report.
  const failure = DkvError.from(error, "unknown");
  processIo.err(
    `dkv: internal error: ${failure.message}\n${error instanceof Error ? (error.stack ?? "") : ""}\n`,
  );
  status = EXIT_FAILED;
}
await flushProcessIo();
process.exit(status);

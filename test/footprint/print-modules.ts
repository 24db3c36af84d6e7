/**
 * Preloaded (`bun --preload`) by cli-modules.test.ts: when the process exits, writes every
 * module it loaded (require.cache lists ES modules too, dynamic imports included) to the
 * file named by DKV_TEST_MODULES_FILE, one path a line.
 */
import { writeFileSync } from "node:fs";

const target = process.env.DKV_TEST_MODULES_FILE;
if (target === undefined || target === "") throw new Error("DKV_TEST_MODULES_FILE is not set");
process.on("exit", () => {
  writeFileSync(target, `${Object.keys(require.cache).join("\n")}\n`);
});

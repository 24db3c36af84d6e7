import { describe, expect, test } from "bun:test";
import type { CommandDef } from "citty";
import { rootCommand } from "../../cli/app.ts";
import { groupInfo, leafInfo, resolveValue } from "../../cli/command.ts";
import { parseCommandLine } from "../../src/config/parse.ts";
import { envVarsOf, type OptionSpec } from "../../src/config/schema.ts";

/** Every option of every command (leaves and groups' shared flags), with the command's path. */
async function everyOption(): Promise<{ path: string; option: OptionSpec }[]> {
  const found: { path: string; option: OptionSpec }[] = [];
  const pending: CommandDef[] = [await rootCommand()];
  while (pending.length > 0) {
    const command = pending.pop()!;
    const leaf = leafInfo(command);
    const group = groupInfo(command);
    for (const option of leaf?.options ?? group?.sharedOptions ?? []) {
      found.push({ path: leaf?.path ?? group?.path ?? "?", option });
    }
    const subCommands = await resolveValue(command.subCommands ?? {});
    for (const sub of Object.values(subCommands)) pending.push(await resolveValue(sub));
  }
  return found;
}

describe("DKV_* variables", () => {
  // The parser skips every variable lookup when no DKV_* variable is set (no call per
  // option at start-up, so the JIT compiles nothing): that is only right while every
  // option's variables are DKV_* ones.
  test("every option of every command reads only DKV_* variables", async () => {
    const options = await everyOption();
    expect(options.length).toBeGreaterThan(100);
    const foreign = options.flatMap(({ path, option }) =>
      envVarsOf(option)
        .filter((name) => !name.startsWith("DKV_"))
        .map((name) => `${path} --${option.name}: ${name}`),
    );
    expect(foreign).toEqual([]);
  });

  const specs = [
    { name: "timeout", type: "duration", default: 5_000, description: "t", env: ["DKV_TIMEOUT", "DKV_OLD"] },
    { name: "shard", type: "number", default: 100, description: "s" },
  ] as const satisfies readonly OptionSpec[];

  test("a variable is read when it is the only DKV_* one set, an empty one is not", () => {
    const parsed = parseCommandLine([], specs, [], { PATH: "/bin", DKV_OLD: "2s", DKV_TIMEOUT: "" });
    expect(parsed.options).toEqual({ timeout: 2_000, shard: 100 });
    expect(parsed.sources).toEqual({ timeout: "DKV_OLD", shard: "default" });
  });

  test("without DKV_* variables every option has its default; a flag still wins", () => {
    const parsed = parseCommandLine(["--shard", "7"], specs, [], { PATH: "/bin", OTHER: "x" });
    expect(parsed.options).toEqual({ timeout: 5_000, shard: 7 });
    expect(parsed.sources).toEqual({ timeout: "default", shard: "flag" });
  });
});

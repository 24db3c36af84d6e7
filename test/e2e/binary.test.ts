import { beforeAll, describe, expect, test } from "bun:test";
import {
  clientOptions,
  envVarsOf,
  lockTtlOption,
  lockWaitOption,
  type OptionSpec,
  perfOptions,
  serveOptions,
  upgradeOptions,
} from "../../src/config/schema.ts";
import { ensureBinary, onlyJson, runDkv } from "./helpers.ts";

/** The compiled binary on its own: no Bun, no PATH, no node_modules; help and version. */

beforeAll(async () => {
  await ensureBinary();
}, 120_000);

describe("dist/dkv in an empty environment", () => {
  test("version runs without Bun on PATH and reports the package version", async () => {
    const packageVersion = (await Bun.file(`${import.meta.dir}/../../package.json`).json()).version;
    const plain = await runDkv(["version"]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain(`dkv v${packageVersion}`);
    const json = onlyJson(await runDkv(["version", "--json"]));
    expect(json).toMatchObject({ version: packageVersion, compiled: true });
    expect((await runDkv(["--version"])).stdout.trim()).toBe(`dkv ${packageVersion}`);
  });

  test("dkv --help lists every command and exits 0", async () => {
    const result = await runDkv(["--help"]);
    expect(result.code).toBe(0);
    for (const command of ["serve", "kv", "lock", "version", "upgrade"]) {
      expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    }
  });

  test("dkv with no command prints help on stderr and exits 2", async () => {
    const result = await runDkv([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Commands:");
  });

  const kvClient = clientOptions(100, "timeout");
  const leaseClient = clientOptions(200, "request-timeout");
  const helpCases: [string, string[], readonly OptionSpec[]][] = [
    ["serve", ["serve"], serveOptions],
    ["kv", ["kv"], kvClient],
    ["kv set", ["kv", "set"], kvClient],
    ["kv setE", ["kv", "setE"], kvClient],
    ["kv setEIfUnset", ["kv", "setEIfUnset"], kvClient],
    ["kv get", ["kv", "get"], kvClient],
    ["kv has", ["kv", "has"], kvClient],
    ["kv expire", ["kv", "expire"], kvClient],
    ["kv del", ["kv", "del"], kvClient],
    ["kv perf", ["kv", "perf"], [...kvClient, ...perfOptions]],
    ["lock acquire", ["lock", "acquire"], [...leaseClient, lockTtlOption, lockWaitOption]],
    ["lock refresh", ["lock", "refresh"], [...leaseClient, lockTtlOption]],
    ["lock release", ["lock", "release"], clientOptions(200, "timeout")],
    ["upgrade", ["upgrade"], upgradeOptions],
  ];

  test.each(helpCases)(
    "dkv %s --help lists every flag with its default and DKV_* variable",
    async (_, path, options) => {
      const result = await runDkv([...path, "--help"]);
      expect(result.code).toBe(0);
      const help = result.stdout;
      for (const option of options) {
        expect(help).toContain(`  --${option.name}`);
        const block = help.slice(help.indexOf(`  --${option.name}`));
        const firstLines = block.split("\n").slice(0, 6).join("\n");
        expect(firstLines).toMatch(/default: /);
        for (const variable of envVarsOf(option)) expect(firstLines).toContain(variable);
      }
    },
  );

  test("the aliases of kv commands have help too", async () => {
    expect((await runDkv(["kv", "expr", "--help"])).stdout).toContain("dkv kv expire");
    expect((await runDkv(["kv", "delete", "--help"])).stdout).toContain("dkv kv del");
  });
});

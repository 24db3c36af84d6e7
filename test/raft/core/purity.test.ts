import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const coreDir = join(import.meta.dir, "..", "..", "..", "src", "raft", "core");

/** What would make the core impure: I/O modules, clocks, timers, ambient randomness. */
const forbidden: [RegExp, string][] = [
  [/\bDate\.now\b|\bnew Date\b/, "wall clock"],
  [/\bperformance\.now\b/, "monotonic clock"],
  [/\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b|\bqueueMicrotask\b/, "timer"],
  [/\bMath\.random\b|\bcrypto\./, "ambient randomness"],
  [/\bconsole\.|\bprocess\.|\bBun\./, "global I/O"],
  [/\bawait\b|\basync\b|\bPromise\b/, "asynchrony"],
];

function importsOf(source: string): string[] {
  return [
    ...source.matchAll(/(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']/g),
  ].map((m) => m[1] ?? m[2]!);
}

function coreSources(): { file: string; source: string }[] {
  return readdirSync(coreDir)
    .filter((f) => f.endsWith(".ts"))
    .map((file) => ({ file, source: readFileSync(join(coreDir, file), "utf8") }));
}

test("the Raft core imports only its own modules", () => {
  const files = coreSources();
  expect(files.length).toBeGreaterThan(5);
  for (const { file, source } of files) {
    for (const specifier of importsOf(source)) {
      expect({ file, specifier, local: /^\.\/[\w-]+\.ts$/.test(specifier) }).toEqual({
        file,
        specifier,
        local: true,
      });
    }
  }
});

test("the Raft core uses no clock, timer, ambient randomness or global I/O", () => {
  for (const { file, source } of coreSources()) {
    const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    for (const [pattern, what] of forbidden) {
      expect({ file, what, found: pattern.test(code) }).toEqual({ file, what, found: false });
    }
  }
});

test("the purity scan catches a forbidden call and a foreign import", () => {
  expect(forbidden.some(([p]) => p.test("const t = Date.now();"))).toBe(true);
  expect(forbidden.some(([p]) => p.test("const r = Math.random();"))).toBe(true);
  expect(importsOf('import { readFileSync } from "node:fs";')).toEqual(["node:fs"]);
});

/**
 * Runs every benchmark in turn: `bun run bench`. Each module exports
 * `run()` (sync or async) and also runs alone with `bun test/bench/<name>.ts`.
 * To add one, append it to the list.
 */
const benchmarks: { name: string; load: () => Promise<{ run: () => unknown }> }[] = [
  { name: "engine", load: () => import("./engine.ts") },
  { name: "serializers", load: () => import("./serializers.ts") },
  { name: "raft-core", load: () => import("./raft-core.ts") },
];

for (const bench of benchmarks) {
  console.log(`\n== ${bench.name} ==`);
  const module = await bench.load();
  await module.run();
}

export {};

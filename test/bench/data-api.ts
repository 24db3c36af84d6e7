/**
 * Data API benchmarks, one run each (numbers in the README's "Data API" section):
 *
 * 1. Ordered index structure: a sorted array of blocks (what Maple uses) against a skip
 *    list, both holding the same shuffled keys: insert, remove and a 100-key range scan.
 * 2. get/set cost of today's Maple (revisions + ordered index) against a baseline Maple
 *    without them, on the same shuffled keys (target: at most 1.3x). The baseline is the
 *    engine of another checkout: `--baseline /path/to/checkout` (e.g. the commit before
 *    the data API); without it this part is skipped. `--also DIR` adds a third engine to
 *    the same alternating rounds (e.g. the commit before a change, to show its effect).
 *    `--now DIR` measures DIR's engine in the `now` slot instead of this checkout's.
 *    Slot bias (fixed): with the same engine code in `now` and `also`, `now` used to read
 *    slower in the insert and insertFold rows (insert 1.70-2.01x vs 1.35-1.58x in 7
 *    runs). Cause: the last engine this file listed stays reachable from compiled code
 *    for a while, so the next engine's measurements ran beside it; `now` followed `also`
 *    (indexed, larger) in two rounds of three, `also` followed `before`.
 *    Each engine's measurements now follow a small engine's run (see overhead), and the
 *    heap at each engine's start is printed (the same for all when none is carried).
 *    Left: two copies of one engine still read apart in one process by up to ~0.4x in
 *    the insert row, either way round, for the whole run (insertTurns ~0.1x): each copy
 *    is compiled on its own. `--processes P` pools the rounds of P child processes (see
 *    overheadInProcesses; there one-piece folds read ~0.3x higher, less warmed). To
 *    compare two builds, load both alike and run them both ways (`--now A --also B`,
 *    then swapped), or in processes.
 *    Rows: `insert` (the writer's CPU per new key), `insertFold` (+ the fold of every
 *    noted key, in one piece by a list after the inserts), `insertTurns` (the inserts in
 *    batches of 1000 per event-loop turn with the background folds between, then a list:
 *    the whole process's CPU, what a server pays per new key; `turnsBeside`: its part
 *    outside the write loops, i.e. the folds), `insertTurnsDel` (the same with one delete
 *    of an earlier key per turn, as a store with deletes or expiries sees: its folds then
 *    have removals among their notes), `setNs` (overwrite),
 *    `getNs`, and where /proc has the JS thread's schedstat `insertTurnsJs` (insertTurns
 *    counting the JS thread's CPU alone: the difference is the collector's helper
 *    threads). Every engine that lists has its folds counted, `--also`'s too.
 * 3. A 1M-key build (CPU per insert vs the baseline, alternating rounds), the first
 *    page after it (which settles the ordered index: reported apart, by its maximum), then
 *    100-key pages (list with a prefix/after) out of the 1M keys (target: at most 1 ms).
 * 4. `--first-list`: the first list after a bulk load of 1M keys (`--first-list-keys N`)
 *    as the event loop sees it: the longest turn beside it (a setImmediate ticker's
 *    largest gap, in JS-thread CPU and wall time) and the list's own time, alternating
 *    with the baseline engine (which builds the index inside the list's turn).
 *
 * 5. `--listed-load`: a bulk load into a store listed before it, then the first page
 *    (see listedLoad).
 *
 * 6. `--first-page`: the first 100-key page of a never-listed store loaded a batch per
 *    turn, loaded in one turn, and restarted from its snapshot (see firstPage). Runs alone.
 * 7. `--heap-per-key DIR index|none`: heap and RSS per key of DIR's engine, with its ordered
 *    index or without (see heapPerKey). Runs alone; one process per measurement.
 *
 *   bun test/bench/data-api.ts [--baseline DIR [--also DIR] [--now DIR] [--processes P]] [--rounds N] [--keys N]
 *     [--page-rounds N] [--skip-structures] [--skip-page] [--first-list] [--listed-load]
 *     [--first-page] [--heap-per-key DIR index|none] [--first-list-keys N]
 */
import { existsSync, readFileSync } from "node:fs";
import type { ListPage } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";

const NOW_MS = 1_700_000_000_000;

interface EngineLike {
  set(key: string, value: Uint8Array, nowMs: number): void;
  get(key: string, nowMs: number): Uint8Array | undefined;
  delete(key: string, nowMs: number): void;
}

function arg(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
}

function shuffled<T>(items: T[], seed: number): T[] {
  const out = items.slice();
  let state = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function makeKeys(count: number): string[] {
  // Flat strings, as a decoder would produce them.
  return Array.from({ length: count }, (_, i) => Buffer.from(`user:${i.toString(36)}:profile`).toString());
}

function timeMs(work: () => void): number {
  const start = performance.now();
  work();
  return performance.now() - start;
}

/**
 * CPU time of `work` in ms (this process, all threads: the GC's included). On a shared,
 * loaded machine wall time mostly measures when the scheduler ran us; CPU time does not.
 */
function cpuMs(work: () => void): number {
  const start = process.cpuUsage();
  work();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;
const HAS_SCHEDSTAT = existsSync(SCHEDSTAT);

/** CPU time of the JS thread in ns (its first schedstat field); 0 where there is no /proc. */
function mainThreadNs(): number {
  return HAS_SCHEDSTAT ? Number(readFileSync(SCHEDSTAT, "utf8").split(" ")[0]) : 0;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

/** A plain skip list of strings (the alternative measured against the blocks). */
class SkipList {
  private readonly head: SkipNode = { key: "", next: [] };
  private level = 1;
  private seed = 12345;

  private randomLevel(): number {
    let level = 1;
    for (;;) {
      this.seed = (Math.imul(this.seed, 1_103_515_245) + 12_345) >>> 0;
      // The high bits: an LCG's low bits have a short period (level would barely vary).
      if (this.seed >>> 30 !== 0 || level >= 24) return level;
      level++;
    }
  }

  insert(key: string): void {
    const update: SkipNode[] = [];
    let node = this.head;
    for (let l = this.level - 1; l >= 0; l--) {
      while (node.next[l] !== undefined && compareKeys(node.next[l]!.key, key) < 0) node = node.next[l]!;
      update[l] = node;
    }
    const level = this.randomLevel();
    for (; this.level < level; this.level++) update[this.level] = this.head;
    const fresh: SkipNode = { key, next: new Array(level) };
    for (let l = 0; l < level; l++) {
      fresh.next[l] = update[l]!.next[l];
      update[l]!.next[l] = fresh;
    }
  }

  remove(key: string): void {
    let node = this.head;
    for (let l = this.level - 1; l >= 0; l--) {
      while (node.next[l] !== undefined && compareKeys(node.next[l]!.key, key) < 0) node = node.next[l]!;
      if (node.next[l]?.key === key) node.next[l] = node.next[l]!.next[l];
    }
  }

  scan(from: string, count: number): number {
    let node = this.head;
    for (let l = this.level - 1; l >= 0; l--) {
      while (node.next[l] !== undefined && compareKeys(node.next[l]!.key, from) < 0) node = node.next[l]!;
    }
    let seen = 0;
    for (let n = node.next[0]; n !== undefined && seen < count; n = n.next[0]) seen++;
    return seen;
  }
}

interface SkipNode {
  key: string;
  next: (SkipNode | undefined)[];
}

function indexStructures(count: number): void {
  const keys = shuffled(makeKeys(count), 7);
  const probes = keys.slice(0, 1000);
  const blocks = new OrderedKeys();
  const skip = new SkipList();
  const rows: [string, number, number][] = [];
  rows.push([
    `insert ${count} keys (ms)`,
    timeMs(() => {
      for (const k of keys) blocks.insert(k);
    }),
    timeMs(() => {
      for (const k of keys) skip.insert(k);
    }),
  ]);
  let sink = 0;
  rows.push([
    "1000 scans of 100 keys (ms)",
    timeMs(() => {
      for (const probe of probes) {
        let n = 0;
        blocks.scan(probe, false, () => ++n < 100);
        sink += n;
      }
    }),
    timeMs(() => {
      for (const probe of probes) sink += skip.scan(probe, 100);
    }),
  ]);
  const half = keys.slice(0, count >> 1);
  rows.push([
    `remove ${half.length} keys (ms)`,
    timeMs(() => {
      for (const k of half) blocks.remove(k);
    }),
    timeMs(() => {
      for (const k of half) skip.remove(k);
    }),
  ]);
  console.log(`\nOrdered index: sorted blocks vs skip list (${count} keys, shuffled; checksum ${sink})`);
  for (const [name, a, b] of rows)
    console.log(
      `  ${name.padEnd(30)} blocks ${a.toFixed(1).padStart(8)}   skip list ${b.toFixed(1).padStart(8)}`,
    );
}

/** Keys a server's turn applies in the `insertTurns` row: a batch of writes, then the loop's turn. */
const TURN_WRITES = 1000;

/**
 * CPU per new key with the writes in batches of TURN_WRITES per event-loop turn, as a
 * server applies them: an engine that folds its index in the background does so in the
 * turns between (counted: the whole process's CPU from the first write until a list after
 * the last, which folds whatever is left).
 */
async function insertInTurns(
  engine: EngineLike,
  keys: string[],
  values: Uint8Array[],
  deletesPerTurn = 0,
): Promise<{ insertTurns: number; turnsBeside: number; insertTurnsJs: number }> {
  const start = process.cpuUsage();
  const jsStart = mainThreadNs();
  let writesMs = 0;
  for (let i = 0; i < keys.length; i += TURN_WRITES) {
    const end = Math.min(keys.length, i + TURN_WRITES);
    writesMs += cpuMs(() => {
      for (let j = i; j < end; j++) engine.set(keys[j]!, values[j]!, NOW_MS);
      for (let d = 1; d <= deletesPerTurn && d <= i; d++) engine.delete(keys[i - d]!, NOW_MS);
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (isListing(engine)) engine.list({ prefix: "", limit: 1, after: undefined }, NOW_MS);
  const used = process.cpuUsage(start);
  const totalMs = (used.user + used.system) / 1000;
  const jsNs = mainThreadNs() - jsStart;
  // Beside the write loops: the turns' background folds and the last list (and, for any
  // engine, the loop's own turns: an engine without folds shows what those cost).
  return {
    insertTurns: (totalMs * 1e6) / keys.length,
    turnsBeside: ((totalMs - writesMs) * 1e6) / keys.length,
    // The JS thread's part (writes, folds, the collector's work done there): the rest of
    // insertTurns is the collector's helper threads.
    insertTurnsJs: jsNs / keys.length,
  };
}

/**
 * A small engine of this checkout through engineOps and insertInTurns (see `overhead`),
 * repeated while the heap after a full collection is more than a few MB above `baseMb`
 * (an engine still held; one run did not always let it go), at most 4 times. Returns the
 * heap in MB after the last one.
 */
async function flushEngines(keys: string[], values: Uint8Array[], baseMb: number): Promise<number> {
  let heapMb = 0;
  for (let tries = 0; tries < 4; tries++) {
    engineOps(new MapleDB(), keys, values);
    await insertInTurns(new MapleDB(), keys, values, 1);
    Bun.gc(true);
    heapMb = process.memoryUsage().heapUsed / 2 ** 20;
    if (heapMb < baseMb + 4) break;
  }
  return heapMb;
}

function isListing(engine: EngineLike): engine is ListingEngine {
  return typeof (engine as Partial<ListingEngine>).list === "function";
}

function engineOps(
  engine: EngineLike,
  keys: string[],
  values: Uint8Array[],
): { insert: number; insertFold: number; setNs: number; getNs: number } {
  // Every key is new the first time (an insert), then overwritten and read (the steady state).
  const insertMs = cpuMs(() => {
    for (let i = 0; i < keys.length; i++) engine.set(keys[i]!, values[i]!, NOW_MS);
  });
  // The ordered index's upkeep the inserts leave to the background (an engine that keeps
  // one: a list folds every note now, in one piece), so insert + fold is what the inserts
  // cost in all. An engine without a list (before the data API) has none to do.
  const foldMs = isListing(engine)
    ? cpuMs(() => void engine.list({ prefix: "", limit: 1, after: undefined }, NOW_MS))
    : 0;
  const setMs = cpuMs(() => {
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < keys.length; i++) engine.set(keys[i]!, values[i]!, NOW_MS);
  });
  let sink = 0;
  const getMs = cpuMs(() => {
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < keys.length; i++) sink += engine.get(keys[i]!, NOW_MS)!.length;
  });
  if (sink === 0) throw new Error("unreachable");
  return {
    insert: (insertMs * 1e6) / keys.length,
    insertFold: ((insertMs + foldMs) * 1e6) / keys.length,
    setNs: (setMs * 1e6) / (3 * keys.length),
    getNs: (getMs * 1e6) / (3 * keys.length),
  };
}

async function engineOf(dir: string): Promise<() => EngineLike> {
  const module = (await import(`${dir}/src/db/maple/index.ts`)) as { MapleDB: new () => EngineLike };
  return () => new module.MapleDB();
}

type OverheadRow = ReturnType<typeof engineOps> & {
  insertTurns: number;
  turnsBeside: number;
  insertTurnsDel: number;
  insertTurnsJs: number;
};

interface OverheadRuns {
  /** Engine names in slot order ("now", "before", then "also" when given). */
  names: string[];
  /** Per engine, a row per measured round; rows at one index are from one round. */
  runs: Record<string, OverheadRow[]>;
  /** The heap at each engine's start, after a full collection (see flushEngines). */
  startHeapsMb: number[];
}

const OVERHEAD_KEYS = 100_000;

/**
 * The engines' rounds in this process: `rounds` measured, after `warmRounds` whose rows
 * are dropped; round r starts with engine (offset + r) mod the engine count.
 */
async function measureOverhead(
  baselineDir: string,
  alsoDir: string | undefined,
  nowDir: string | undefined,
  rounds: number,
  offset: number,
  warmRounds: number,
): Promise<OverheadRuns> {
  const keys = shuffled(makeKeys(OVERHEAD_KEYS), 3);
  const values = keys.map((_, i) => new Uint8Array(128).fill(i & 0xff));
  const engines: [string, () => EngineLike][] = [
    // `--now DIR`: another checkout's engine in this slot (see the header).
    ["now", nowDir === undefined ? () => new MapleDB() : await engineOf(nowDir)],
    ["before", await engineOf(baselineDir)],
  ];
  if (alsoDir !== undefined) engines.push(["also", await engineOf(alsoDir)]);
  const runs: Record<string, OverheadRow[]> = Object.fromEntries(engines.map(([name]) => [name, []]));
  const startHeapsMb: number[] = [];
  Bun.gc(true);
  const baseHeapMb = process.memoryUsage().heapUsed / 2 ** 20;
  // Alternate the engines, each round starting with the next one, so machine load
  // affects all alike; a full collection before each, so none pays for another's garbage.
  for (let round = 0; round < warmRounds + rounds; round++) {
    for (let i = 0; i < engines.length; i++) {
      const [name, make] = engines[(offset + round + i) % engines.length]!;
      // Unmeasured, before each engine's measurements: a small engine of this checkout
      // through the same paths. Compiled code of this file keeps the last engine it listed
      // (a run of the baseline, which never lists, did not let it go; a small MapleDB did)
      // reachable for a while (a heap snapshot showed a FunctionCodeBlock holding it; ~18 MB
      // for an indexed engine of these keys), so every collection in the next measurements
      // marked it too. The baseline never lists, so it ran beside whichever indexed engine
      // came before it, and `now` (after `also` in two rounds of three) read slower than
      // `also` in the insert rows with the same code. `startHeapsMb` shows none is carried
      // (the small run is repeated while the heap says one is, see flushEngines).
      const heapMb = await flushEngines(keys.slice(0, 2000), values, baseHeapMb);
      const ops = engineOps(make(), keys, values);
      Bun.gc(true);
      const turns = await insertInTurns(make(), keys, values);
      Bun.gc(true);
      const withDeletes = await insertInTurns(make(), keys, values, 1);
      if (round < warmRounds) continue;
      startHeapsMb.push(heapMb);
      runs[name]!.push({ ...ops, ...turns, insertTurnsDel: withDeletes.insertTurns });
    }
  }
  return { names: engines.map(([name]) => name), runs, startHeapsMb };
}

/**
 * `--processes P`: the rounds in P child processes, one after another (each `--rounds`
 * measured after a warm round, each starting the rotation one engine later), pooled. Two
 * copies of one engine in one process can read apart by up to ~0.4x in the insert row for
 * the whole run (each copy is compiled on its own; which one comes out faster differs
 * from run to run): over processes that becomes per-round noise the medians absorb.
 */
async function overheadInProcesses(processes: number, rounds: number): Promise<OverheadRuns> {
  const pooled: OverheadRuns = { names: [], runs: {}, startHeapsMb: [] };
  const passed = ["--baseline", "--also", "--now"].flatMap((flag) => {
    const value = arg(flag);
    return value === undefined ? [] : [flag, value];
  });
  for (let p = 0; p < processes; p++) {
    const child = Bun.spawnSync(
      [
        process.execPath,
        import.meta.path,
        "--overhead-child",
        ...passed,
        "--rounds",
        String(rounds),
        "--round-offset",
        String(p),
      ],
      { stdout: "pipe", stderr: "inherit" },
    );
    if (child.exitCode !== 0) throw new Error(`overhead child ${p} exited with ${child.exitCode}`);
    const lines = child.stdout.toString().trim().split("\n");
    const result = JSON.parse(lines[lines.length - 1]!) as OverheadRuns;
    pooled.names = result.names;
    for (const name of result.names) {
      pooled.runs[name] = [...(pooled.runs[name] ?? []), ...result.runs[name]!];
    }
    pooled.startHeapsMb.push(...result.startHeapsMb);
  }
  return pooled;
}

async function overhead(
  baselineDir: string | undefined,
  alsoDir: string | undefined,
  nowDir: string | undefined,
  rounds: number,
  processes: number,
): Promise<void> {
  if (baselineDir === undefined) {
    console.log("\nget/set overhead: skipped (pass --baseline DIR, a checkout before the data API)");
    return;
  }
  const measured =
    processes > 0
      ? await overheadInProcesses(processes, rounds)
      : await measureOverhead(baselineDir, alsoDir, nowDir, rounds, 0, 0);
  const { names, runs, startHeapsMb } = measured;
  const total = runs.before!.length;
  const where = processes > 0 ? ` (${processes} processes of ${rounds} after a warm round)` : "";
  console.log(
    `\nget/set vs Maple before the data API (${OVERHEAD_KEYS} keys, 128-byte values; CPU ns per op, median of ${total} alternating rounds${where}; ratio = median of the rounds' ratios; target <= 1.3x)`,
  );
  console.log(
    `  heap at each engine's start (after a full collection): ${Math.min(...startHeapsMb).toFixed(1)}-${Math.max(...startHeapsMb).toFixed(1)} MB`,
  );
  const before = runs.before!;
  for (const name of names) {
    if (name === "before") continue;
    const mine = runs[name]!;
    const ops = ["insert", "insertFold", "insertTurns", "insertTurnsDel", "setNs", "getNs"] as const;
    for (const op of HAS_SCHEDSTAT ? [...ops, "insertTurnsJs" as const] : ops) {
      const ratios = mine.map((r, i) => r[op] / before[i]![op]);
      console.log(
        `  ${name.padEnd(5)} ${op.padEnd(14)} ${median(mine.map((r) => r[op]))
          .toFixed(0)
          .padStart(6)} ns   before ${median(before.map((r) => r[op]))
          .toFixed(0)
          .padStart(
            6,
          )} ns   ${median(ratios).toFixed(2)}x   (per round ${ratios.map((x) => x.toFixed(2)).join(" ")})`,
      );
    }
    // The background folds' share of insertTurns (the baseline has none: its figure is
    // the loop's turns alone), and against the first engine's when comparing two.
    const beside = median(mine.map((r) => r.turnsBeside));
    const first = runs[names[0]!]!;
    const vsFirst =
      name === names[0]
        ? ""
        : `; vs ${names[0]}'s ${median(mine.map((r, i) => r.turnsBeside / first[i]!.turnsBeside)).toFixed(2)}x`;
    console.log(
      `  ${name.padEnd(5)} turnsBeside    ${beside.toFixed(0).padStart(6)} ns   before ${median(
        before.map((r) => r.turnsBeside),
      )
        .toFixed(0)
        .padStart(6)} ns   (CPU outside the write loops: folds + the last list${vsFirst})`,
    );
  }
}

interface ListingEngine extends EngineLike {
  list(options: { prefix: string; limit: number; after: string | undefined }, nowMs: number): ListPage;
}

/**
 * The 1M-key build (CPU time, alternating with the baseline engine when there is one,
 * so both see the same load), then pages out of it. The index is settled by the first
 * list after writes (see DeferredOrder), so the first page after the build carries the
 * sort of every key built: it is reported on its own (its maximum over the rounds), and
 * the pages after it are what a steady reader sees.
 */
async function pageFromMillion(
  count: number,
  baselineDir: string | undefined,
  rounds: number,
): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => `svc/${(i * 7919) % count}`.padEnd(12, "_"));
  const value = new Uint8Array(16);
  const build = (db: EngineLike): number =>
    cpuMs(() => {
      for (let i = 0; i < count; i++) db.set(keys[i]!, value, NOW_MS);
    });
  const before = baselineDir === undefined ? undefined : await engineOf(baselineDir);
  const buildNow: number[] = [];
  const buildBefore: number[] = [];
  const firstCpu: number[] = [];
  const firstWall: number[] = [];
  const firstMain: number[] = [];
  let db: ListingEngine | undefined;
  for (let round = 0; round < rounds; round++) {
    db = undefined;
    if (before !== undefined && round % 2 === 1) {
      Bun.gc(true);
      buildBefore.push(build(before()));
    }
    Bun.gc(true);
    const fresh = new MapleDB();
    buildNow.push(build(fresh));
    const wallStart = performance.now();
    const mainStart = mainThreadNs();
    firstCpu.push(
      cpuMs(() => {
        if (fresh.list({ prefix: "svc/", limit: 100 }, NOW_MS).items.length !== 100)
          throw new Error("short page");
      }),
    );
    firstWall.push(performance.now() - wallStart);
    firstMain.push((mainThreadNs() - mainStart) / 1e6);
    db = fresh;
    if (before !== undefined && round % 2 === 0) {
      Bun.gc(true);
      buildBefore.push(build(before()));
    }
  }
  // Wall and CPU time per page: on a loaded machine a page's wall time includes the time
  // the scheduler gave other processes (CPU time does not; it does include the GC's,
  // also that of collector threads running beside the page). "main" is the CPU time of
  // the JS thread alone (Linux schedstat, ns; includes one read of that file): what the
  // page's caller waits for when the machine is not oversubscribed.
  const pages = (): { wall: number[]; cpu: number[]; main: number[] } => {
    const wall: number[] = [];
    const cpu: number[] = [];
    const main: number[] = [];
    let after: string | undefined;
    for (let page = 0; page < 200; page++) {
      const start = performance.now();
      const mainStart = mainThreadNs();
      let result: ListPage | undefined;
      cpu.push(
        cpuMs(() => {
          result = db!.list({ prefix: "svc/", limit: 100, after }, NOW_MS);
        }),
      );
      wall.push(performance.now() - start);
      main.push((mainThreadNs() - mainStart) / 1e6);
      if (result?.items.length !== 100) throw new Error("short page");
      after = page % 20 === 19 ? undefined : result.next;
    }
    const sorted = (samples: number[]) => samples.sort((a, b) => a - b);
    return { wall: sorted(wall), cpu: sorted(cpu), main: sorted(main) };
  };
  const p = (samples: number[], q: number) => samples[Math.floor(samples.length * q)]!.toFixed(3);
  const show = (label: string, { wall, cpu, main }: { wall: number[]; cpu: number[]; main: number[] }) =>
    console.log(
      `  ${label.padEnd(40)} wall median ${p(wall, 0.5)} p99 ${p(wall, 0.99)} max ${p(wall, 1 - 1e-9)} ms; CPU median ${p(cpu, 0.5)} p99 ${p(cpu, 0.99)} ms; main thread median ${p(main, 0.5)} p99 ${p(main, 0.99)} max ${p(main, 1 - 1e-9)} ms`,
    );
  console.log(
    `\n1M-key build and 100-key pages out of it (${count} keys, ${rounds} rounds; target <= 1 ms a page)`,
  );
  const perKey = (ms: number) => ((ms * 1e6) / count).toFixed(0);
  if (buildBefore.length > 0) {
    const ratios = buildNow.map((ms, i) => ms / buildBefore[i]!);
    console.log(
      `  build, CPU ns per insert: now ${perKey(median(buildNow))}, before ${perKey(median(buildBefore))}: ${median(ratios).toFixed(2)}x (per round ${ratios.map((x) => x.toFixed(2)).join(" ")})`,
    );
  } else {
    console.log(
      `  build, CPU ns per insert: ${perKey(median(buildNow))} (pass --baseline DIR for the ratio)`,
    );
  }
  console.log(
    `  first page after the build (settles the index: sorts every key): CPU max ${Math.max(...firstCpu).toFixed(1)} ms (rounds ${firstCpu.map((x) => x.toFixed(0)).join(" ")}), main thread max ${Math.max(...firstMain).toFixed(1)} ms, wall max ${Math.max(...firstWall).toFixed(1)} ms; build + first page vs before's build: ${buildBefore.length > 0 ? median(buildNow.map((ms, i) => (ms + firstCpu[i]!) / buildBefore[i]!)).toFixed(2) : "?"}x`,
  );
  // Straight after the build the collector is still working off the million inserts' garbage.
  show("next 200 pages, right after the first", pages());
  Bun.gc(true);
  show("after one full collection (200 pages)", pages());
}

interface OrderingEngine extends ListingEngine {
  orderReady?: () => boolean;
  prepareOrder?: () => Promise<void>;
}

/** CPU time of the JS thread alone, in ms (process.threadCpuUsage). */
function threadCpuMs(): number {
  const used = process.threadCpuUsage();
  return (used.user + used.system) / 1000;
}

/**
 * The first list after a bulk load, as the event loop sees it: a setImmediate ticker runs
 * beside the list, and the longest gap between two of its ticks is the longest turn
 * anything else (a Raft tick, another client) waited. Gaps in JS-thread CPU time (what
 * the turn itself cost, unaffected by other processes) and in wall time; and the first
 * list's own wall and JS-thread CPU time, from asking to the answer. The engine before
 * builds the index inside the list's turn; this one, when it can (`prepareOrder`), in
 * slices between turns.
 */
async function firstListTurns(count: number, baselineDir: string | undefined, rounds: number): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => `svc/${(i * 7919) % count}`.padEnd(12, "_"));
  const value = new Uint8Array(16);
  const engines: [string, () => OrderingEngine][] = [["now", () => new MapleDB()]];
  if (baselineDir !== undefined)
    engines.push(["before", (await engineOf(baselineDir)) as () => OrderingEngine]);
  const runs = new Map<
    string,
    { turnCpu: number; turnWall: number; wall: number; cpu: number; slices: number }[]
  >(engines.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < engines.length; i++) {
      const [name, make] = engines[(round + i) % engines.length]!;
      const db = make();
      for (let k = 0; k < count; k++) db.set(keys[k]!, value, NOW_MS);
      Bun.gc(true);
      let ticking = true;
      let lastCpu = threadCpuMs();
      let lastWall = performance.now();
      let turnCpu = 0;
      let turnWall = 0;
      let ticks = 0;
      const tick = (): void => {
        const cpu = threadCpuMs();
        const wall = performance.now();
        turnCpu = Math.max(turnCpu, cpu - lastCpu);
        turnWall = Math.max(turnWall, wall - lastWall);
        lastCpu = cpu;
        lastWall = wall;
        ticks++;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      // Let the ticker start, so the first list begins in a turn of its own.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const startWall = performance.now();
      const startCpu = threadCpuMs();
      const startTicks = ticks;
      if (db.prepareOrder !== undefined && db.orderReady !== undefined) {
        while (!db.orderReady()) await db.prepareOrder();
      }
      if (db.list({ prefix: "svc/", limit: 100, after: undefined }, NOW_MS).items.length !== 100)
        throw new Error("short page");
      const wall = performance.now() - startWall;
      const cpu = threadCpuMs() - startCpu;
      const turns = ticks - startTicks;
      // One more tick closes the gap the list's own turn opened.
      await new Promise<void>((resolve) => setImmediate(resolve));
      ticking = false;
      runs.get(name)!.push({ turnCpu, turnWall, wall, cpu, slices: turns });
    }
  }
  console.log(
    `
first list after a bulk load of ${count} keys: longest event-loop turn beside it and the list's own time (median of ${rounds} alternating rounds; JS-thread CPU and wall ms)`,
  );
  const now = runs.get("now")!;
  const before = runs.get("before");
  for (const [name] of engines) {
    const r = runs.get(name)!;
    const m = (pick: (x: (typeof r)[number]) => number) => median(r.map(pick)).toFixed(1);
    console.log(
      `  ${name.padEnd(6)} longest turn CPU ${m((x) => x.turnCpu)} (max ${Math.max(...r.map((x) => x.turnCpu)).toFixed(1)}) wall ${m((x) => x.turnWall)}; first list wall ${m((x) => x.wall)} CPU ${m((x) => x.cpu)}; ticker turns during it ${m((x) => x.slices)}`,
    );
  }
  if (before !== undefined) {
    const ratio = (pick: (x: (typeof now)[number]) => number) =>
      median(now.map((x, i) => pick(x) / pick(before[i]!))).toFixed(3);
    console.log(
      `  now / before: longest turn CPU ${ratio((x) => x.turnCpu)}x, wall ${ratio((x) => x.turnWall)}x; first list wall ${ratio((x) => x.wall)}x, CPU ${ratio((x) => x.cpu)}x`,
    );
  }
}

/**
 * `--listed-load`: a bulk load into a store listed before it (one list of an empty store),
 * a batch of 1000 keys per event-loop turn as a server applies them, then the first
 * 100-key page: how long that page waits (JS-thread CPU and wall, from asking to the
 * answer), the longest turn from the load's start to the answer, and the JS-thread CPU of
 * load + page together (the folds or the build included). Engines alternate: this one,
 * `--baseline DIR` (e.g. the commit before the background fold) and, for the cost of
 * keeping the index, this one with no list before the load ("unlisted": the index is
 * built only by the page) and the heap each holds after a full collection.
 */
async function listedLoad(count: number, baselineDir: string | undefined, rounds: number): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => `svc/${(i * 7919) % count}`.padEnd(12, "_"));
  const value = new Uint8Array(16);
  const BATCH = 1000;
  const engines: [string, () => OrderingEngine, boolean][] = [
    ["now", () => new MapleDB(), true],
    ["unlisted", () => new MapleDB(), false],
  ];
  if (baselineDir !== undefined)
    engines.push(["before", (await engineOf(baselineDir)) as () => OrderingEngine, true]);
  type Run = { waitWall: number; waitCpu: number; turnCpu: number; totalCpu: number; heapMb: number };
  const heapMb = (): number => {
    Bun.gc(true);
    return process.memoryUsage().heapUsed / 2 ** 20;
  };
  const runs = new Map<string, Run[]>(engines.map(([name]) => [name, []]));
  const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
  const page = async (db: OrderingEngine): Promise<void> => {
    if (db.prepareOrder !== undefined && db.orderReady !== undefined) {
      while (!db.orderReady()) await db.prepareOrder();
    }
    if (db.list({ prefix: "svc/", limit: 100, after: undefined }, NOW_MS).items.length === 0)
      throw new Error("empty page");
  };
  for (let round = 0; round < rounds; round++) {
    for (let e = 0; e < engines.length; e++) {
      const [name, make, listed] = engines[(round + e) % engines.length]!;
      Bun.gc(true);
      const db = make();
      db.set("svc/", value, NOW_MS);
      if (listed) await page(db);
      let ticking = true;
      let lastCpu = threadCpuMs();
      let turnCpu = 0;
      const tick = (): void => {
        const cpu = threadCpuMs();
        turnCpu = Math.max(turnCpu, cpu - lastCpu);
        lastCpu = cpu;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      await turn();
      const startCpu = threadCpuMs();
      for (let at = 0; at < count; at += BATCH) {
        const end = Math.min(count, at + BATCH);
        for (let k = at; k < end; k++) db.set(keys[k]!, value, NOW_MS);
        await turn();
      }
      // The heap right after the load (a collection first): with the index kept, or without.
      const loadCpu = threadCpuMs() - startCpu;
      const heapAtLoad = heapMb();
      const askWall = performance.now();
      const askCpu = threadCpuMs();
      await page(db);
      const waitWall = performance.now() - askWall;
      const waitCpu = threadCpuMs() - askCpu;
      const totalCpu = loadCpu + waitCpu;
      await turn();
      ticking = false;
      await turn();
      runs.get(name)!.push({ waitWall, waitCpu, turnCpu, totalCpu, heapMb: heapAtLoad });
    }
  }
  console.log(
    `\nbulk load of ${count} keys into a listed store (${BATCH} per turn), then the first 100-key page (median of ${rounds} alternating rounds; JS-thread CPU and wall ms)`,
  );
  for (const [name] of engines) {
    const r = runs.get(name)!;
    const m = (pick: (x: Run) => number) => median(r.map(pick)).toFixed(1);
    console.log(
      `  ${name.padEnd(8)} page wait wall ${m((x) => x.waitWall)} CPU ${m((x) => x.waitCpu)}; longest turn CPU ${m((x) => x.turnCpu)}; load+page CPU ${m((x) => x.totalCpu)}; heap after the load ${m((x) => x.heapMb)} MB`,
    );
  }
  const now = runs.get("now")!;
  for (const other of ["before", "unlisted"]) {
    const base = runs.get(other);
    if (base === undefined) continue;
    const ratio = (pick: (x: Run) => number) =>
      median(now.map((x, i) => pick(x) / pick(base[i]!))).toFixed(3);
    console.log(
      `  now / ${other}: page wait wall ${ratio((x) => x.waitWall)}x CPU ${ratio((x) => x.waitCpu)}x; longest turn ${ratio((x) => x.turnCpu)}x; load+page CPU ${ratio((x) => x.totalCpu)}x; heap ${ratio((x) => x.heapMb)}x`,
    );
  }
}

interface SnapshotEngine extends OrderingEngine {
  save(sink: { write(chunk: Uint8Array): undefined }, nowMs: number): Promise<void>;
  load(source: AsyncIterable<Uint8Array>): Promise<void>;
}

/** A store's way to ask for a page: wait while the read would fold or build in one piece, then list. */
async function askPage(db: OrderingEngine & { orderReady?: (limit?: number) => boolean }): Promise<void> {
  if (db.prepareOrder !== undefined && db.orderReady !== undefined) {
    while (!db.orderReady(100)) await db.prepareOrder();
  }
  if (db.list({ prefix: "svc/", limit: 100, after: undefined }, NOW_MS).items.length !== 100)
    throw new Error("short page");
}

/**
 * `--first-page` ("Ordered index from the first write" in the README): the first 100-key
 * page of a store of `count` keys never listed before, asked as a store asks it (see
 * askPage), in three cases: (a) loaded BATCH keys per event-loop turn (as requests
 * arrive), (b) loaded in one turn, (c) restarted: its snapshot (saved by the same engine
 * after a list, so main's is "listed") loaded into a fresh engine. JS-thread CPU from
 * asking to the answer (c: also of the load, and from the load's start to the answer), the
 * load's CPU per key in (a) (this engine's background folds run in its turns). The
 * index's memory: `--heap-per-key` (a process per measurement). Alternating rounds against
 * `--baseline DIR` (main), medians, ratios per round.
 */
async function firstPage(count: number, baselineDir: string | undefined, rounds: number): Promise<void> {
  const flat = (key: string): string => Buffer.from(key).toString();
  const keys = Array.from({ length: count }, (_, i) => flat(`svc/${(i * 7919) % count}`.padEnd(12, "_")));
  const value = new Uint8Array(16);
  const BATCH = 1000;
  type Engine = SnapshotEngine & { orderReady?: (limit?: number) => boolean; dropOrder?: () => void };
  const engines: [string, () => Engine][] = [["now", () => new MapleDB() as unknown as Engine]];
  if (baselineDir !== undefined)
    engines.push(["before", (await engineOf(baselineDir)) as unknown as () => Engine]);
  const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
  const snapshots = new Map<string, Uint8Array[]>();
  for (const [name, make] of engines) {
    const db = make();
    for (let k = 0; k < count; k++) db.set(keys[k]!, value, NOW_MS);
    await askPage(db);
    while (db.orderReady !== undefined && !db.orderReady()) await db.prepareOrder!();
    const chunks: Uint8Array[] = [];
    await db.save({ write: (chunk) => void chunks.push(chunk) }, NOW_MS);
    snapshots.set(name, chunks);
  }
  type Run = Record<string, number>;
  const runs = new Map<string, Run[]>(engines.map(([name]) => [name, []]));
  const asked = async (db: Engine): Promise<number> => {
    const start = threadCpuMs();
    await askPage(db);
    return threadCpuMs() - start;
  };
  for (let round = 0; round < rounds; round++) {
    for (let e = 0; e < engines.length; e++) {
      const [name, make] = engines[(round + e) % engines.length]!;
      const run: Run = {};
      // (a) a batch per turn.
      Bun.gc(true);
      let db: Engine | undefined = make();
      await turn();
      let start = threadCpuMs();
      for (let at = 0; at < count; at += BATCH) {
        const end = Math.min(count, at + BATCH);
        for (let k = at; k < end; k++) db.set(keys[k]!, value, NOW_MS);
        await turn();
      }
      run.batchLoadNsPerKey = ((threadCpuMs() - start) * 1e6) / count;
      run.batchPage = await asked(db);
      db.dropOrder!();
      db = undefined;
      // (b) one turn.
      Bun.gc(true);
      db = make();
      for (let k = 0; k < count; k++) db.set(keys[k]!, value, NOW_MS);
      await turn();
      run.bulkPage = await asked(db);
      // Stops a build main started (it would run in the next case's turns and be counted there).
      db.dropOrder!();
      db = undefined;
      // (c) a restart.
      Bun.gc(true);
      db = make();
      const chunks = snapshots.get(name)!;
      start = threadCpuMs();
      await db.load(
        (async function* () {
          yield* chunks;
        })(),
      );
      run.restartLoad = threadCpuMs() - start;
      run.restartPage = await asked(db);
      run.restartTotal = threadCpuMs() - start;
      db.dropOrder!();
      db = undefined;
      runs.get(name)!.push(run);
    }
  }
  console.log(
    `\nfirst 100-key page of ${count} never-listed keys (median of ${rounds} alternating rounds; JS-thread CPU ms from asking to the answer)`,
  );
  const fields = ["batchLoadNsPerKey", "batchPage", "bulkPage", "restartLoad", "restartPage", "restartTotal"];
  for (const [name] of engines) {
    const r = runs.get(name)!;
    const parts = fields
      .filter((field) => r[0]![field] !== undefined)
      .map(
        (field) => `${field} ${median(r.map((x) => x[field]!)).toFixed(field.startsWith("heap") ? 1 : 2)}`,
      );
    console.log(`  ${name.padEnd(6)} ${parts.join("; ")}`);
  }
  const now = runs.get("now")!;
  const before = runs.get("before");
  if (before !== undefined) {
    const parts = fields
      .filter((field) => before[0]![field] !== undefined)
      .map((field) => {
        const ratios = now.map((x, i) => x[field]! / before[i]![field]!);
        return `${field} ${median(ratios).toFixed(4)}x (${ratios.map((x) => x.toFixed(4)).join(" ")})`;
      });
    console.log(`  now / before: ${parts.join("; ")}`);
  }
}

/**
 * `--heap-per-key DIR index|none`: heap and RSS per key, after full collections, of one
 * engine (DIR's) holding `--first-list-keys` keys (128-byte values) loaded 1000 per turn,
 * with its ordered index built and folded ("index") or never built ("none": dropOrder
 * before the load). One measurement per process: in one process a dropped index was not
 * given back to the heap measure (the numbers did not move), so compare processes.
 */
async function heapPerKey(dir: string, mode: string, count: number): Promise<void> {
  type Engine = OrderingEngine & {
    dropOrder(): void;
    orderReady(limit?: number): boolean;
    prepareOrder(): Promise<void>;
  };
  const make = (await engineOf(dir)) as unknown as () => Engine;
  const keys = Array.from({ length: count }, (_, i) =>
    Buffer.from(`svc/${(i * 7919) % count}`.padEnd(12, "_")).toString(),
  );
  const value = new Uint8Array(128);
  const heap = (): number => {
    for (let i = 0; i < 3; i++) Bun.gc(true);
    return process.memoryUsage().heapUsed;
  };
  const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
  const before = heap();
  const rssBefore = process.memoryUsage().rss;
  const db = make();
  if (mode === "none") db.dropOrder();
  else db.list({ prefix: "svc/", limit: 1, after: undefined }, NOW_MS);
  for (let at = 0; at < count; at += 1000) {
    for (let k = at; k < Math.min(count, at + 1000); k++) db.set(keys[k]!, value, NOW_MS);
    await turn();
  }
  if (mode !== "none") {
    db.list({ prefix: "svc/", limit: 1, after: undefined }, NOW_MS);
    while (!db.orderReady()) await db.prepareOrder();
  }
  for (let i = 0; i < 5; i++) await turn();
  const after = heap();
  console.log(
    `${dir} ${mode}: heap ${((after - before) / count).toFixed(1)} B/key, RSS ${((process.memoryUsage().rss - rssBefore) / count).toFixed(1)} B/key (${count} keys)`,
  );
}

const keyCount = Number(arg("--keys") ?? 200_000);
if (process.argv.includes("--heap-per-key")) {
  const at = process.argv.indexOf("--heap-per-key");
  await heapPerKey(
    process.argv[at + 1]!,
    process.argv[at + 2]!,
    Number(arg("--first-list-keys") ?? 1_000_000),
  );
  process.exit(0);
}
if (process.argv.includes("--overhead-child")) {
  // One process of `--processes` (see overheadInProcesses): its rows as one JSON line.
  const result = await measureOverhead(
    arg("--baseline")!,
    arg("--also"),
    arg("--now"),
    Number(arg("--rounds") ?? 2),
    Number(arg("--round-offset") ?? 0),
    1,
  );
  console.log(JSON.stringify(result));
  process.exit(0);
}
if (process.argv.includes("--first-page")) {
  await firstPage(
    Number(arg("--first-list-keys") ?? 1_000_000),
    arg("--baseline"),
    Number(arg("--page-rounds") ?? 3),
  );
  process.exit(0);
}
if (!process.argv.includes("--skip-structures")) indexStructures(keyCount);
await overhead(
  arg("--baseline"),
  arg("--also"),
  arg("--now"),
  Number(arg("--rounds") ?? 5),
  Number(arg("--processes") ?? 0),
);
if (process.argv.includes("--listed-load")) {
  await listedLoad(
    Number(arg("--first-list-keys") ?? 1_000_000),
    arg("--baseline"),
    Number(arg("--page-rounds") ?? 3),
  );
}
if (process.argv.includes("--first-list")) {
  await firstListTurns(
    Number(arg("--first-list-keys") ?? 1_000_000),
    arg("--baseline"),
    Number(arg("--page-rounds") ?? 3),
  );
}
if (!process.argv.includes("--skip-page")) {
  await pageFromMillion(1_000_000, arg("--baseline"), Number(arg("--page-rounds") ?? 3));
}

/**
 * Benchmark of the Maple engine beside a plain `Map<string, Uint8Array>` measured in the
 * same process: ns/op of set, get, has, delete and setE on 100k keys, snapshot save/load
 * throughput, and memory per entry with a 128-byte value.
 *
 *   bun test/bench/engine.ts          (or `bun run bench` for every benchmark)
 *
 * Method: both sides get the same keys in the same shuffled order (a sequential walk
 * flatters both through the cache) and the same value objects; each baseline does the
 * equivalent work (set stores the value, get reads it, has and delete look the key up).
 * After warm-up rounds, Maple and Map rounds alternate, first one then the other, and
 * the median round of each is reported (see `compare`), in CPU time of the process. The Map baseline for setE is a
 * plain `set`, so the ratio shows what deadlines cost.
 */
import type { ByteSink } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";

const KEY_COUNT = 100_000;
const VALUE_BYTES = 128;
const ROUNDS = 15;
const NOW_MS = 1_700_000_000_000;

interface Row {
  name: string;
  maple: number;
  map: number;
  unit: string;
  target?: string;
}

function shuffled<T>(items: T[], seed: number): T[] {
  const out = items.slice();
  let state = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    const j = state % (i + 1);
    const swap = out[i]!;
    out[i] = out[j]!;
    out[j] = swap;
  }
  return out;
}

function median(samples: number[]): number {
  const sorted = samples.slice().sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

/** Highest throughput of the passes. */
function best(samples: number[]): number {
  return Math.max(...samples);
}

function makeKeys(count: number): string[] {
  // Flat strings, as a decoder would produce them (template literals make ropes).
  return Array.from({ length: count }, (_, i) => Buffer.from(`user:${i.toString(36)}:profile`).toString());
}

function makeValues(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(VALUE_BYTES).fill(i & 0xff));
}

/** Untimed rounds first: they let the JIT compile both sides before anything counts. */
const WARMUP_ROUNDS = 2;

interface Side {
  /** Runs before each round, untimed (e.g. a fresh, empty database for inserts). */
  prepare: () => void;
  /** Does one op for every key, in the shared shuffled order. */
  pass: () => void;
}

/**
 * Runs ROUNDS timed rounds, each a full pass of both sides over the same keys in the
 * same order with the same value objects. The side that goes first alternates per round,
 * so a burst of noise from the machine's neighbours, or a GC left over from the other
 * side, hits both equally often. Reports the median round of each side: on a shared
 * machine the fastest round flatters whichever side got lucky, the median does not.
 */
function compare(name: string, maple: Side, map: Side, target?: string): Row {
  const mapleNs: number[] = [];
  const mapNs: number[] = [];
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    const order: [Side, number[]][] =
      round % 2 === 0
        ? [
            [maple, mapleNs],
            [map, mapNs],
          ]
        : [
            [map, mapNs],
            [maple, mapleNs],
          ];
    for (const [side, samples] of order) {
      side.prepare();
      // CPU time of the process (all its threads, so the collector's work counts too), not
      // wall time: on a shared machine the neighbours' load does not enter it.
      const start = process.cpuUsage();
      side.pass();
      const used = process.cpuUsage(start);
      const elapsed = (used.user + used.system) * 1000;
      if (round >= WARMUP_ROUNDS) samples.push(elapsed / KEY_COUNT);
    }
  }
  return { name, maple: median(mapleNs), map: median(mapNs), unit: "ns/op", ...(target ? { target } : {}) };
}

let sink = 0;

/**
 * What the server does for a get on an lstore: the entry (LocalStore.getEntryNow, the
 * stored array, no copy), its value copied into the frame as the binary serializer does.
 * (A value slab that lends a record's bytes instead was tried: see the README.)
 */
function replyGet(db: MapleDB, key: string, frame: Uint8Array, offset: number): number {
  const entry = db.getEntry(key, NOW_MS)!;
  const value = entry.value!;
  frame.set(value, offset);
  return entry.version + value.byteLength;
}

function hotPathRows(): Row[] {
  const keys = makeKeys(KEY_COUNT);
  const values = makeValues(KEY_COUNT);
  const order = shuffled(keys, 7);
  let db = new MapleDB();
  let map = new Map<string, Uint8Array>();
  const fillMaple = (): void => {
    db = new MapleDB();
    for (let i = 0; i < KEY_COUNT; i++) db.set(keys[i]!, values[i]!, NOW_MS);
  };
  const fillMap = (): void => {
    map = new Map();
    for (let i = 0; i < KEY_COUNT; i++) map.set(keys[i]!, values[i]!);
  };
  const rows: Row[] = [];
  rows.push(
    compare(
      "set (insert)",
      {
        prepare: () => {
          db = new MapleDB();
        },
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) db.set(order[i]!, values[i]!, NOW_MS);
        },
      },
      {
        prepare: () => {
          map = new Map();
        },
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) map.set(order[i]!, values[i]!);
        },
      },
      "≤4×",
    ),
  );
  rows.push(
    compare(
      "set (overwrite)",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) db.set(order[i]!, values[i]!, NOW_MS);
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) map.set(order[i]!, values[i]!);
        },
      },
      "≤4×",
    ),
  );
  fillMaple();
  fillMap();
  rows.push(
    compare(
      "get",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) sink += db.get(order[i]!, NOW_MS)!.byteLength;
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) sink += map.get(order[i]!)!.byteLength;
        },
      },
      "≤3×",
    ),
  );
  // The server's get: the value written into a reply frame. Both sides copy the stored
  // array into the frame, as the binary serializer does.
  const frame = new Uint8Array(64 * 1024);
  rows.push(
    compare(
      "get into a reply frame",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) sink += replyGet(db, order[i]!, frame, (i & 255) * 200);
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) {
            const value = map.get(order[i]!)!;
            frame.set(value, (i & 255) * 200);
            sink += value.byteLength;
          }
        },
      },
      "≤3×",
    ),
  );
  rows.push(
    compare(
      "has",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) if (db.has(order[i]!, NOW_MS)) sink++;
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) if (map.has(order[i]!)) sink++;
        },
      },
    ),
  );
  // The rows above run on shards without deadlines, where get and has skip the type
  // check of the slot (Shard.timedCount); these show the cost once every shard holds
  // some keys with deadlines (far in the future, so every get still hits).
  const fillMapleMixed = (): void => {
    db = new MapleDB();
    for (let i = 0; i < KEY_COUNT; i++) {
      if (i % 4 === 0) db.setE(keys[i]!, values[i]!, 3_600_000, 0, NOW_MS);
      else db.set(keys[i]!, values[i]!, NOW_MS);
    }
  };
  fillMapleMixed();
  rows.push(
    compare(
      "get (1/4 keys with deadlines)",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) sink += db.get(order[i]!, NOW_MS)!.byteLength;
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) sink += map.get(order[i]!)!.byteLength;
        },
      },
    ),
  );
  rows.push(
    compare(
      "has (1/4 keys with deadlines)",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) if (db.has(order[i]!, NOW_MS)) sink++;
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) if (map.has(order[i]!)) sink++;
        },
      },
    ),
  );
  rows.push(
    compare(
      "setE (insert, 2 deadlines)",
      {
        prepare: () => {
          db = new MapleDB();
        },
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) db.setE(order[i]!, values[i]!, 60_000, 120_000 + i, NOW_MS);
        },
      },
      {
        prepare: () => {
          map = new Map();
        },
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) map.set(order[i]!, values[i]!);
        },
      },
    ),
  );
  rows.push(
    compare(
      "setE (renew)",
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) db.setE(order[i]!, values[i]!, 60_000, 120_000 + i, NOW_MS + 1);
        },
      },
      {
        prepare: () => {},
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) map.set(order[i]!, values[i]!);
        },
      },
    ),
  );
  rows.push(
    compare(
      "delete",
      {
        prepare: fillMaple,
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) db.delete(order[i]!, NOW_MS);
        },
      },
      {
        prepare: fillMap,
        pass: () => {
          for (let i = 0; i < KEY_COUNT; i++) map.delete(order[i]!);
        },
      },
    ),
  );
  return rows;
}

/** Baseline snapshot of a plain Map: length-prefixed key and value into 64 KiB chunks, no checksum. */
function saveMap(map: Map<string, Uint8Array>, write: (chunk: Uint8Array) => void): void {
  let chunk = Buffer.allocUnsafe(64 * 1024);
  let pos = 0;
  for (const [key, value] of map) {
    if (pos + 8 + key.length * 3 + value.byteLength > chunk.length) {
      write(chunk.subarray(0, pos));
      chunk = Buffer.allocUnsafe(Math.max(64 * 1024, 8 + key.length * 3 + value.byteLength));
      pos = 0;
    }
    const keyBytes = chunk.write(key, pos + 8, "utf8");
    chunk.writeUInt32LE(keyBytes, pos);
    chunk.writeUInt32LE(value.byteLength, pos + 4);
    chunk.set(value, pos + 8 + keyBytes);
    pos += 8 + keyBytes + value.byteLength;
  }
  write(chunk.subarray(0, pos));
}

function loadMap(chunks: Uint8Array[]): Map<string, Uint8Array> {
  const map = new Map<string, Uint8Array>();
  for (const chunk of chunks) {
    const buffer = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    while (pos < buffer.length) {
      const keyBytes = buffer.readUInt32LE(pos);
      const valueBytes = buffer.readUInt32LE(pos + 4);
      const key = buffer.toString("utf8", pos + 8, pos + 8 + keyBytes);
      map.set(key, buffer.slice(pos + 8 + keyBytes, pos + 8 + keyBytes + valueBytes));
      pos += 8 + keyBytes + valueBytes;
    }
  }
  return map;
}

async function* fromChunks(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

async function snapshotRows(): Promise<Row[]> {
  const count = 1_000_000;
  const keys = makeKeys(count);
  const values = makeValues(count);
  const db = new MapleDB();
  const map = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    if (i % 4 === 0) db.setE(keys[i]!, values[i]!, 60_000, 120_000, NOW_MS);
    else db.set(keys[i]!, values[i]!, NOW_MS);
    map.set(keys[i]!, values[i]!);
  }
  const saveMaple: number[] = [];
  const saveBaseline: number[] = [];
  const loadMaple: number[] = [];
  const loadBaseline: number[] = [];
  let mapleBytes = 0;
  let baselineBytes = 0;
  for (let round = 0; round < 4; round++) {
    const mapleChunks: Uint8Array[] = [];
    const mapleSink: ByteSink = { write: (chunk) => void mapleChunks.push(chunk) };
    let start = Bun.nanoseconds();
    await db.save(mapleSink, NOW_MS);
    const mapleSaveNs = Bun.nanoseconds() - start;
    mapleBytes = mapleChunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
    start = Bun.nanoseconds();
    await new MapleDB().load(fromChunks(mapleChunks));
    const mapleLoadNs = Bun.nanoseconds() - start;

    const baselineChunks: Uint8Array[] = [];
    start = Bun.nanoseconds();
    saveMap(map, (chunk) => baselineChunks.push(chunk));
    const baselineSaveNs = Bun.nanoseconds() - start;
    baselineBytes = baselineChunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
    start = Bun.nanoseconds();
    sink += loadMap(baselineChunks).size;
    const baselineLoadNs = Bun.nanoseconds() - start;
    if (round === 0) continue;
    saveMaple.push(mapleBytes / 1e6 / (mapleSaveNs / 1e9));
    loadMaple.push(mapleBytes / 1e6 / (mapleLoadNs / 1e9));
    saveBaseline.push(baselineBytes / 1e6 / (baselineSaveNs / 1e9));
    loadBaseline.push(baselineBytes / 1e6 / (baselineLoadNs / 1e9));
  }
  console.log(
    `snapshot of ${count} keys (128 B values, 1/4 with deadlines): Maple ${(mapleBytes / 1e6).toFixed(1)} MB, ` +
      `Map baseline ${(baselineBytes / 1e6).toFixed(1)} MB (no deadlines, no checksum)`,
  );
  return [
    { name: "save", maple: best(saveMaple), map: best(saveBaseline), unit: "MB/s" },
    { name: "load", maple: best(loadMaple), map: best(loadBaseline), unit: "MB/s" },
  ];
}

function measureBytesPerEntry(fill: (keys: string[], values: Uint8Array[]) => unknown): {
  heap: number;
  rss: number;
} {
  const count = 200_000;
  Bun.gc(true);
  const heapBefore = process.memoryUsage().heapUsed;
  const rssBefore = process.memoryUsage().rss;
  const keys = makeKeys(count);
  const values = makeValues(count);
  const held = fill(keys, values);
  keys.length = 0;
  values.length = 0;
  Bun.gc(true);
  const heap = (process.memoryUsage().heapUsed - heapBefore) / count;
  const rss = (process.memoryUsage().rss - rssBefore) / count;
  sink += held === undefined ? 0 : 1;
  return { heap, rss };
}

function memoryRows(): Row[] {
  const map = measureBytesPerEntry((keys, values) => {
    const m = new Map<string, Uint8Array>();
    for (let i = 0; i < keys.length; i++) m.set(keys[i]!, values[i]!);
    return m;
  });
  const maple = measureBytesPerEntry((keys, values) => {
    const db = new MapleDB();
    for (let i = 0; i < keys.length; i++) db.set(keys[i]!, values[i]!, NOW_MS);
    return db;
  });
  const mapleTimed = measureBytesPerEntry((keys, values) => {
    const db = new MapleDB();
    for (let i = 0; i < keys.length; i++) db.setE(keys[i]!, values[i]!, 60_000, 120_000, NOW_MS);
    return db;
  });
  return [
    { name: "memory/entry (heap)", maple: maple.heap, map: map.heap, unit: "B" },
    { name: "memory/entry (rss)", maple: maple.rss, map: map.rss, unit: "B" },
    { name: "memory/entry setE (heap)", maple: mapleTimed.heap, map: map.heap, unit: "B" },
  ];
}

function printTable(rows: Row[]): void {
  const header = ["operation", "Maple", "Map<string,Uint8Array>", "unit", "Maple/Map", "target"];
  const lines = rows.map((row) => [
    row.name,
    row.maple.toFixed(1),
    row.map.toFixed(1),
    row.unit,
    `${(row.maple / row.map).toFixed(2)}×`,
    row.target ?? "",
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => line[column]!.length)),
  );
  const format = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ");
  console.log(format(header));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const line of lines) console.log(format(line));
}

export async function run(): Promise<void> {
  console.log(
    `Maple engine vs Map<string, Uint8Array>: ${KEY_COUNT} keys, ${VALUE_BYTES} B values, Bun ${Bun.version}`,
  );
  // `--hot-only`: the ns/op rows alone (for A/B rounds against another build).
  if (process.argv.includes("--hot-only")) {
    printTable(hotPathRows());
    return;
  }
  // Memory first, while the heap is small and quiet.
  const memory = memoryRows();
  const hot = hotPathRows();
  const snapshot = await snapshotRows();
  printTable([...hot, ...snapshot, ...memory]);
  if (sink === -1) console.log("unreachable");
}

if (import.meta.main) await run();

/**
 * Feasibility of RecordTable (src/db/records) against Maple, 16-character keys, 128 B values.
 *   bun test/bench/records-feasibility.ts mem records|maple [keys]   bytes per key (one engine per process)
 *   bun test/bench/records-feasibility.ts speed [keys] [rounds]       CPU ns per op, alternating in one process
 */
import { heapStats } from "bun:jsc";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordTable } from "../../src/db/records/record-table.ts";

const NOW = 1_700_000_000_000;
const mode = process.argv[2] ?? "speed";

function makeKeys(n: number): string[] {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) keys.push(`key:${String(i).padStart(12, "0")}`);
  return keys;
}

function value(i: number): Uint8Array {
  const v = new Uint8Array(128);
  v[0] = i & 255;
  v[1] = (i >> 8) & 255;
  return v;
}

function rss(): number {
  return process.memoryUsage().rss;
}

function settle(): void {
  Bun.gc(true);
  Bun.gc(true);
}

if (mode === "mem") {
  const which = process.argv[3] ?? "records";
  const n = Number(process.argv[4] ?? 1_000_000);
  const keys: string[] = [];
  settle();
  const rss0 = rss();
  const heap0 = heapStats().heapSize;
  let engine: unknown;
  if (which === "maple") {
    const db = new MapleDB({ indexFromStart: false });
    // Keys made as the server makes them: a fresh string per request.
    for (let i = 0; i < n; i++) db.set(`key:${String(i).padStart(12, "0")}`, value(i), NOW);
    engine = db;
  } else {
    const table = new RecordTable();
    for (let i = 0; i < n; i++) table.set(`key:${String(i).padStart(12, "0")}`, value(i), i + 1);
    engine = table;
  }
  settle();
  await Bun.sleep(500);
  settle();
  const rss1 = rss();
  const heap1 = heapStats().heapSize;
  const extra =
    which === "records" ? (engine as RecordTable).arenaBytes() + (engine as RecordTable).tableBytes() : 0;
  console.log(
    JSON.stringify({
      which,
      keys: n,
      rssPerKey: +((rss1 - rss0) / n).toFixed(1),
      heapPerKey: +((heap1 - heap0) / n).toFixed(1),
      typedArrayBytesPerKey: +(extra / n).toFixed(1),
      rssMiB: +(rss1 / 2 ** 20).toFixed(1),
    }),
  );
  void keys;
  void engine;
} else {
  const n = Number(process.argv[3] ?? 200_000);
  const rounds = Number(process.argv[4] ?? 5);
  const keys = makeKeys(n);
  const order = keys.slice();
  for (let i = order.length - 1; i > 0; i--) {
    const j = (Math.imul(i, 2654435761) >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const values = keys.map((_, i) => value(i));
  const frame = new Uint8Array(64 * 1024);
  // Keys as the server sees them: a fresh string decoded from the request's bytes per op.
  const encoded = order.map((k) => new TextEncoder().encode(k));
  const decoder = new TextDecoder();
  const fresh = (i: number): string => decoder.decode(encoded[i]!);
  let sink = 0;
  const cpu = (f: () => void): number => {
    const t = process.cpuUsage();
    f();
    const u = process.cpuUsage(t);
    return ((u.user + u.system) * 1000) / n;
  };
  const results: Record<string, number[]> = {};
  const push = (name: string, ns: number): void => {
    (results[name] ??= []).push(ns);
  };
  for (let r = 0; r < rounds; r++) {
    {
      const db = new MapleDB({ indexFromStart: false });
      push(
        "maple insert",
        cpu(() => {
          for (let i = 0; i < n; i++) db.set(order[i]!, values[i]!, NOW);
        }),
      );
      push(
        "maple overwrite",
        cpu(() => {
          for (let i = 0; i < n; i++) db.set(order[i]!, values[i]!, NOW);
        }),
      );
      push(
        "maple get",
        cpu(() => {
          for (let i = 0; i < n; i++) sink += db.get(order[i]!, NOW)!.byteLength;
        }),
      );
      push(
        "maple getEntry+frame",
        cpu(() => {
          for (let i = 0; i < n; i++) {
            const e = db.getEntry(order[i]!, NOW)!;
            frame.set(e.value!, (i & 255) * 200);
            sink += e.version;
          }
        }),
      );
      push(
        "maple fresh key+frame",
        cpu(() => {
          for (let i = 0; i < n; i++) {
            const e = db.getEntry(fresh(i), NOW)!;
            frame.set(e.value!, (i & 255) * 200);
            sink += e.version;
          }
        }),
      );
      push(
        "maple delete",
        cpu(() => {
          for (let i = 0; i < n; i++) db.delete(order[i]!, NOW);
        }),
      );
    }
    {
      const t = new RecordTable();
      let rev = 1;
      push(
        "records insert",
        cpu(() => {
          for (let i = 0; i < n; i++) t.set(order[i]!, values[i]!, rev++);
        }),
      );
      push(
        "records overwrite",
        cpu(() => {
          for (let i = 0; i < n; i++) t.set(order[i]!, values[i]!, rev++);
        }),
      );
      push(
        "records get (copy)",
        cpu(() => {
          for (let i = 0; i < n; i++) sink += t.get(order[i]!)!.byteLength;
        }),
      );
      push(
        "records get into frame",
        cpu(() => {
          for (let i = 0; i < n; i++) sink += t.getInto(order[i]!, frame, (i & 255) * 200);
        }),
      );
      push(
        "records fresh key+frame",
        cpu(() => {
          for (let i = 0; i < n; i++) sink += t.getInto(fresh(i), frame, (i & 255) * 200);
        }),
      );
      push(
        "records get copy+frame",
        cpu(() => {
          for (let i = 0; i < n; i++) {
            const v = t.get(order[i]!)!;
            frame.set(v, (i & 255) * 200);
          }
        }),
      );
      push(
        "records delete",
        cpu(() => {
          for (let i = 0; i < n; i++) t.delete(order[i]!);
        }),
      );
    }
    Bun.gc(true);
  }
  const med = (a: number[]): number => a.slice().sort((x, y) => x - y)[a.length >> 1]!;
  for (const [k, v] of Object.entries(results))
    console.log(k.padEnd(26), med(v).toFixed(0), "ns  ", v.map((x) => x.toFixed(0)).join(" "));
  console.log("sink", sink > 0);
}

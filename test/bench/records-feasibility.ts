/**
 * RecordDB (src/db/records) against MapleDB (lstore mode), 16-character keys, 128 B values.
 *   bun test/bench/records-feasibility.ts mem records|maple [keys]   bytes per key (one engine per process)
 *   bun test/bench/records-feasibility.ts speed [keys] [rounds] [passes]   CPU ns per op, alternating in one process
 */
import { heapStats } from "bun:jsc";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";

const NOW = 1_700_000_000_000;
const mode = process.argv[2] ?? "speed";

function makeKey(i: number): string {
  return `key:${String(i).padStart(12, "0")}`;
}

function value(i: number): Uint8Array {
  const v = new Uint8Array(128);
  v[0] = i & 255;
  v[1] = (i >> 8) & 255;
  return v;
}

function settle(): void {
  Bun.gc(true);
  Bun.gc(true);
}

function engine(which: string): KVDB {
  return which === "maple" ? new MapleDB({ indexFromStart: false }) : new RecordDB();
}

if (mode === "mem") {
  const which = process.argv[3] ?? "records";
  const n = Number(process.argv[4] ?? 1_000_000);
  settle();
  const rss0 = process.memoryUsage().rss;
  const heap0 = heapStats().heapSize;
  const db = engine(which);
  // A fresh key string and value array per set, as the server decodes them.
  for (let i = 0; i < n; i++) db.set(makeKey(i), value(i), NOW);
  settle();
  await Bun.sleep(500);
  settle();
  const rss1 = process.memoryUsage().rss;
  const heap1 = heapStats().heapSize;
  const footprint = db instanceof RecordDB ? db.footprint() : undefined;
  console.log(
    JSON.stringify({
      which,
      keys: n,
      rssPerKey: +((rss1 - rss0) / n).toFixed(1),
      heapPerKey: +((heap1 - heap0) / n).toFixed(1),
      arenaPerKey: footprint ? +(footprint.arenaBytes / n).toFixed(1) : undefined,
      tablePerKey: footprint ? +(footprint.tableBytes / n).toFixed(1) : undefined,
      rssMiB: +(rss1 / 2 ** 20).toFixed(1),
    }),
  );
  if (db.info(NOW).keys !== n) throw new Error("lost keys");
} else {
  const n = Number(process.argv[3] ?? 200_000);
  const rounds = Number(process.argv[4] ?? 5);
  // Passes over the keys per timed step (few keys: many passes).
  const passes = Number(process.argv[5] ?? 1);
  const order: string[] = [];
  for (let i = 0; i < n; i++) order.push(makeKey((Math.imul(i, 2654435761) >>> 0) % n));
  const unique = [...new Set(order)];
  const values = unique.map((_, i) => value(i));
  const count = unique.length;
  const frame = new Uint8Array(64 * 1024);
  // Keys as the server sees them: a fresh string decoded from the request's bytes per op.
  const encoded = unique.map((k) => new TextEncoder().encode(k));
  const decoder = new TextDecoder();
  let sink = 0;
  const cpu = (f: () => void): number => {
    const t = process.cpuUsage();
    for (let p = 0; p < passes; p++) f();
    const u = process.cpuUsage(t);
    return ((u.user + u.system) * 1000) / (count * passes);
  };
  const results: Record<string, number[]> = {};
  const push = (name: string, ns: number): void => {
    const list = results[name] ?? [];
    list.push(ns);
    results[name] = list;
  };
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 === 0 ? ["maple", "records"] : ["records", "maple"]) {
      const db = engine(which);
      push(
        `${which} insert`,
        cpu(() => {
          for (let i = 0; i < count; i++) db.set(unique[i]!, values[i]!, NOW);
        }),
      );
      push(
        `${which} overwrite`,
        cpu(() => {
          for (let i = 0; i < count; i++) db.set(unique[i]!, values[i]!, NOW);
        }),
      );
      push(
        `${which} get`,
        cpu(() => {
          for (let i = 0; i < count; i++) sink += db.get(unique[i]!, NOW)!.byteLength;
        }),
      );
      push(
        `${which} getEntry+frame`,
        cpu(() => {
          for (let i = 0; i < count; i++) {
            const e = db.getEntry(unique[i]!, NOW)!;
            frame.set(e.value!, (i & 255) * 200);
            sink += e.version;
          }
        }),
      );
      push(
        `${which} fresh key getEntry+frame`,
        cpu(() => {
          for (let i = 0; i < count; i++) {
            const e = db.getEntry(decoder.decode(encoded[i]!), NOW)!;
            frame.set(e.value!, (i & 255) * 200);
            sink += e.version;
          }
        }),
      );
      push(
        `${which} fresh key set`,
        cpu(() => {
          for (let i = 0; i < count; i++) db.set(decoder.decode(encoded[i]!), values[i]!, NOW);
        }),
      );
      push(
        `${which} delete`,
        cpu(() => {
          for (let i = 0; i < count; i++) db.delete(unique[i]!, NOW);
        }),
      );
      Bun.gc(true);
    }
  }
  const med = (a: number[]): number => a.slice().sort((x, y) => x - y)[a.length >> 1]!;
  const names = Object.keys(results)
    .filter((k) => k.startsWith("maple "))
    .map((k) => k.slice(6));
  console.log(`${"op".padEnd(28)} maple  records  ratio   (CPU ns per op, median of ${rounds})`);
  for (const name of names) {
    const m = med(results[`maple ${name}`]!);
    const r = med(results[`records ${name}`]!);
    console.log(
      `${name.padEnd(28)} ${m.toFixed(0).padStart(5)} ${r.toFixed(0).padStart(8)}  ${(r / m).toFixed(2)}×`,
    );
  }
  if (sink === 0) console.log("(sink)");
}

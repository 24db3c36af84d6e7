/**
 * Encode+decode throughput of the three serializers per message type.
 * Run: bun run test/bench/serializers.ts
 */
import { ByteWriter } from "../../src/rpc/protocol/byte-writer.ts";
import {
  type FieldSpec,
  type Message,
  requestSchemas,
  responseSchemas,
  type SerializerName,
  serializerNames,
} from "../../src/rpc/protocol/types.ts";
import { createSerializer } from "../../src/rpc/serializer/index.ts";

interface Case {
  name: string;
  schema: readonly FieldSpec[];
  message: Message;
}

const value128 = new Uint8Array(128).fill(7);
const value64k = new Uint8Array(64 * 1024).fill(9);

const cases: Case[] = [
  {
    name: "set request (128 B)",
    schema: requestSchemas.set,
    message: { key: "key:000123", value: value128 },
  },
  {
    name: "set request (64 KiB)",
    schema: requestSchemas.set,
    message: { key: "key:000123", value: value64k },
  },
  { name: "get request", schema: requestSchemas.get, message: { key: "key:000123" } },
  { name: "get response (128 B)", schema: responseSchemas.get, message: { value: value128 } },
  {
    name: "setE request",
    schema: requestSchemas.setE,
    message: { key: "key:000123", value: value128, expireInMs: 1000, deleteInMs: 5000 },
  },
  {
    name: "acquire request",
    schema: requestSchemas.acquire,
    message: { key: "lock:job", ttlMs: 30_000, waitMs: 0 },
  },
  {
    name: "acquire response",
    schema: responseSchemas.acquire,
    message: {
      acquired: true,
      ownerId: "0123456789abcdef0123456789abcdef",
      fencingToken: 1_700_000_000_000_000_123n,
    },
  },
  { name: "has response", schema: responseSchemas.has, message: { found: true } },
];

export interface SerializerBenchRow {
  serializer: SerializerName;
  message: string;
  opsPerSec: number;
}

export function run(options: { durationMs?: number; print?: boolean } = {}): SerializerBenchRow[] {
  const durationMs = options.durationMs ?? 200;
  const rows: SerializerBenchRow[] = [];
  for (const testCase of cases) {
    for (const name of serializerNames) {
      const serializer = createSerializer(name);
      const out = new ByteWriter();
      const once = () => {
        out.reset();
        serializer.write(testCase.schema, testCase.message, out);
        serializer.read(testCase.schema, out.written());
      };
      for (let i = 0; i < 1000; i++) once(); // warm-up for the JIT
      let ops = 0;
      const start = performance.now();
      let elapsed = 0;
      while (elapsed < durationMs) {
        for (let i = 0; i < 256; i++) once();
        ops += 256;
        elapsed = performance.now() - start;
      }
      rows.push({ serializer: name, message: testCase.name, opsPerSec: Math.round((ops * 1000) / elapsed) });
    }
  }
  if (options.print ?? true) {
    console.log("encode+decode ops/s");
    console.log(`${"message".padEnd(24)}${serializerNames.map((n) => n.padStart(14)).join("")}`);
    for (const testCase of cases) {
      const line = serializerNames
        .map((n) =>
          rows
            .find((r) => r.serializer === n && r.message === testCase.name)!
            .opsPerSec.toLocaleString("en-US")
            .padStart(14),
        )
        .join("");
      console.log(`${testCase.name.padEnd(24)}${line}`);
    }
  }
  return rows;
}

if (import.meta.main) run();

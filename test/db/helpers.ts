import type { ByteSink, KVDB } from "../../src/db/kvdb.ts";
import type { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";

export const T0 = 1_700_000_000_000;

const encoder = new TextEncoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function text(value: Uint8Array | undefined): string | undefined {
  return value === undefined ? undefined : new TextDecoder().decode(value);
}

/** Saves `db` and returns the chunks exactly as the sink received them. */
export async function saveChunks(db: KVDB, nowMs: number): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const sink: ByteSink = { write: (chunk) => void chunks.push(chunk) };
  await db.save(sink, nowMs);
  return chunks;
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.byteLength;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

export async function saveBytes(db: MapleDB, nowMs: number): Promise<Uint8Array> {
  return concat(await saveChunks(db, nowMs));
}

/** Feeds `data` to `load` in pieces of `pieceBytes` (the last one may be shorter). */
export async function* pieces(data: Uint8Array, pieceBytes: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += pieceBytes) {
    yield data.subarray(offset, Math.min(data.byteLength, offset + pieceBytes));
  }
}

export async function* fromChunks(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

/** Up to `max` keys of an index's scan from `from` (a page as a list reads it). */
export function scanPage(
  index: { scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void },
  from: string,
  exclusive: boolean,
  max: number,
): string[] {
  const out: string[] = [];
  if (max === 0) return out;
  index.scan(from, exclusive, (key) => {
    out.push(key);
    return out.length < max;
  });
  return out;
}

/** What scanPage must return over `sorted` (keys present, in key order): the model's page. */
export function modelPage(
  sorted: readonly string[],
  from: string,
  exclusive: boolean,
  max: number,
): string[] {
  const out: string[] = [];
  for (const key of sorted) {
    const c = compareKeys(key, from);
    if (c < 0 || (exclusive && c === 0)) continue;
    if (out.length >= max) break;
    out.push(key);
  }
  return out;
}

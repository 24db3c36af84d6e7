/**
 * A Maple keyspace to and from the snapshot codec: streaming the shards of a save (with
 * event-loop turns between megabytes) and parsing a snapshot into fresh shards, a deadline
 * heap and a settled ordered index, which MapleDB.load swaps in once all of it verified.
 */
import type { ByteSink } from "../kvdb.ts";
import { DeadlineHeap } from "./deadline-heap.ts";
import type { KeyRuns } from "./key-runs.ts";
import { SLICE_UNITS } from "./order-costs.ts";
import type { OrderedKeys } from "./ordered-keys.ts";
import { RunConverter } from "./run-converter.ts";
import { newShards, type Routing, type Shard, splitShard } from "./shard-routing.ts";
import { corrupt, SnapshotDecoder, SnapshotEncoder } from "./snapshot-codec.ts";
import { StreamedKeysBuilder } from "./streamed-keys-builder.ts";
import { Entry, NEVER, TimedEntry } from "./timed-entry.ts";

/** Save and load give the event loop a turn after this many bytes. */
const YIELD_EVERY_BYTES = 1024 * 1024;
/**
 * Work units (see OrderedKeysBuilder.step) a load sorting the keys of a snapshot saved out
 * of key order (an older member's) does between turns: a few of the background slices.
 */
const LOAD_SORT_UNITS = 4 * SLICE_UNITS;

/** What a load parsed, ready to be swapped in. */
export interface LoadedKeyspace {
  routing: Routing;
  heap: DeadlineHeap;
  settled: OrderedKeys;
  approxBytes: number;
  /** The store revision the snapshot was taken at. */
  revision: number;
}

/**
 * A snapshot encoder writing to a sink: `flush` after each `encoder.add` that made pieces
 * ready (`encoder.hasReady`) writes them, with an event-loop turn after every megabyte.
 */
export class SnapshotWriter {
  readonly encoder: SnapshotEncoder;
  private bytesSinceYield = 0;

  constructor(
    private readonly sink: ByteSink,
    revision: number,
  ) {
    this.encoder = new SnapshotEncoder(revision);
  }

  async flush(): Promise<void> {
    this.bytesSinceYield += await writeAll(this.sink, this.encoder.takeReady());
    if (this.bytesSinceYield >= YIELD_EVERY_BYTES) {
      this.bytesSinceYield = 0;
      await yieldToEventLoop();
    }
  }

  /** Writes the trailer (and what is left before it). */
  async finish(): Promise<void> {
    await writeAll(this.sink, this.encoder.finish());
  }
}

/** Streams shards whose `saveView` was set at the instant the save was requested. */
export async function streamSnapshot(shards: Shard[], sink: ByteSink, revision: number): Promise<void> {
  const writer = new SnapshotWriter(sink, revision);
  const encoder = writer.encoder;
  for (const shard of shards) {
    const view = shard.saveView!;
    for (const [key, slot] of view) {
      if (slot instanceof TimedEntry) {
        encoder.add(key, slot, slot.expireAtMs, slot.deleteAtMs);
      } else {
        encoder.add(key, slot, NEVER, NEVER);
      }
      if (encoder.hasReady) await writer.flush();
    }
    // This shard is streamed: writes may change its entries in place again.
    shard.saveView = null;
  }
  await writer.finish();
}

/**
 * Feeds all of `source` to `decoder` (an event-loop turn after every megabyte) and ends
 * it: the decoder's callback has seen every record, trailer and checksum verified.
 */
export async function decodeAll(decoder: SnapshotDecoder, source: AsyncIterable<Uint8Array>): Promise<void> {
  let bytesSinceYield = 0;
  for await (const chunk of source) {
    decoder.push(chunk);
    bytesSinceYield += chunk.byteLength;
    if (bytesSinceYield >= YIELD_EVERY_BYTES) {
      bytesSinceYield = 0;
      await yieldToEventLoop();
    }
  }
  decoder.end();
}

/**
 * The ordered index of the keys a load read: as they came when in key order, else sorted
 * in steps with event-loop turns between them; then converted into KeyRuns (key bytes) in
 * steps too, so no turn does O(n) work.
 */
export async function settleLoadedOrder(order: StreamedKeysBuilder): Promise<KeyRuns> {
  const sorted = await sortLoadedKeys(order);
  const converter = new RunConverter(sorted, order.encodedBytes);
  while (!converter.done) {
    converter.step(LOAD_SORT_UNITS);
    if (!converter.done) await yieldToEventLoop();
  }
  return converter.result();
}

/**
 * The keys a load read as an OrderedKeys (blocks of strings): as they came when in key
 * order, else sorted in steps with event-loop turns between them.
 */
export async function sortLoadedKeys(order: StreamedKeysBuilder): Promise<OrderedKeys> {
  if (order.inOrder) return order.result();
  const builder = order.unordered();
  while (!builder.done) {
    builder.step(LOAD_SORT_UNITS);
    if (!builder.done) await yieldToEventLoop();
  }
  return builder.result();
}

/**
 * Parses a whole snapshot into `baseShards` fresh shards routed by `route` (split past
 * SPLIT_KEYS, a turn between splits), their deadline heap and their ordered index (see
 * MapleDB.load). Throws DkvError("CORRUPT") on a bad snapshot and changes nothing else.
 */
export async function loadKeyspace(
  source: AsyncIterable<Uint8Array>,
  baseShards: number,
  route: (key: string) => number,
): Promise<LoadedKeyspace> {
  const shards = newShards(baseShards);
  const heap = new DeadlineHeap();
  const mask = baseShards - 1;
  let approxBytes = 0;
  const order = new StreamedKeysBuilder();
  const decoder = new SnapshotDecoder((key, value, expireAtMs, deleteAtMs, revisions) => {
    const shard = shards[route(key) & mask]!;
    const map = shard.map;
    if (map.has(key)) {
      throw corrupt(`key ${JSON.stringify(key.slice(0, 64))} appears twice`, decoder.currentRecordOffset);
    }
    order.add(key);
    approxBytes += key.length + value.byteLength;
    const { version, createRevision, modRevision } = revisions;
    if (expireAtMs === NEVER && deleteAtMs === NEVER) {
      map.set(key, new Entry(value, version, createRevision, modRevision));
      return;
    }
    const entry = new TimedEntry(key, value, expireAtMs, deleteAtMs, version, createRevision, modRevision);
    if (deleteAtMs !== NEVER) heap.push(entry);
    shard.timedCount++;
    map.set(key, entry);
  });
  await decodeAll(decoder, source);
  // Shards loaded past SPLIT_KEYS split now (a turn between splits), siblings included.
  const routing: Routing = { directory: shards.slice(), mask, shards };
  for (let i = 0; i < shards.length; i++) {
    const shard = shards[i]!;
    while (shard.map.size >= shard.splitAt) {
      splitShard(routing, shard, route);
      await yieldToEventLoop();
    }
  }
  // MapleDB keeps its index as blocks of strings (DeferredOrderOptions.stringIndex).
  const settled = await sortLoadedKeys(order);
  return { routing, heap, settled, approxBytes, revision: decoder.storeRevision };
}

async function writeAll(sink: ByteSink, pieces: Uint8Array[]): Promise<number> {
  let bytes = 0;
  for (const piece of pieces) {
    const pending = sink.write(piece);
    if (pending !== undefined) await pending;
    bytes += piece.byteLength;
  }
  return bytes;
}

export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The shards of a Maple keyspace and how keys are routed to them: extendible hashing
 * (a directory of 2^bits slots, `directory[hash & mask]`, a shard split in two by one more
 * hash bit when it fills), re-routing every key by another hash, and the copy-on-write
 * detach of a shard that a running save still streams. MapleDB keeps `directory` and
 * `mask` in its own fields (a get reads them directly); the functions here change them.
 */
import { DkvError } from "../../errors.ts";
import { type Entry, TimedEntry } from "./timed-entry.ts";

/** A key without deadlines is a plain Entry; only keys with deadlines cost the larger TimedEntry. */
export type Slot = Entry;

/**
 * One shard of the keyspace. Why shard at all: a single JS Map holding every key makes
 * each rehash on growth a pause proportional to the whole data set (measured: ~90 ms
 * when one Map grows past 786k keys, ~2 ms at 16k) and caps the key count at one Map's
 * limit; shards bound both. They also bound the copy-on-write work a
 * write does while a snapshot is being streamed (see `save`).
 */
export interface Shard {
  map: Map<string, Slot>;
  /**
   * TimedEntry objects in `map`. While it is 0 every slot is a plain Entry, so the hot
   * paths skip the deadline checks, and `has` answers from the Map alone without loading
   * the entry object (a cache miss).
   */
  timedCount: number;
  /**
   * While a save still has to stream this shard, the map it iterates. A write first
   * makes `map` a private copy of it (once per save), so the saver sees the shard as it
   * was when the save started, and entries shared with that copy are replaced, never
   * changed in place (while no save runs, a write updates its entry in place).
   */
  saveView: Map<string, Slot> | null;
  /**
   * The shard holds the keys whose hash ends in the `bits` low bits `id`: the routing
   * directory's slots i with (i & ((1 << bits) - 1)) === id point here (see splitShard).
   */
  bits: number;
  id: number;
  /** Keys at which an insert splits the shard: SPLIT_KEYS, doubled while the next hash bit cannot divide it. */
  splitAt: number;
}

/** Where keys go: `directory[hash & mask]` (a shard may fill several slots), and each shard once. */
export interface Routing {
  directory: Shard[];
  mask: number;
  shards: Shard[];
}

export const DEFAULT_SHARDS = 64;
/**
 * Shard balance is checked when a shard first holds this many keys (and again each time
 * the largest shard doubles), so the check costs O(shards) a logarithmic number of times.
 */
export const SKEW_CHECK_MIN_KEYS = 4096;
/** A shard above this multiple of the mean size means the sampled hash cannot tell the keys apart. */
const SKEW_FACTOR_MAX = 8;
const MAX_SHARDS = 4096;
/**
 * A shard splits in two (by one more bit of its keys' hash) when it reaches this many keys,
 * so no shard's Map grows past it. Why: a JSC Map's table grows in steps of 4× up to
 * 16,384 entries (16,384 entries: 631 KiB) and its next step, at the 16,385th, takes 3.3 MiB
 * (measured, Bun 1.4.5): 40 B per entry at 16,384, 208 at 16,385 and still 104 at 32,768.
 * With a fixed 64 shards, 1M keys cost ~45 B of Map per key and 1.1M keys ~190 (the engine's
 * whole heap went from 331 to 476 B per key). Split at this size, each half starts at the
 * 631 KiB step (77 B per key) and fills it back to 40.
 */
export const SPLIT_KEYS = 16_384;
/** Hash bits a shard may be told apart by: the directory holds at most 2^16 slots. */
const MAX_SHARD_BITS = 16;

/** Throws a DkvError unless `count` is a valid number of shards to start with. */
export function checkShardCount(count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS || (count & (count - 1)) !== 0) {
    throw new DkvError(
      "BAD_REQUEST",
      `shards must be a power of two from 1 to ${MAX_SHARDS}, got ${count}; try ${DEFAULT_SHARDS}`,
    );
  }
}

/** The most keys any shard holds. */
export function largestShardSize(shards: readonly Shard[]): number {
  let largest = 0;
  for (const shard of shards) if (shard.map.size > largest) largest = shard.map.size;
  return largest;
}

/**
 * Whether one shard holds far more than its share (SKEW_FACTOR_MAX × the mean): the
 * sampled hash cannot tell those keys apart.
 */
export function isSkewed(shards: readonly Shard[]): boolean {
  let total = 0;
  let largest = 0;
  for (const shard of shards) {
    total += shard.map.size;
    if (shard.map.size > largest) largest = shard.map.size;
  }
  return largest > (SKEW_FACTOR_MAX * total) / shards.length;
}

/**
 * Moves every entry into `count` fresh shards routed by `route`, then splits those past
 * SPLIT_KEYS; entries keep their identity (the heap holds them).
 */
export function reshard(from: Shard[], count: number, route: (key: string) => number): Routing {
  const shards = newShards(count);
  const mask = count - 1;
  for (const old of from) {
    for (const [key, slot] of old.map) {
      const shard = shards[route(key) & mask]!;
      shard.map.set(key, slot);
      if (slot instanceof TimedEntry) shard.timedCount++;
    }
  }
  const routing: Routing = { directory: shards.slice(), mask, shards };
  for (let i = 0; i < shards.length; i++) {
    const shard = shards[i]!;
    while (shard.map.size >= shard.splitAt) splitShard(routing, shard, route);
  }
  return routing;
}

/**
 * Splits `shard` by the next bit of its keys' hash into itself and a new sibling
 * (extendible hashing: the directory doubles when the shard was told apart by as many bits
 * as it has slots). Fresh Maps for both halves: the shard's old Map is left as it was, so
 * an iterator over it (an index build in slices) still reads every key it held. If the bit
 * leaves one half empty (keys whose hashes agree there), nothing changes and the shard
 * waits until it doubles before trying again; past MAX_SHARD_BITS it never splits.
 * O(keys of the shard), once per SPLIT_KEYS / 2 inserts into it at most.
 */
export function splitShard(routing: Routing, shard: Shard, route: (key: string) => number): void {
  if (shard.bits >= MAX_SHARD_BITS) {
    shard.splitAt = Number.POSITIVE_INFINITY;
    return;
  }
  const bit = 1 << shard.bits;
  const low = new Map<string, Slot>();
  const high = new Map<string, Slot>();
  let lowTimed = 0;
  let highTimed = 0;
  for (const [key, slot] of shard.map) {
    const timed = slot instanceof TimedEntry ? 1 : 0;
    if ((route(key) & bit) === 0) {
      low.set(key, slot);
      lowTimed += timed;
    } else {
      high.set(key, slot);
      highTimed += timed;
    }
  }
  if (low.size === 0 || high.size === 0) {
    shard.splitAt = shard.map.size * 2;
    return;
  }
  if (routing.directory.length === bit) {
    routing.directory = routing.directory.concat(routing.directory);
    routing.mask = routing.directory.length - 1;
  }
  const bits = shard.bits + 1;
  // The same literal shape as newShards' (one hidden class for every shard).
  const sibling: Shard = {
    map: high,
    timedCount: highTimed,
    saveView: null,
    bits,
    id: shard.id | bit,
    splitAt: SPLIT_KEYS,
  };
  shard.map = low;
  shard.timedCount = lowTimed;
  shard.bits = bits;
  shard.splitAt = SPLIT_KEYS;
  const directory = routing.directory;
  for (let i = sibling.id; i < directory.length; i += bit << 1) directory[i] = sibling;
  routing.shards.push(sibling);
}

/**
 * Object literals made in one loop, not a constructor called per shard: two default
 * stores make 128 shards at start, enough calls to have the JIT compile the constructor
 * twice (baseline, then DFG), which pages ~2 MiB of compiler code into an idle server.
 */
export function newShards(count: number): Shard[] {
  const shards: Shard[] = [];
  const bits = 31 - Math.clz32(count);
  for (let i = 0; i < count; i++) {
    shards.push({ map: new Map(), timedCount: 0, saveView: null, bits, id: i, splitAt: SPLIT_KEYS });
  }
  return shards;
}

/** Gives a writer its own copy of a shard that a running save still has to stream. */
export function detachForSave(shard: Shard): void {
  if (shard.map === shard.saveView) shard.map = new Map(shard.map);
}

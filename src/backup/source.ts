import { DkvError } from "../errors.ts";
import type { RaftHost } from "../raft/host/raft-host.ts";
import {
  CHUNK_BYTES_MAX,
  encodeChunk,
  encodeHeader,
  encodeSectionEnd,
  encodeSectionStart,
  encodeTrailerHead,
  SectionDataTracker,
  type SectionMeta,
} from "./format.ts";

/** What the RPC servers call to stream a backup (`dkv snapshot save`). */
export interface SnapshotStreamSource {
  /**
   * The backup file's bytes for `shard` (every replicated shard when undefined). Throws a
   * DkvError before the first byte when the shard is not replicated here.
   */
  open(shard: number | undefined): AsyncIterable<Uint8Array>;
}

/** The replicated shards of this member, as the source needs them. */
export interface BackupShards {
  readonly host: RaftHost;
  /** Shard id → its type ("dstore" or "lockmgr(dstore)"). */
  readonly types: ReadonlyMap<number, string>;
}

interface ConsistentPoint {
  meta: SectionMeta;
  data: AsyncIterable<Uint8Array> | Uint8Array;
}

/**
 * Takes each shard's state at an applied index ≥ a ReadIndex (so every write acknowledged
 * before the save began is in it) and streams it: the state machine captures its keyspace
 * copy-on-write at that instant and encodes while writes go on; nothing is copied whole.
 */
export function replicatedSnapshotSource(
  shards: BackupShards | undefined,
  options: { timeoutMs: number; nowMs?: () => number },
): SnapshotStreamSource {
  return {
    open(shard: number | undefined): AsyncIterable<Uint8Array> {
      const available = shards === undefined ? [] : [...shards.types.keys()].sort((a, b) => a - b);
      if (available.length === 0) {
        throw new DkvError(
          "UNKNOWN_SHARD",
          "this server has no replicated (dstore or lockmgr(dstore)) shards to back up; lstore shards live in memory only",
        );
      }
      if (shard !== undefined && !available.includes(shard)) {
        throw new DkvError(
          "UNKNOWN_SHARD",
          `shard ${shard} is not a replicated shard of this server (replicated: ${available.join(", ")}); check --shard`,
        );
      }
      const selected = shard === undefined ? available : [shard];
      return backupStream(shards!, selected, options.timeoutMs, (options.nowMs ?? Date.now)());
    },
  };
}

async function consistentPoint(
  shards: BackupShards,
  shard: number,
  timeoutMs: number,
): Promise<ConsistentPoint> {
  const { host } = shards;
  // Evaluated on the Ready loop once this member has applied the read index: nothing
  // applies between reading the index and capturing the state.
  return host.read(
    shard,
    (nowMs) => {
      const status = host.status(shard);
      return {
        meta: {
          shard,
          index: status.appliedIndex,
          term: status.raft.term,
          timeMs: nowMs,
          type: shards.types.get(shard) ?? "dstore",
        },
        data: host.stateMachine(shard).snapshot(),
      };
    },
    { timeoutMs },
  );
}

async function* chunksOf(data: AsyncIterable<Uint8Array> | Uint8Array): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) yield data;
  else yield* data;
}

async function* backupStream(
  shards: BackupShards,
  selected: readonly number[],
  timeoutMs: number,
  createdAtMs: number,
): AsyncGenerator<Uint8Array> {
  const hasher = new Bun.CryptoHasher("sha256");
  const hashed = (bytes: Uint8Array): Uint8Array => {
    hasher.update(bytes);
    return bytes;
  };
  yield hashed(encodeHeader(createdAtMs));
  for (const shard of selected) {
    const point = await consistentPoint(shards, shard, timeoutMs);
    yield hashed(encodeSectionStart(point.meta));
    const tracker = new SectionDataTracker();
    for await (const chunk of chunksOf(point.data)) {
      // Bounded by the chunk: split so no record exceeds what a reader buffers.
      for (let at = 0; at < chunk.length; at += CHUNK_BYTES_MAX) {
        const piece = chunk.subarray(at, Math.min(chunk.length, at + CHUNK_BYTES_MAX));
        tracker.add(piece);
        yield hashed(encodeChunk(piece));
      }
    }
    const keys = tracker.keys();
    if (keys === undefined) {
      throw new DkvError("INTERNAL", `shard ${shard}: the state machine's snapshot has no key count trailer`);
    }
    yield hashed(encodeSectionEnd(tracker.bytes, keys, tracker.crc));
  }
  yield hashed(encodeTrailerHead(selected.length));
  yield new Uint8Array(hasher.digest());
}

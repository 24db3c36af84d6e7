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

/** Waits between attempts while a Raft snapshot of the same shard is being written. */
const SAVE_BUSY_RETRY_MS = 50;
/** Chunks read before the section starts: a state machine refuses a second save by failing its second chunk. */
const PREFETCH_CHUNKS = 2;

/** The engine runs one save at a time: a Raft snapshot being written makes a backup wait. */
function isSaveBusy(error: unknown): boolean {
  return DkvError.is(error, "BAD_REQUEST") && error.message.includes("snapshot save is already running");
}

interface OpenSection {
  meta: SectionMeta;
  prefetched: Uint8Array[];
  rest: AsyncIterator<Uint8Array>;
}

/** A consistent point whose data has started to flow; retried while the engine is busy saving. */
async function openSection(shards: BackupShards, shard: number, timeoutMs: number): Promise<OpenSection> {
  const deadline = performance.now() + timeoutMs;
  // Bounded by the deadline: each attempt waits SAVE_BUSY_RETRY_MS or succeeds.
  for (;;) {
    const remainingMs = Math.max(1, Math.ceil(deadline - performance.now()));
    const point = await consistentPoint(shards, shard, remainingMs);
    const rest = chunksOf(point.data)[Symbol.asyncIterator]();
    const prefetched: Uint8Array[] = [];
    try {
      for (let i = 0; i < PREFETCH_CHUNKS; i++) {
        const next = await rest.next();
        if (next.done === true) break;
        prefetched.push(next.value);
      }
      return { meta: point.meta, prefetched, rest };
    } catch (error) {
      if (!isSaveBusy(error) || performance.now() + SAVE_BUSY_RETRY_MS > deadline) throw error;
      await Bun.sleep(SAVE_BUSY_RETRY_MS);
    }
  }
}

async function* sectionData(section: OpenSection): AsyncGenerator<Uint8Array> {
  try {
    yield* section.prefetched;
    // Bounded by the state machine's snapshot.
    for (;;) {
      const next = await section.rest.next();
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    // Stopped early (the client went away): end the state machine's save too.
    await section.rest.return?.();
  }
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
    const section = await openSection(shards, shard, timeoutMs);
    yield hashed(encodeSectionStart(section.meta));
    const tracker = new SectionDataTracker();
    for await (const chunk of sectionData(section)) {
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

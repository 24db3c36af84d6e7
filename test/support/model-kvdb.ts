import type { ByteSink, DbInfo, KVDB } from "../../src/db/kvdb.ts";
import { DkvError } from "../../src/errors.ts";

/**
 * The oracle: a deliberately plain KVDB over one Map, written to be read and believed
 * rather than to be fast. Property tests compare real engines and stores against it, and
 * LocalStore's tests run on it before Maple exists. Every rule is spelled out once, in
 * the helpers below; 0 means "never" for both deadlines.
 */
interface ModelEntry {
  value: Uint8Array;
  /** Wall-clock ms at which `get` stops returning the value; 0 = never. */
  expireAt: number;
  /** Wall-clock ms at which the key is gone entirely; 0 = never. */
  deleteAt: number;
}

function isDeleted(entry: ModelEntry, nowMs: number): boolean {
  return entry.deleteAt !== 0 && nowMs >= entry.deleteAt;
}

function isExpired(entry: ModelEntry, nowMs: number): boolean {
  // A delete deadline alone also expires the value then.
  return isDeleted(entry, nowMs) || (entry.expireAt !== 0 && nowMs >= entry.expireAt);
}

function deadline(inMs: number, nowMs: number): number {
  return inMs === 0 ? 0 : nowMs + inMs;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class ModelKVDB implements KVDB {
  private readonly entries = new Map<string, ModelEntry>();

  /** The entry if the key is present (possibly expired), dropping it if past its delete deadline. */
  private present(key: string, nowMs: number): ModelEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (isDeleted(entry, nowMs)) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** The entry only if its value is live (present and not expired). */
  private live(key: string, nowMs: number): ModelEntry | undefined {
    const entry = this.present(key, nowMs);
    return entry !== undefined && !isExpired(entry, nowMs) ? entry : undefined;
  }

  set(key: string, value: Uint8Array, _nowMs: number): void {
    this.entries.set(key, { value: value.slice(), expireAt: 0, deleteAt: 0 });
  }

  setE(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): void {
    this.entries.set(key, {
      value: value.slice(),
      expireAt: deadline(expireInMs, nowMs),
      deleteAt: deadline(deleteInMs, nowMs),
    });
  }

  setEIfUnset(
    key: string,
    value: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    // An expired-but-present key is not unset; only absence (or past deleteAt) is.
    if (this.present(key, nowMs) !== undefined) return false;
    this.setE(key, value, expireInMs, deleteInMs, nowMs);
    return true;
  }

  expire(key: string, nowMs: number): void {
    const entry = this.present(key, nowMs);
    if (entry !== undefined && !isExpired(entry, nowMs)) entry.expireAt = nowMs;
  }

  delete(key: string, _nowMs: number): void {
    this.entries.delete(key);
  }

  get(key: string, nowMs: number): Uint8Array | undefined {
    return this.live(key, nowMs)?.value.slice();
  }

  has(key: string, nowMs: number): boolean {
    return this.present(key, nowMs) !== undefined;
  }

  deleteIfEquals(key: string, expected: Uint8Array, nowMs: number): boolean {
    // Present, not live: an expired value still counts, so its owner can release it.
    const entry = this.present(key, nowMs);
    if (entry === undefined) return true;
    if (!bytesEqual(entry.value, expected)) return false;
    this.entries.delete(key);
    return true;
  }

  renewIfEquals(
    key: string,
    expected: Uint8Array,
    expireInMs: number,
    deleteInMs: number,
    nowMs: number,
  ): boolean {
    const entry = this.live(key, nowMs);
    if (entry === undefined || !bytesEqual(entry.value, expected)) return false;
    entry.expireAt = deadline(expireInMs, nowMs);
    entry.deleteAt = deadline(deleteInMs, nowMs);
    return true;
  }

  purgeExpired(nowMs: number, maxEntries: number): number {
    let removed = 0;
    for (const [key, entry] of this.entries) {
      if (removed >= maxEntries) break;
      if (isDeleted(entry, nowMs)) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  async save(_sink: ByteSink, _nowMs: number): Promise<void> {
    throw new DkvError("BAD_REQUEST", "ModelKVDB is a test oracle and has no snapshot format; use MapleDB.");
  }

  async load(_source: AsyncIterable<Uint8Array>): Promise<void> {
    throw new DkvError("BAD_REQUEST", "ModelKVDB is a test oracle and has no snapshot format; use MapleDB.");
  }

  info(nowMs: number): DbInfo {
    let keysWithDeadline = 0;
    let approxBytes = 0;
    for (const [key, entry] of this.entries) {
      if (isDeleted(entry, nowMs)) continue;
      if (entry.expireAt !== 0 || entry.deleteAt !== 0) keysWithDeadline++;
      approxBytes += key.length * 2 + entry.value.length;
    }
    return { keys: this.entries.size, keysWithDeadline, approxBytes, shards: 1 };
  }

  /** How many entries the Map holds, including ones past their delete deadline not yet purged. */
  get rawSize(): number {
    return this.entries.size;
  }
}

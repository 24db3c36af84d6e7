import type {
  ByteSink,
  ChangeListener,
  DbInfo,
  EntryInfo,
  KeyRange,
  KVDB,
  ListOptions,
  ListPage,
} from "../../src/db/kvdb.ts";
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
  version: number;
  createRevision: number;
  modRevision: number;
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

/**
 * Byte order of keys, spelled out the slow way: compare the UTF-8 encodings. Keys with
 * lone surrogates (not encodable) compare by code units with surrogates above the rest
 * of the Basic Multilingual Plane, where the characters they start would sort.
 */
export function modelKeyOrder(a: string, b: string): number {
  if (a.isWellFormed() && b.isWellFormed())
    return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  const units = (s: string) =>
    Array.from({ length: s.length }, (_, i) => {
      const unit = s.charCodeAt(i);
      return unit >= 0xd800 && unit <= 0xdfff ? unit + 0x10000 : unit;
    });
  const x = units(a);
  const y = units(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

function inRange(key: string, range: KeyRange): boolean {
  if (range.prefix !== undefined) return key.startsWith(range.prefix);
  if (range.from !== undefined && modelKeyOrder(key, range.from) < 0) return false;
  if (range.to !== undefined && modelKeyOrder(key, range.to) >= 0) return false;
  return true;
}

export class ModelKVDB implements KVDB {
  private readonly entries = new Map<string, ModelEntry>();
  private rev = 0;
  private pinned = false;
  private listener: ChangeListener | undefined;

  onChange(listener: ChangeListener | undefined): void {
    this.listener = listener;
  }

  nextDeadlineMs(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const entry of this.entries.values())
      if (entry.deleteAt !== 0) next = Math.min(next, entry.deleteAt);
    return next;
  }

  get revision(): number {
    return this.rev;
  }

  pinRevision(revision: number): void {
    if (revision < this.rev) throw new DkvError("INTERNAL", `revision ${revision} < ${this.rev}`);
    this.rev = revision;
    this.pinned = true;
  }

  unpinRevision(): void {
    this.pinned = false;
  }

  private nextRevision(): number {
    if (!this.pinned) this.rev++;
    return this.rev;
  }

  /** Writes `value` with deadlines, counting it as a new key when none is present. */
  private write(
    key: string,
    value: Uint8Array,
    expireAt: number,
    deleteAt: number,
    nowMs: number,
    change: "put" | "expire" = "put",
  ): void {
    const old = this.present(key, nowMs);
    const revision = this.nextRevision();
    this.listener?.(change, key, change === "put" ? value : undefined, revision);
    this.entries.set(key, {
      value: value.slice(),
      expireAt,
      deleteAt,
      version: old === undefined ? 1 : old.version + 1,
      createRevision: old === undefined ? revision : old.createRevision,
      modRevision: revision,
    });
  }

  /**
   * The entry if the key is present (possibly expired). One past its delete deadline stays
   * in the map, as in the engine, until a purge, a delete or an overwrite removes it.
   */
  private present(key: string, nowMs: number): ModelEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || isDeleted(entry, nowMs)) return undefined;
    return entry;
  }

  /** Every removal is a change and takes a revision of its own. */
  private remove(key: string, change: "delete" | "expire"): void {
    if (!this.entries.delete(key)) return;
    const revision = this.nextRevision();
    this.listener?.(change, key, undefined, revision);
  }

  /** The entry only if its value is live (present and not expired). */
  private live(key: string, nowMs: number): ModelEntry | undefined {
    const entry = this.present(key, nowMs);
    return entry !== undefined && !isExpired(entry, nowMs) ? entry : undefined;
  }

  set(key: string, value: Uint8Array, nowMs: number): void {
    this.write(key, value, 0, 0, nowMs);
  }

  setE(key: string, value: Uint8Array, expireInMs: number, deleteInMs: number, nowMs: number): void {
    this.write(key, value, deadline(expireInMs, nowMs), deadline(deleteInMs, nowMs), nowMs);
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
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    // Past its delete deadline a key is dropped now; an already expired value stays as it is.
    if (isDeleted(entry, nowMs)) this.remove(key, "expire");
    else if (!isExpired(entry, nowMs)) this.write(key, entry.value, nowMs, entry.deleteAt, nowMs, "expire");
  }

  delete(key: string, _nowMs: number): void {
    this.remove(key, "delete");
  }

  get(key: string, nowMs: number): Uint8Array | undefined {
    return this.live(key, nowMs)?.value.slice();
  }

  getEntry(key: string, nowMs: number): EntryInfo | undefined {
    const entry = this.live(key, nowMs);
    if (entry === undefined) return undefined;
    const { version, createRevision, modRevision } = entry;
    return { key, value: entry.value.slice(), version, createRevision, modRevision };
  }

  /** Sorts every key, then filters: the obvious way, not the fast one. */
  list(options: ListOptions, nowMs: number): ListPage {
    const keys = [...this.entries.keys()]
      .filter((key) => this.live(key, nowMs) !== undefined && inRange(key, options))
      .filter((key) => options.after === undefined || modelKeyOrder(key, options.after) > 0)
      .sort(modelKeyOrder);
    const limit = options.limit ?? keys.length;
    const items = keys.slice(0, limit).map((key) => {
      const info = this.getEntry(key, nowMs)!;
      return options.keysOnly ? { ...info, value: undefined } : info;
    });
    const more = keys.length > limit;
    return more ? { items, more, next: items[items.length - 1]!.key } : { items, more };
  }

  /** The model sorts on every list: always ready, nothing to prepare or drop. */
  orderReady(): boolean {
    return true;
  }

  prepareOrder(): Promise<void> {
    return Promise.resolve();
  }

  dropOrder(): void {}

  count(range: KeyRange, nowMs: number): number {
    return this.list({ prefix: range.prefix, from: range.from, to: range.to }, nowMs).items.length;
  }

  has(key: string, nowMs: number): boolean {
    return this.present(key, nowMs) !== undefined;
  }

  deleteIfEquals(key: string, expected: Uint8Array, nowMs: number): boolean {
    // Present, not live: an expired value still counts, so its owner can release it.
    const entry = this.present(key, nowMs);
    if (entry === undefined) return true;
    if (!bytesEqual(entry.value, expected)) return false;
    this.remove(key, "delete");
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
    this.write(key, entry.value, deadline(expireInMs, nowMs), deadline(deleteInMs, nowMs), nowMs);
    return true;
  }

  /** Due keys in (delete deadline, key) order, the engine's deterministic purge order. */
  purgeExpired(nowMs: number, maxEntries: number): number {
    const due = [...this.entries]
      .filter(([, entry]) => isDeleted(entry, nowMs))
      .sort(([a, x], [b, y]) => x.deleteAt - y.deleteAt || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, maxEntries);
    for (const [key] of due) this.remove(key, "expire");
    return due.length;
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
    let keys = 0;
    for (const entry of this.entries.values()) if (!isDeleted(entry, nowMs)) keys++;
    return { keys, keysWithDeadline, approxBytes, shards: 1 };
  }

  /**
   * The model as of now, apart from this one (what a snapshot of an engine holds): entries
   * are replaced, never changed, by writes, so the copy shares them. No change listener.
   */
  copy(): ModelKVDB {
    const copy = new ModelKVDB();
    for (const [key, entry] of this.entries) copy.entries.set(key, entry);
    copy.rev = this.rev;
    copy.pinned = this.pinned;
    return copy;
  }

  /** How many entries the Map holds, including ones past their delete deadline not yet purged. */
  get rawSize(): number {
    return this.entries.size;
  }
}

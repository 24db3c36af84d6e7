import type { TimedEntry } from "./timed-entry.ts";

/**
 * Min-heap of entries ordered by delete deadline, so purging finds due keys without
 * scanning the shards. It is indexed: every entry knows its slot (`heapIndex`), so an
 * overwrite, delete or renew updates or removes the entry in O(log n). The heap
 * therefore never holds stale entries, its size is exactly the number of keys with a
 * delete deadline, and every purge step removes a real key.
 */
export class DeadlineHeap {
  private items: TimedEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): TimedEntry | undefined {
    return this.items[0];
  }

  push(entry: TimedEntry): void {
    entry.heapIndex = this.items.length;
    this.items.push(entry);
    this.siftUp(entry.heapIndex);
  }

  remove(entry: TimedEntry): void {
    const index = entry.heapIndex;
    if (index < 0) return;
    const last = this.items.pop()!;
    entry.heapIndex = -1;
    if (last === entry) return;
    this.items[index] = last;
    last.heapIndex = index;
    this.restore(index);
  }

  /** Call after changing `entry.deleteAtMs` of an entry that is in the heap. */
  update(entry: TimedEntry): void {
    this.restore(entry.heapIndex);
  }

  /** Puts `next` in the slot of `previous` (copy-on-write replacement), then reorders. */
  replace(previous: TimedEntry, next: TimedEntry): void {
    const index = previous.heapIndex;
    previous.heapIndex = -1;
    this.items[index] = next;
    next.heapIndex = index;
    this.restore(index);
  }

  /**
   * Counts entries with `deleteAtMs <= nowMs` by walking only the due part of the heap
   * (a due node's parent is due too), so the cost is O(due entries), not O(size).
   */
  countDue(nowMs: number): number {
    const items = this.items;
    if (items.length === 0 || items[0]!.deleteAtMs > nowMs) return 0;
    let count = 0;
    const stack: number[] = [0];
    while (stack.length > 0) {
      const index = stack.pop()!;
      count++;
      const left = 2 * index + 1;
      if (left < items.length && items[left]!.deleteAtMs <= nowMs) stack.push(left);
      if (left + 1 < items.length && items[left + 1]!.deleteAtMs <= nowMs) stack.push(left + 1);
    }
    return count;
  }

  private restore(index: number): void {
    if (index > 0 && dueBefore(this.items[index]!, this.items[(index - 1) >> 1]!)) {
      this.siftUp(index);
    } else {
      this.siftDown(index);
    }
  }

  private siftUp(index: number): void {
    const items = this.items;
    const entry = items[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = items[parentIndex]!;
      if (!dueBefore(entry, parent)) break;
      items[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    items[index] = entry;
    entry.heapIndex = index;
  }

  private siftDown(index: number): void {
    const items = this.items;
    const length = items.length;
    const entry = items[index]!;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && dueBefore(items[right]!, items[left]!) ? right : left;
      const childEntry = items[child]!;
      if (!dueBefore(childEntry, entry)) break;
      items[index] = childEntry;
      childEntry.heapIndex = index;
      index = child;
    }
    items[index] = entry;
    entry.heapIndex = index;
  }
}

/**
 * The heap's order: by delete deadline, ties broken by key. A strict total order, so the
 * purge order of equal deadlines is the same on every replica whatever the heap's shape
 * (one restored from a snapshot, one built by applying the log): expiry events agree.
 */
function dueBefore(a: TimedEntry, b: TimedEntry): boolean {
  return a.deleteAtMs < b.deleteAtMs || (a.deleteAtMs === b.deleteAtMs && a.key < b.key);
}

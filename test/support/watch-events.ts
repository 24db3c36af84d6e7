import type { WatchEvent } from "../../src/store/types.ts";

/** The next `count` events of `iterator` (progress included), failing if it ends first. */
export async function take(iterator: AsyncIterator<WatchEvent>, count: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  for (let i = 0; i < count; i++) {
    const next = await iterator.next();
    if (next.done === true) throw new Error(`the watch ended after ${events.length} events`);
    events.push(next.value);
  }
  return events;
}

/** Events as short strings ("put k@3", "progress@4") for one-line expectations. */
export const summary = (events: WatchEvent[]): string[] =>
  events.map((e) => (e.type === "progress" ? `progress@${e.revision}` : `${e.type} ${e.key}@${e.revision}`));

/**
 * The in-memory log of RaftStorage (EntryLog): columns and shared chunks instead of an
 * object per entry, checked against a plain array of entries through appends that replace
 * a suffix, compactions and resets, with small and large entries.
 */

import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../../src/raft/core/assert.ts";
import type { Entry, EntryKind } from "../../../src/raft/core/types.ts";
import {
  ENTRY_CHUNK_BYTES,
  ENTRY_OWN_BUFFER_BYTES_MIN,
  EntryLog,
} from "../../../src/raft/storage/entry-log.ts";
import { seededRandom } from "../../support/seeded-random.ts";

function entry(index: number, term: number, bytes: number, fill: number): Entry {
  return {
    index,
    term,
    kind: (index % 3) as EntryKind,
    timeMs: 1000 + index,
    data: new Uint8Array(bytes).fill(fill),
  };
}

function expectSame(log: EntryLog, model: Entry[], base: number, baseTerm: number): void {
  expect(log.baseIndex).toBe(base);
  expect(log.baseTerm).toBe(baseTerm);
  expect(log.lastIndex()).toBe(base + model.length);
  expect(log.termAt(base)).toBe(baseTerm);
  expect(log.termAt(base + model.length + 1)).toBeUndefined();
  if (model.length > 0) expect(log.slice(base + 1, base + model.length + 1, Infinity)).toEqual(model);
  for (const e of model) expect(log.termAt(e.index)).toBe(e.term);
}

describe("EntryLog against a plain array", () => {
  for (const seed of [1, 2, 3, 4]) {
    test(`seed ${seed}: the same entries through appends, conflicts, compactions and resets`, () => {
      const next = seededRandom(seed);
      let base = 0;
      let baseTerm = 0;
      let model: Entry[] = [];
      const log = new EntryLog(0, 0, []);
      let term = 1;
      for (let step = 0; step < 3000; step++) {
        const roll = next();
        if (roll < 0.6) {
          // Append a run, sometimes replacing a suffix (a new leader's entries).
          const last = base + model.length;
          const from =
            next() < 0.15 && model.length > 0
              ? last - Math.floor(next() * Math.min(model.length, 20))
              : last + 1;
          if (from <= last) term++;
          const run: Entry[] = [];
          const count = 1 + Math.floor(next() * 20);
          for (let i = 0; i < count; i++) {
            const big = next() < 0.03;
            const bytes = big
              ? ENTRY_OWN_BUFFER_BYTES_MIN + Math.floor(next() * 20_000)
              : Math.floor(next() * 600);
            run.push(entry(from + i, term, bytes, step & 0xff));
          }
          expect(log.append(run)).toBe(0);
          model = model.slice(0, from - base - 1).concat(run);
        } else if (roll < 0.9 && model.length > 0) {
          const to = base + 1 + Math.floor(next() * model.length);
          log.compactTo(to);
          baseTerm = model[to - base - 1]!.term;
          model = model.slice(to - base);
          base = to;
        } else if (roll < 0.92) {
          base += model.length + Math.floor(next() * 5);
          baseTerm = ++term;
          model = [];
          log.reset(base, baseTerm);
        }
        if (step % 50 === 0) expectSame(log, model, base, baseTerm);
      }
      expectSame(log, model, base, baseTerm);
      // Entries at or below the base are skipped, reported by position.
      if (base > 0) expect(log.append([entry(base, baseTerm, 1, 0)])).toBe(1);
      expectSame(log, model, base, baseTerm);
      log.compactTo(base + model.length);
      expect(log.heldBytes).toBeLessThan(ENTRY_CHUNK_BYTES);
    });
  }
});

describe("what EntryLog holds and hands out", () => {
  test("100 000 entries of 160 B cost under 1.3x their bytes; compaction lets them go", () => {
    const log = new EntryLog(0, 0, []);
    const count = 100_000;
    for (let i = 1; i <= count; i++) log.append([entry(i, 1, 160, i & 0xff)]);
    expect(log.heldBytes).toBeLessThan(count * 160 * 1.3);
    log.compactTo(count - 10);
    expect(log.heldBytes).toBeLessThan(2 * ENTRY_CHUNK_BYTES);
    expect(log.slice(count - 9, count + 1, Infinity).map((e) => e.index)).toEqual(
      Array.from({ length: 10 }, (_, i) => count - 9 + i),
    );
  });

  test("a small entry's bytes come out as a buffer of their own, never a view of a larger one", () => {
    // Entries decoded from a WAL frame or a transport message may be views of a big buffer.
    const frame = new Uint8Array(64 * 1024).fill(7);
    const log = new EntryLog(0, 0, []);
    log.append([{ index: 1, term: 1, kind: 0, timeMs: 5, data: frame.subarray(100, 300) }]);
    const [read] = log.slice(1, 2, Infinity);
    expect(read!.data).toEqual(frame.subarray(100, 300));
    expect(read!.data.buffer.byteLength).toBe(200);
    // And writing into the source afterwards does not change the log.
    frame.fill(1);
    expect(log.entryAt(1)!.data[0]).toBe(7);
  });

  test("slice honours the byte budget, at least one entry", () => {
    const log = new EntryLog(10, 3, [entry(11, 3, 100, 1), entry(12, 3, 100, 2), entry(13, 4, 100, 3)]);
    expect(log.slice(11, 14, 1).length).toBe(1);
    expect(log.slice(11, 14, 2 * 116).length).toBe(2);
    expect(() => log.slice(10, 12, Infinity)).toThrow(AssertionError);
    expect(() => log.slice(11, 15, Infinity)).toThrow(AssertionError);
  });
});

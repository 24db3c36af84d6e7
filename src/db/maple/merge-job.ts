/** A merge job of the settled index's runs (key-runs.ts); split out of key-runs.ts at stop 32 (no change). */
import { copyKey, entryCost, KeyRun, lowerBoundIn } from "./key-run.ts";

/**
 * A merge of one or two runs (one: a rewrite without its dead entries) into a new run,
 * in steps. Dead entries are left out; the sources hold no live key twice (see KeyRuns).
 */
export class MergeJob {
  readonly sources: KeyRun[];
  private readonly out: Uint8Array;
  private readonly outEnds: Uint32Array;
  /** Entries written, and bytes. */
  private n = 0;
  private at = 0;
  /** Next entry of each source, and where its bytes start. */
  private readonly next: number[];
  private readonly from: number[];
  /** Entries of the output marked dead while the job ran (their sources' entries were removed once copied). */
  private readonly outDead: number[] = [];
  /** Bytes every key of the sources shares: comparisons start after them. */
  private readonly skip: number;
  readonly size: number;

  constructor(sources: KeyRun[]) {
    this.sources = sources;
    let bytes = 0;
    let entries = 0;
    let size = 0;
    for (const run of sources) {
      run.job = this;
      bytes += run.usedBytes - run.deadBytes;
      entries += run.live;
      size += run.length;
    }
    this.size = size;
    this.out = new Uint8Array(bytes);
    this.outEnds = new Uint32Array(entries);
    this.next = sources.map(() => 0);
    this.from = sources.map(() => 0);
    let skip = sources[0]!.shared;
    if (sources.length === 2) {
      const a = sources[0]!.bytes;
      const b = sources[1]!.bytes;
      const m = Math.min(skip, sources[1]!.shared);
      let i = 0;
      while (i < m && a[i] === b[i]) i++;
      skip = i;
    }
    this.skip = skip;
  }

  get done(): boolean {
    for (let s = 0; s < this.sources.length; s++) if (this.next[s]! < this.sources[s]!.length) return false;
    return true;
  }

  /** Source `run`'s entry i was just marked dead: if it was copied already, its copy is too. */
  removed(run: KeyRun, i: number): void {
    const s = this.sources.indexOf(run);
    if (i >= this.next[s]!) return;
    const start = run.start(i);
    const end = run.ends[i]!;
    const probe = run.bytes.subarray(start, end);
    const o = lowerBoundIn(this.out, this.outEnds, this.n, probe, end - start, false);
    this.outDead.push(o);
  }

  /** Moves entries for up to about `budget` (see entryCost); returns the cost of what it moved or stepped over. */
  step(budget: number): number {
    return this.sources.length === 1 ? this.copySome(budget) : this.mergeSome(budget);
  }

  /** A rewrite: copies live stretches of the one source. */
  private copySome(budget: number): number {
    const run = this.sources[0]!;
    const src = run.bytes;
    const ends = run.ends;
    const dead = run.dead;
    const out = this.out;
    const outEnds = this.outEnds;
    const length = run.length;
    const most = Math.max(1, budget);
    let i = this.next[0]!;
    let n = this.n;
    let at = this.at;
    let cost = 0;
    while (i < length && cost < most) {
      if (dead !== null && dead[i] === 1) {
        i++;
        cost++;
        continue;
      }
      const s = i === 0 ? 0 : ends[i - 1]!;
      let e = i;
      let prev = s;
      while (e < length && cost < most && (dead === null || dead[e] === 0)) {
        cost += entryCost(ends[e]! - prev);
        prev = ends[e]!;
        e++;
      }
      const shift = at - s;
      out.set(src.subarray(s, prev), at);
      for (let k = i; k < e; k++) outEnds[n++] = ends[k]! + shift;
      at = outEnds[n - 1]!;
      i = e;
    }
    this.next[0] = i;
    this.n = n;
    this.at = at;
    return cost;
  }

  /** A merge of two sources in key order. */
  private mergeSome(budget: number): number {
    const ra = this.sources[0]!;
    const rb = this.sources[1]!;
    const a = ra.bytes;
    const b = rb.bytes;
    const aEnds = ra.ends;
    const bEnds = rb.ends;
    const aDead = ra.dead;
    const bDead = rb.dead;
    const an = ra.length;
    const bn = rb.length;
    const out = this.out;
    const outEnds = this.outEnds;
    const skip = this.skip;
    const most = Math.max(1, budget);
    let i = this.next[0]!;
    let j = this.next[1]!;
    let as = this.from[0]!;
    let bs = this.from[1]!;
    let n = this.n;
    let at = this.at;
    let cost = 0;
    while (cost < most && (i < an || j < bn)) {
      if (i < an && aDead !== null && aDead[i] === 1) {
        as = aEnds[i]!;
        i++;
        cost++;
        continue;
      }
      if (j < bn && bDead !== null && bDead[j] === 1) {
        bs = bEnds[j]!;
        j++;
        cost++;
        continue;
      }
      let c: number;
      if (i >= an) c = 1;
      else if (j >= bn) c = -1;
      else {
        // compareBytes, inlined.
        const ae = aEnds[i]!;
        const be = bEnds[j]!;
        const m = Math.min(ae - as, be - bs);
        let d = 0;
        for (let p = skip; p < m; p++) {
          d = a[as + p]! - b[bs + p]!;
          if (d !== 0) break;
        }
        c = d !== 0 ? d : ae - as - (be - bs);
      }
      if (c <= 0) {
        // (c === 0 cannot be: a key is live in one run only; kept once if it were.)
        const ae = aEnds[i]!;
        at = copyKey(a, as, ae, out, at);
        outEnds[n++] = at;
        cost += entryCost(ae - as);
        as = ae;
        i++;
        if (c === 0) {
          bs = bEnds[j]!;
          j++;
        }
      } else {
        const be = bEnds[j]!;
        at = copyKey(b, bs, be, out, at);
        outEnds[n++] = at;
        cost += entryCost(be - bs);
        bs = be;
        j++;
      }
    }
    this.next[0] = i;
    this.next[1] = j;
    this.from[0] = as;
    this.from[1] = bs;
    this.n = n;
    this.at = at;
    return cost;
  }

  /** The merged run (once `done`), with the removals made meanwhile marked. */
  result(): KeyRun {
    const run = new KeyRun(this.out, this.outEnds, this.n);
    for (const o of this.outDead) run.markDead(o);
    return run;
  }
}

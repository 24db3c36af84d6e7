/**
 * The simulated application: an append-only register of write ids. Applying is
 * deterministic, a snapshot is its whole state, and a read observes the set of ids.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface AppliedWrite {
  index: number;
  id: string;
}

export class WriteRegister {
  appliedIndex = 0;
  readonly writes: AppliedWrite[] = [];
  readonly ids = new Set<string>();

  constructor(appliedIndex = 0, writes: readonly AppliedWrite[] = []) {
    this.appliedIndex = appliedIndex;
    for (const write of writes) {
      this.writes.push(write);
      this.ids.add(write.id);
    }
  }

  /** Applies entry `index`; `id` is null for entries without a command (no-op, conf change). */
  apply(index: number, id: string | null): void {
    this.appliedIndex = index;
    if (id === null) return;
    this.writes.push({ index, id });
    this.ids.add(id);
  }

  encode(): Uint8Array {
    return encoder.encode(JSON.stringify({ appliedIndex: this.appliedIndex, writes: this.writes }));
  }

  static decode(data: Uint8Array): WriteRegister {
    const parsed = JSON.parse(decoder.decode(data)) as { appliedIndex: number; writes: AppliedWrite[] };
    return new WriteRegister(parsed.appliedIndex, parsed.writes);
  }
}

export function encodeWrite(id: string): Uint8Array {
  return encoder.encode(id);
}

export function decodeWrite(data: Uint8Array): string {
  return decoder.decode(data);
}

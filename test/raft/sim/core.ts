/**
 * What the simulator needs from a Raft core, as a factory: the real core by default, or a
 * mutated copy outside the repo (see run.ts) to show the simulator catches core bugs.
 */
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogStorage,
  RaftConfig,
  RaftNodeApi,
  Snapshot,
} from "../../../src/raft/core/types.ts";

/** The runtime's writable view of the "disk": the only state that survives a crash. */
export interface SimStorage extends LogStorage {
  append(entries: Entry[]): void;
  setHardState(hardState: HardState): void;
  applySnapshot(snapshot: Snapshot): void;
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot;
  compact(index: number): void;
}

export interface StorageInit {
  hardState: HardState;
  conf: ConfState;
  snapshot?: Snapshot;
  entries?: Entry[];
}

export interface CoreFactory {
  createNode(config: RaftConfig): RaftNodeApi;
  createStorage(init: StorageInit): SimStorage;
  encodeConfChange(change: ConfChange): Uint8Array;
  decodeConfChange(data: Uint8Array): ConfChange;
  /** The lease length the runtime configures (src/raft/core/reads.ts), from the same copy. */
  readLeaseMs(tickMs: number, electionTicks: number): number;
}

/** The shape of src/raft/core/index.ts (or a copy of it) that `coreFromModule` adapts. */
export interface CoreModule {
  RaftNode: new (config: RaftConfig) => RaftNodeApi;
  MemoryLogStorage: new (init: StorageInit) => SimStorage;
  encodeConfChange(change: ConfChange): Uint8Array;
  decodeConfChange(data: Uint8Array): ConfChange;
  readLeaseMs(tickMs: number, electionTicks: number): number;
}

export function coreFromModule(mod: CoreModule): CoreFactory {
  return {
    createNode: (config) => new mod.RaftNode(config),
    createStorage: (init) => new mod.MemoryLogStorage(init),
    encodeConfChange: (change) => mod.encodeConfChange(change),
    decodeConfChange: (data) => mod.decodeConfChange(data),
    readLeaseMs: (tickMs, electionTicks) => mod.readLeaseMs(tickMs, electionTicks),
  };
}

/** The repo's core. Imported lazily so a mutated copy can be loaded instead (run.ts). */
export async function loadCore(modulePath?: string): Promise<CoreFactory> {
  const mod: CoreModule =
    modulePath === undefined ? await import("../../../src/raft/core/index.ts") : await import(modulePath);
  return coreFromModule(mod);
}

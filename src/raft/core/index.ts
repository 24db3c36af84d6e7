export { AssertionError, assert } from "./assert.ts";
export { decodeConfChange, encodeConfChange } from "./confchange.ts";
export { ENTRY_OVERHEAD_BYTES, entrySizeBytes, limitBySize } from "./entries.ts";
export { majorityIndex, VoteResult, voteResult } from "./quorum.ts";
export { RaftNode, TRANSFER_CONTEXT } from "./raft.ts";
export { CLOCK_RATE_DRIFT_MAX, readLeaseMs } from "./reads.ts";
export { MemoryLogStorage, type PersistedState } from "./storage.ts";
export * from "./types.ts";

export type { GroupOptions } from "./group-env.ts";
export type { ProposalReceiver, ProposeAttempt } from "./group-proposals.ts";
export { RaftHost } from "./raft-host.ts";
export {
  AssertionError,
  assert,
  type FatalKind,
  type GroupStorage,
  HostFatalError,
  type HostScheduler,
  type OpenGroupStorage,
  realScheduler,
} from "./runtime.ts";
export type {
  GroupStatus,
  MemberStatus,
  RaftHostConfig,
  ReadOptions,
  RequestOptions,
  StateMachine,
} from "./types.ts";

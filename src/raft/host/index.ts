export type { ProposeAttempt } from "./group.ts";
export { RaftHost } from "./raft-host.ts";
export type {
  GroupStatus,
  MemberStatus,
  RaftHostConfig,
  ReadOptions,
  RequestOptions,
  StateMachine,
} from "./types.ts";

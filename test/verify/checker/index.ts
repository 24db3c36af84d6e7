export type { CheckAllOptions, CheckSummary, FormatOptions, OutcomeCounts } from "./check-all.ts";
export { checkAll, formatSummary } from "./check-all.ts";
export type { DurabilityOptions } from "./durability.ts";
export { checkDurability, isFinalRead } from "./durability.ts";
export type { KeyCheckResult, KeySearchStats, LinearizabilityOptions } from "./linearizability.ts";
export {
  checkKeyLinearizable,
  checkLinearizability,
  defaultLinearizabilityOptions,
  dropUnobservedUnknownWrites,
  registerKinds,
} from "./linearizability.ts";
export type { LockCheckOptions } from "./locks.ts";
export { checkLocks, defaultLockCheckOptions } from "./locks.ts";
export { describeRegisterState, RegisterModel } from "./register-model.ts";
export type { TtlCheckOptions } from "./ttl.ts";
export { checkTtl, defaultTtlCheckOptions, readableForMs } from "./ttl.ts";
export type { CheckerVerdict, CheckStatus, UnknownKey, Violation } from "./verdict.ts";
export { VerdictBuilder } from "./verdict.ts";

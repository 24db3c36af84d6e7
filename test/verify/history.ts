/**
 * The history format every verification workload records and every checker reads.
 *
 * One operation is one client request: when it was invoked, when (if ever) its answer
 * came back, and what the answer said. Times are milliseconds on the recording process's
 * monotonic clock; only differences and real-time order matter to the checkers. Values
 * are strings (workloads write unique, printable values so a read names its write).
 *
 * Outcomes follow the CLI's contract: "ok" means the server answered; "fail" means the
 * request certainly was not applied (rejected before it was proposed); "unknown" means it
 * may have been applied at any moment after its invocation, or never (timeout, lost
 * connection, crash). Checkers treat an unknown operation's completion as +infinity.
 */

export const opKinds = [
  "set",
  "get",
  "delete",
  "setEIfUnset",
  "expire",
  "setE",
  "acquire",
  "release",
  "refresh",
  "resourceWrite",
  "cas",
] as const;
export type OpKind = (typeof opKinds)[number];

export type Outcome = "ok" | "fail" | "unknown";

/** `get`: the value when found. */
export interface ReadResult {
  found: boolean;
  value?: string;
}

/**
 * `cas`: a transaction on one key — compare its value with `expected`; on a match set
 * `value`, otherwise get the key (failure branch). `found`/`value` are that get's answer.
 */
export interface CasResult {
  succeeded: boolean;
  found?: boolean;
  value?: string;
}

/** `setEIfUnset`: whether this request wrote. */
export interface WrittenResult {
  written: boolean;
}

/** `acquire`: the token is a decimal string because it is a bigint on the wire. */
export interface AcquireResult {
  acquired: boolean;
  ownerId?: string;
  fencingToken?: string;
}

export interface ReleaseResult {
  released: boolean;
}

export interface RefreshResult {
  refreshed: boolean;
}

/**
 * `resourceWrite`: what the protected resource (owned by the workload, one authority)
 * did with a write carrying a fencing token. `seq` is the resource's own acceptance
 * counter, so the checker sees the order in which it accepted writes, not the order in
 * which clients happened to hear back.
 */
export interface ResourceWriteResult {
  accepted: boolean;
  seq?: number;
}

export type OpResult =
  | CasResult
  | ReadResult
  | WrittenResult
  | AcquireResult
  | ReleaseResult
  | RefreshResult
  | ResourceWriteResult;

export interface Operation {
  /** Unique within a history. */
  id: number;
  /** The logical client; each client has at most one request in flight. */
  client: number | string;
  /** OS process or worker the client ran in, when more than one. */
  process?: number;
  kind: OpKind;
  /** The store key, or for locks and resource writes the lock key. */
  key: string;
  /** The value written (set, setE, setEIfUnset, cas on success, resourceWrite payload). */
  value?: string;
  /** cas: the value the key must hold for the write to happen. */
  expected?: string;
  /** setE / setEIfUnset deadlines, ms relative to the server's stamp; 0 = never. */
  expireInMs?: number;
  deleteInMs?: number;
  /** acquire / refresh lease; 0 = held until released. */
  ttlMs?: number;
  /** release / refresh: whose lock. */
  ownerId?: string;
  /** resourceWrite: the token the writer presented. */
  fencingToken?: string;
  invokeMs: number;
  /** Absent (or Infinity in memory) while unknown; for "unknown" it is when the client gave up. */
  completeMs?: number;
  outcome: Outcome;
  result?: OpResult;
  /** The server endpoint the request was sent to. */
  member?: string;
  /** "final": the read-back after the last heal-and-recover; durability reads only these. */
  phase?: "main" | "final";
  /** The client's error code or message for fail/unknown outcomes. */
  error?: string;
}

export type History = readonly Operation[];

// --- Result accessors: results are an untagged union, so narrow by shape and kind. ---

export function readResultOf(op: Operation): ReadResult | undefined {
  const r = op.result;
  return op.kind === "get" && r !== undefined && "found" in r && !("succeeded" in r) ? r : undefined;
}

export function casResultOf(op: Operation): CasResult | undefined {
  const r = op.result;
  return op.kind === "cas" && r !== undefined && "succeeded" in r ? r : undefined;
}

/** The value a read or a failed cas's get observed, when it found one. */
export function observedValueOf(op: Operation): string | undefined {
  const r = op.kind === "get" ? readResultOf(op) : casResultOf(op);
  return r?.found === true ? (r.value ?? "") : undefined;
}

export function writtenResultOf(op: Operation): WrittenResult | undefined {
  const r = op.result;
  return op.kind === "setEIfUnset" && r !== undefined && "written" in r ? r : undefined;
}

export function acquireResultOf(op: Operation): AcquireResult | undefined {
  const r = op.result;
  return op.kind === "acquire" && r !== undefined && "acquired" in r ? r : undefined;
}

export function releaseResultOf(op: Operation): ReleaseResult | undefined {
  const r = op.result;
  return op.kind === "release" && r !== undefined && "released" in r ? r : undefined;
}

export function refreshResultOf(op: Operation): RefreshResult | undefined {
  const r = op.result;
  return op.kind === "refresh" && r !== undefined && "refreshed" in r ? r : undefined;
}

export function resourceWriteResultOf(op: Operation): ResourceWriteResult | undefined {
  const r = op.result;
  return op.kind === "resourceWrite" && r !== undefined && "accepted" in r ? r : undefined;
}

/**
 * The latest moment the operation can have taken effect: its completion when the answer
 * came back, +infinity when the outcome is unknown (it may still be applied later, e.g.
 * by a new leader committing the entry after the client gave up).
 */
const registerMutationKinds: ReadonlySet<Operation["kind"]> = new Set([
  "set",
  "setE",
  "setEIfUnset",
  "delete",
  "expire",
  "cas",
]);

/**
 * A register operation that may have changed its key: not one that certainly failed, nor an
 * acknowledged setEIfUnset that reported it did not write.
 */
export function isRegisterMutation(op: Operation): boolean {
  if (!registerMutationKinds.has(op.kind) || op.outcome === "fail") return false;
  if (op.kind === "cas" && op.outcome === "ok" && casResultOf(op)?.succeeded === false) return false;
  return !(op.kind === "setEIfUnset" && op.outcome === "ok" && writtenResultOf(op)?.written === false);
}

export function effectiveCompleteMs(op: Operation): number {
  if (op.outcome !== "ok") return Number.POSITIVE_INFINITY;
  return op.completeMs ?? Number.POSITIVE_INFINITY;
}

/** Short, stable one-line rendering for witnesses and logs. */
export function describeOp(op: Operation): string {
  const end = op.completeMs === undefined || !Number.isFinite(op.completeMs) ? "?" : op.completeMs.toFixed(1);
  const args: string[] = [JSON.stringify(op.key)];
  if (op.expected !== undefined) args.push(`if==${JSON.stringify(op.expected)}`);
  if (op.value !== undefined) args.push(JSON.stringify(op.value));
  if (op.expireInMs !== undefined || op.deleteInMs !== undefined) {
    args.push(`expireIn=${op.expireInMs ?? 0}`, `deleteIn=${op.deleteInMs ?? 0}`);
  }
  if (op.ttlMs !== undefined) args.push(`ttl=${op.ttlMs}`);
  if (op.ownerId !== undefined) args.push(`owner=${op.ownerId.slice(0, 8)}`);
  if (op.fencingToken !== undefined) args.push(`token=${op.fencingToken}`);
  const result = op.result === undefined ? "" : ` -> ${JSON.stringify(op.result)}`;
  const member = op.member === undefined ? "" : ` @${op.member}`;
  return `#${op.id} c${op.client} ${op.kind}(${args.join(", ")}) [${op.invokeMs.toFixed(1)}, ${end}] ${op.outcome}${result}${member}`;
}

// --- Recording ---

export interface HistoryRecorderOptions {
  /** Injected so tests and simulations control time. */
  now?: () => number;
  /** A bound on memory: recording more throws (a workload bug, not a condition to survive). */
  maxOps?: number;
}

export type Invocation = Omit<Operation, "id" | "invokeMs" | "completeMs" | "outcome" | "result" | "error">;

/**
 * Collects operations as clients run. `invoke` stamps the start and returns the id;
 * `complete` stamps the end. Anything still open when the run ends is "unknown".
 */
export class HistoryRecorder {
  private readonly ops: Operation[] = [];
  private readonly now: () => number;
  private readonly maxOps: number;

  constructor(options: HistoryRecorderOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.maxOps = options.maxOps ?? 5_000_000;
  }

  invoke(invocation: Invocation): number {
    if (this.ops.length >= this.maxOps) {
      throw new Error(`history is full (${this.maxOps} ops); raise maxOps or shorten the run`);
    }
    const id = this.ops.length;
    this.ops.push({ ...invocation, id, invokeMs: this.now(), outcome: "unknown" });
    return id;
  }

  complete(id: number, outcome: Outcome, result?: OpResult, error?: string): void {
    const op = this.ops[id];
    if (op === undefined) throw new Error(`no operation #${id} in this history`);
    if (op.completeMs !== undefined) throw new Error(`operation #${id} completed twice`);
    op.completeMs = this.now();
    op.outcome = outcome;
    if (result !== undefined) op.result = result;
    if (error !== undefined) op.error = error;
  }

  /** A snapshot; open operations stay "unknown" with no completion time. */
  history(): Operation[] {
    return this.ops.map((op) => ({ ...op }));
  }

  get size(): number {
    return this.ops.length;
  }
}

// --- JSON lines ---

/** One operation per line; an unknown completion is written as absent (JSON has no Infinity). */
export function historyToJsonLines(history: History): string {
  const lines: string[] = [];
  for (const op of history) {
    const copy: Operation = { ...op };
    if (copy.completeMs !== undefined && !Number.isFinite(copy.completeMs)) delete copy.completeMs;
    lines.push(JSON.stringify(copy));
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

export function parseHistoryJsonLines(text: string): Operation[] {
  const ops: Operation[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]?.trim() ?? "";
    if (line === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (cause) {
      throw new Error(`history line ${i + 1}: not JSON`, { cause });
    }
    ops.push(validateOperation(parsed, i + 1));
  }
  return ops;
}

export async function saveHistory(path: string, history: History): Promise<void> {
  await Bun.write(path, historyToJsonLines(history));
}

export async function loadHistory(path: string): Promise<Operation[]> {
  return parseHistoryJsonLines(await Bun.file(path).text());
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isOpKind(value: unknown): value is OpKind {
  return typeof value === "string" && (opKinds as readonly string[]).includes(value);
}

function isOutcome(value: unknown): value is Outcome {
  return value === "ok" || value === "fail" || value === "unknown";
}

/** Checks shape, not meaning: a saved history must come back exactly as recorded. */
function validateOperation(raw: unknown, line: number): Operation {
  const bad = (what: string): never => {
    throw new Error(`history line ${line}: ${what}`);
  };
  if (!isRecord(raw)) return bad("not an object");
  const { id, client, kind, key, invokeMs, outcome } = raw;
  if (typeof id !== "number") return bad("id must be a number");
  if (typeof client !== "number" && typeof client !== "string")
    return bad("client must be a number or string");
  if (!isOpKind(kind)) return bad(`unknown kind ${JSON.stringify(kind)}`);
  if (typeof key !== "string") return bad("key must be a string");
  if (typeof invokeMs !== "number") return bad("invokeMs must be a number");
  if (!isOutcome(outcome)) return bad(`unknown outcome ${JSON.stringify(outcome)}`);
  const op: Operation = { id, client, kind, key, invokeMs, outcome };
  const optionalNumber = (name: "process" | "expireInMs" | "deleteInMs" | "ttlMs" | "completeMs"): void => {
    const v = raw[name];
    if (v === undefined || v === null) return;
    if (typeof v !== "number") bad(`${name} must be a number`);
    else op[name] = v;
  };
  const optionalString = (
    name: "value" | "expected" | "ownerId" | "fencingToken" | "member" | "error",
  ): void => {
    const v = raw[name];
    if (v === undefined || v === null) return;
    if (typeof v !== "string") bad(`${name} must be a string`);
    else op[name] = v;
  };
  optionalNumber("process");
  optionalNumber("expireInMs");
  optionalNumber("deleteInMs");
  optionalNumber("ttlMs");
  optionalNumber("completeMs");
  optionalString("value");
  optionalString("expected");
  optionalString("ownerId");
  optionalString("fencingToken");
  optionalString("member");
  optionalString("error");
  if (raw.phase !== undefined) {
    if (raw.phase !== "main" && raw.phase !== "final") bad("phase must be main or final");
    else op.phase = raw.phase;
  }
  if (raw.result !== undefined && raw.result !== null) op.result = validateResult(raw.result, bad);
  return op;
}

function validateResult(raw: unknown, bad: (what: string) => never): OpResult {
  if (!isRecord(raw)) return bad("result must be an object");
  const optionalString = (name: string): string | undefined => {
    const v = raw[name];
    if (v === undefined || v === null) return undefined;
    return typeof v === "string" ? v : bad(`result.${name} must be a string`);
  };
  if (typeof raw.succeeded === "boolean") {
    const result: CasResult = { succeeded: raw.succeeded };
    if (typeof raw.found === "boolean") result.found = raw.found;
    const value = optionalString("value");
    if (value !== undefined) result.value = value;
    return result;
  }
  if (typeof raw.found === "boolean") {
    const value = optionalString("value");
    return value === undefined ? { found: raw.found } : { found: raw.found, value };
  }
  if (typeof raw.written === "boolean") return { written: raw.written };
  if (typeof raw.acquired === "boolean") {
    const result: AcquireResult = { acquired: raw.acquired };
    const ownerId = optionalString("ownerId");
    const fencingToken = optionalString("fencingToken");
    if (ownerId !== undefined) result.ownerId = ownerId;
    if (fencingToken !== undefined) result.fencingToken = fencingToken;
    return result;
  }
  if (typeof raw.released === "boolean") return { released: raw.released };
  if (typeof raw.refreshed === "boolean") return { refreshed: raw.refreshed };
  if (typeof raw.accepted === "boolean") {
    if (raw.seq === undefined || raw.seq === null) return { accepted: raw.accepted };
    return typeof raw.seq === "number"
      ? { accepted: raw.accepted, seq: raw.seq }
      : bad("result.seq must be a number");
  }
  return bad(`unrecognised result ${JSON.stringify(raw)}`);
}

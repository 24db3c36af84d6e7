import { DkvError } from "../src/errors.ts";

/** Exit statuses of the contract: the server answered / the request failed / bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/**
 * The reader of stdout went away (EPIPE, e.g. `dkv kv list | head -1`): the status a shell
 * shows for a program killed by SIGPIPE (128 + 13), as etcdctl and redis-cli exit then.
 */
export const EXIT_STDOUT_CLOSED = 141;

export type Env = Readonly<Record<string, string | undefined>>;

/** Where a command writes; tests and the dispatcher pass one, handlers never touch process.* directly. */
export interface Io {
  readonly env: Env;
  readonly stdoutIsTty: boolean;
  out(text: string | Uint8Array): void;
  err(text: string): void;
  /** Aborted once stdout's reader has gone (EPIPE): a long-running command (watch) stops. */
  readonly stdoutClosed?: AbortSignal;
}

/**
 * Writes go through Bun.write, chained so they stay in order: it resolves only when every
 * byte reached the file descriptor, whereas process.stdout.write to a pipe could still hold
 * a large value (a 1 MiB get) when the process exits — the reader saw it cut short.
 */
let pendingWrites: Promise<unknown> = Promise.resolve();
const stdoutGone = new AbortController();
let stderrGone = false;
/** The first write to stdout that failed for another reason than a closed pipe (a full disk). */
let stdoutFailure: Error | undefined;

function isBrokenPipe(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "EPIPE";
}

function writeInOrder(sink: typeof Bun.stdout, data: string | Uint8Array): void {
  pendingWrites = pendingWrites.then(async () => {
    const toStdout = sink === Bun.stdout;
    if (toStdout ? stdoutGone.signal.aborted : stderrGone) return;
    try {
      await Bun.write(sink, data);
    } catch (error) {
      // The reader exited (EPIPE) or the output cannot be written: what is left to print
      // has nowhere to go. No stack trace into a closed pipeline; the command stops.
      if (toStdout) {
        if (!isBrokenPipe(error)) stdoutFailure ??= error instanceof Error ? error : new Error(String(error));
        stdoutGone.abort();
      } else stderrGone = true; // nowhere left to report it
    }
  });
}

export const processIo: Io = {
  env: process.env,
  // A getter: only commands that draw progress ask, and creating process.stdout costs a
  // client command ~20 ms of CPU at start-up (node stream machinery).
  get stdoutIsTty() {
    return process.stdout.isTTY === true;
  },
  out: (text) => writeInOrder(Bun.stdout, text),
  err: (text) => writeInOrder(Bun.stderr, text),
  stdoutClosed: stdoutGone.signal,
};

/** Resolves once everything written to stdout and stderr so far has been handed to the OS. */
export async function flushProcessIo(): Promise<void> {
  await pendingWrites;
}

/**
 * How stdout ended: "open", "closed" (its reader went away: exit EXIT_STDOUT_CLOSED,
 * quietly), or the error that made a write fail (reported, exit 1).
 */
export function stdoutState(): "open" | "closed" | Error {
  if (stdoutFailure !== undefined) return stdoutFailure;
  return stdoutGone.signal.aborted ? "closed" : "open";
}

/**
 * Reports a failed command: with --json exactly one {error, message, outcome} object on
 * stdout, and always one line on stderr. Returns the exit status (2 for usage errors).
 */
export function reportFailure(io: Io, json: boolean, error: unknown): number {
  // A foreign error's outcome is unknown: it may have struck after a write was sent.
  const failure = localFileError(error) ?? DkvError.from(error, "unknown");
  if (json) io.out(`${JSON.stringify(failure.toJSON())}\n`);
  const maybeApplied = failure.outcome === "unknown" ? "; it may or may not have been applied" : "";
  io.err(`dkv: ${failure.message} [${failure.code}${maybeApplied}]\n`);
  return failure.code === "USAGE" ? EXIT_USAGE : EXIT_FAILED;
}

const FILE_PROBLEMS: Readonly<Record<string, string>> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EISDIR: "it is a directory; give a file name",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "the file system is read-only",
  EEXIST: "it already exists",
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is exhausted",
  ENAMETOOLONG: "the name is too long",
  ELOOP: "too many symbolic links",
};

/**
 * A file this process could not open, read or write (an output file, a data dir, a
 * certificate): the user's to fix, found here before or without sending a write, so a
 * USAGE error (exit 2) naming the file, certainly not applied — not an INTERNAL "unknown".
 */
export function localFileError(error: unknown): DkvError | undefined {
  if (!(error instanceof Error) || error instanceof DkvError) return undefined;
  const { code, path, dest, syscall } = error as Error & {
    code?: unknown;
    path?: unknown;
    dest?: unknown;
    syscall?: unknown;
  };
  if (typeof code !== "string" || typeof path !== "string" || !/^E[A-Z]+$/.test(code)) return undefined;
  const verb = typeof syscall === "string" ? ` ${syscall}` : " use";
  // A rename into place (from a temp file next to FILE) is about FILE.
  const file = typeof dest === "string" ? dest : path;
  const problem = FILE_PROBLEMS[code] ?? error.message;
  return new DkvError(
    "USAGE",
    `cannot${verb} ${file}: ${problem} [${code}]; check the path and its permissions`,
    {
      cause: error,
    },
  );
}

/** JSON with bigints as decimal strings (fencing tokens exceed 2^53). */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`;
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

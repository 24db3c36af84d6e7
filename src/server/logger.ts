import type { LogLevelName } from "../config/schema.ts";
import type { Logger } from "../logger.ts";

export interface ConsoleLoggerOptions {
  level: LogLevelName;
  /**
   * Where lines go. Default: file descriptor 2 (stderr), written synchronously without
   * creating `process.stderr` (Bun's stream for it costs ~8 MiB of RSS); `dkv serve` logs
   * there, so stdout carries only the "listening" line.
   */
  stream?: NodeJS.WriteStream;
  /**
   * Whether stderr is a terminal (see `stderrIsTerminal`), for the default stream; when
   * not given it is found out synchronously with node:fs.
   */
  stderrIsTerminal?: boolean;
}

/** consola's numbers, so `--log-level` means what it meant with consola's reporters. */
const LEVELS: Readonly<Record<LogLevelName, number>> = {
  silent: Number.NEGATIVE_INFINITY,
  error: 0,
  warn: 1,
  info: 3,
  debug: 4,
  trace: 5,
};

/**
 * The Logger of a dkv process: the component path as a tag (`[warn] [raft:host] ...`).
 * On a terminal, consola's fancy reporter (colours, timestamps); to a file or pipe, plain
 * lines in consola's basic format, written by this module (consola's basic build creates
 * process.stdout and process.stderr at import, ~9 MiB of RSS). Make one per process, in
 * the composition root.
 */
export function createConsoleLogger(options: ConsoleLoggerOptions): Logger {
  const terminal =
    options.stream === undefined
      ? (options.stderrIsTerminal ?? stderrIsTerminalSync())
      : options.stream.isTTY === true;
  if (terminal) return fancyLogger(options.level, options.stream ?? process.stderr);
  const stream = options.stream;
  const write =
    stream === undefined
      ? // Bun's console writes to fd 2 synchronously (it blocks on a full pipe, as
        // writeSync did) and, unlike node:fs or process.stderr, loads no node module:
        // any of those costs an idle server ~4-8 MiB of RSS (runtime code and heap).
        (line: string) => {
          console.error("%s", line);
        }
      : (line: string) => {
          stream.write(`${line}\n`);
        };
  return plainLogger(LEVELS[options.level], write, "");
}

/**
 * Whether fd 2 is a terminal: a character device other than /dev/null. Asynchronous
 * because Bun's own stat needs no node module (see the write above). Bun already knows
 * whether stdout or stderr is a terminal (and NO_COLOR) for its console colours: when
 * neither is, or NO_COLOR is set, the answer is no without a stat (which starts two
 * threads of Bun's file pool in a server that never uses them: ~0.5 MiB).
 */
export async function stderrIsTerminal(): Promise<boolean> {
  if (!Bun.enableANSIColors) return false;
  try {
    const stderr = await Bun.file(2).stat();
    return stderr.isCharacterDevice() && stderr.rdev !== (await Bun.file("/dev/null").stat()).rdev;
  } catch {
    // fd 2 closed, or no /dev/null to compare with: plain lines are the safe choice.
    return false;
  }
}

function stderrIsTerminalSync(): boolean {
  const { fstatSync, statSync } = require("node:fs") as typeof import("node:fs");
  const stderr = fstatSync(2, { throwIfNoEntry: false });
  return stderr?.isCharacterDevice() === true && stderr.rdev !== statSync("/dev/null").rdev;
}

function plainLogger(levelMax: number, write: (line: string) => void, tag: string): Logger {
  const prefix = tag === "" ? "" : ` [${tag}]`;
  const log = (type: string, level: number, message: string): void => {
    if (level <= levelMax) write(`[${type}]${prefix} ${message}`);
  };
  return {
    debug: (message) => log("debug", LEVELS.debug, message),
    info: (message) => log("info", LEVELS.info, message),
    warn: (message) => log("warn", LEVELS.warn, message),
    error: (message) => log("error", LEVELS.error, message),
    forComponent: (name) => plainLogger(levelMax, write, tag === "" ? name : `${tag}:${name}`),
  };
}

function fancyLogger(level: LogLevelName, stream: NodeJS.WriteStream): Logger {
  const { createConsola } = require("consola") as typeof import("consola");
  const root = createConsola({
    level: LEVELS[level],
    stdout: stream,
    stderr: stream,
    formatOptions: { date: true, colors: true },
  });
  return consolaLogger(root);
}

function consolaLogger(instance: import("consola").ConsolaInstance): Logger {
  return {
    debug: (message) => instance.debug(message),
    info: (message) => instance.info(message),
    warn: (message) => instance.warn(message),
    error: (message) => instance.error(message),
    forComponent: (name) => consolaLogger(instance.withTag(name)),
  };
}

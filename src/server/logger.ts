import { type ConsolaInstance, createConsola as createBasicConsola, LogLevels } from "consola/basic";
import type { LogLevelName } from "../config/schema.ts";
import type { Logger } from "../logger.ts";

export interface ConsoleLoggerOptions {
  level: LogLevelName;
  /** Where lines go; stderr for `dkv serve`, so stdout carries only the "listening" line. */
  stream: NodeJS.WriteStream;
}

/**
 * The Logger of a dkv process, on consola: timestamps, colours on a terminal, and the
 * component path as a tag (`[raft:host]`). Make one per process, in the composition root.
 */
export function createConsoleLogger(options: ConsoleLoggerOptions): Logger {
  // consola's full build (fancy reporter, colours) costs ~10 MiB of RSS: loaded only for a
  // terminal; a log file or pipe gets the basic reporter's plain lines.
  const createConsola =
    options.stream.isTTY === true
      ? (require("consola") as typeof import("consola")).createConsola
      : createBasicConsola;
  const root = createConsola({
    level: LogLevels[options.level],
    stdout: options.stream,
    stderr: options.stream,
    formatOptions: { date: true, colors: options.stream.isTTY === true },
  });
  return componentLogger(root);
}

function componentLogger(instance: ConsolaInstance): Logger {
  return {
    debug: (message) => instance.debug(message),
    info: (message) => instance.info(message),
    warn: (message) => instance.warn(message),
    error: (message) => instance.error(message),
    forComponent: (name) => componentLogger(instance.withTag(name)),
  };
}

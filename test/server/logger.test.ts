import { describe, expect, test } from "bun:test";
import { createConsoleLogger } from "../../src/server/logger.ts";

/** A stream that is not a terminal and keeps what is written. */
function pipeStream(): { stream: NodeJS.WriteStream; lines: () => string[] } {
  const written: string[] = [];
  const stream = {
    isTTY: false,
    write(chunk: string) {
      written.push(chunk);
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return {
    stream,
    lines: () =>
      written
        .join("")
        .split("\n")
        .filter((line) => line !== ""),
  };
}

describe("createConsoleLogger to a pipe", () => {
  test("writes plain lines tagged with the component path (consola's basic format)", () => {
    const { stream, lines } = pipeStream();
    const logger = createConsoleLogger({ level: "info", stream });
    logger.warn("disk slow");
    logger.forComponent("raft").forComponent("host").info("leader is now n1");
    logger.forComponent("rpc").error("listener closed");
    expect(lines()).toEqual([
      "[warn] disk slow",
      "[info] [raft:host] leader is now n1",
      "[error] [rpc] listener closed",
    ]);
  });

  test("drops lines below the level, and everything when silent", () => {
    const warn = pipeStream();
    const logger = createConsoleLogger({ level: "warn", stream: warn.stream });
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    expect(warn.lines()).toEqual(["[warn] w", "[error] e"]);
    const silent = pipeStream();
    const quiet = createConsoleLogger({ level: "silent", stream: silent.stream });
    quiet.error("e");
    expect(silent.lines()).toEqual([]);
  });
});

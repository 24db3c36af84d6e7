import type { Io } from "../../cli/io.ts";

/** An Io for running the CLI in process (not a terminal) that keeps what it printed. */
export function capturingIo(env: Record<string, string> = {}): { io: Io; out(): string; err(): string } {
  let out = "";
  let err = "";
  const io: Io = {
    env,
    stdoutIsTty: false,
    out: (text) => {
      out += typeof text === "string" ? text : new TextDecoder().decode(text);
    },
    err: (text) => {
      err += text;
    },
  };
  return { io, out: () => out, err: () => err };
}

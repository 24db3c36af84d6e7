import { DkvError } from "../../errors.ts";
import { formatHostPort, tryParseHostPort } from "../../host-port.ts";
import type { TransportName } from "./types.ts";

export type Endpoint = { kind: "inet"; hostname: string; port: number } | { kind: "unix"; path: string };

/**
 * Parses "host:port" ("[::1]:8080", "http://host:port" for http) or, for unix, a socket path.
 * ":port" (the Go dKV's form) means every interface when listening and this machine when
 * dialing.
 */
export function parseEndpoint(
  transport: TransportName,
  endpoint: string,
  role: "listen" | "dial" = "dial",
): Endpoint {
  if (transport === "unix") {
    const path = endpoint.startsWith("unix://") ? endpoint.slice(7) : endpoint;
    if (path.length === 0) throw usage(endpoint, "a unix socket path such as /tmp/dkv.sock");
    return { kind: "unix", path };
  }
  let text = endpoint.trim();
  if (transport === "http") text = text.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  if (!text.includes(":")) throw usage(endpoint, "host:port, e.g. 127.0.0.1:8080");
  const parsed = tryParseHostPort(text, { emptyHost: role === "listen" ? "0.0.0.0" : "127.0.0.1" });
  if (parsed === undefined) throw usage(endpoint, "a port between 0 and 65535");
  return { kind: "inet", hostname: parsed.hostname, port: parsed.port };
}

export function formatInet(hostname: string, port: number): string {
  return formatHostPort(hostname, port);
}

function usage(endpoint: string, expected: string): DkvError {
  return new DkvError("USAGE", `invalid endpoint "${endpoint}": expected ${expected}`);
}

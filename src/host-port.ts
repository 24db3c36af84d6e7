import { DkvError } from "./errors.ts";

/** An internet address split into its parts; `hostname` has no IPv6 brackets. */
export interface HostPort {
  readonly hostname: string;
  readonly port: number;
}

export interface HostPortRules {
  /** An empty host (":8080", the Go dKV's form) becomes this; absent: an empty host is refused. */
  readonly emptyHost?: string;
  /** Smallest port accepted: 0 (listen on any free port, the default) or 1 (a peer must be dialable). */
  readonly portMin?: 0 | 1;
}

/**
 * The one parser of "host:port" in dkv (IPv6 as "[::1]:port"): RPC endpoints, node
 * transport addresses and --cluster-members all go through it. The port is decimal
 * digits in portMin..65535. Returns undefined for anything else, so each caller says in
 * its own words what to write instead (or use parseHostPort).
 */
export function tryParseHostPort(text: string, rules: HostPortRules = {}): HostPort | undefined {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return undefined;
  let hostname = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (hostname.startsWith("[") && hostname.endsWith("]")) hostname = hostname.slice(1, -1);
  if (hostname === "" && rules.emptyHost !== undefined) hostname = rules.emptyHost;
  const port = Number(portText);
  if (hostname === "" || !/^\d{1,5}$/.test(portText) || port < (rules.portMin ?? 0) || port > 65535) {
    return undefined;
  }
  return { hostname, port };
}

/** tryParseHostPort, or a USAGE error: `${what} "${text}" is not host:port; write it like 10.0.0.2:7001`. */
export function parseHostPort(text: string, what: string, rules: HostPortRules = {}): HostPort {
  const parsed = tryParseHostPort(text, rules);
  if (parsed === undefined) {
    throw new DkvError("USAGE", `${what} "${text}" is not host:port; write it like 10.0.0.2:7001`);
  }
  return parsed;
}

/** The inverse of parseHostPort: brackets an IPv6 host. */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

import { readFileSync } from "node:fs";
import { defaultEndpointFor } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { type ClientTls, RpcClient } from "../src/rpc/client/index.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";

/** The common client options as every kv/lock command parses them. */
export interface ClientSettings {
  shard: number;
  endpoints: readonly string[] | undefined;
  transport: string;
  serializer: string;
  "retry-count": number;
  "connections-per-endpoint": number;
  "max-frame-bytes": number;
  cacert?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  "insecure-skip-tls-verify"?: boolean;
  token?: string | undefined;
  "token-file"?: string | undefined;
}

/** The TLS and token flags alone (`dkv snapshot save` has them without the rest). */
export type ClientSecuritySettings = Pick<
  ClientSettings,
  "cacert" | "cert" | "key" | "insecure-skip-tls-verify" | "token" | "token-file"
>;

function readFileFor(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `cannot read ${flag} ${path} (${error instanceof Error ? error.message : String(error)}); check the path`,
    );
  }
}

/**
 * TLS is on with --cacert, --cert, --insecure-skip-tls-verify or an https:// endpoint.
 * Without --cacert the server's certificate is checked against the system's CAs.
 */
export function clientTlsOf(
  settings: ClientSecuritySettings,
  endpoints: readonly string[],
): ClientTls | undefined {
  const skipVerify = settings["insecure-skip-tls-verify"] === true;
  const https = endpoints.some((e) => e.startsWith("https://"));
  if (settings.cacert === undefined && settings.cert === undefined && !skipVerify && !https) {
    if (settings.key !== undefined)
      throw new DkvError("USAGE", "--key needs --cert (the client certificate)");
    return undefined;
  }
  if ((settings.cert === undefined) !== (settings.key === undefined)) {
    throw new DkvError(
      "USAGE",
      "--cert and --key go together: pass both (PEM files, e.g. from 'dkv cert create-client')",
    );
  }
  return {
    ca: settings.cacert === undefined ? undefined : readFileFor("--cacert", settings.cacert),
    cert: settings.cert === undefined ? undefined : readFileFor("--cert", settings.cert),
    key: settings.key === undefined ? undefined : readFileFor("--key", settings.key),
    skipVerify,
  };
}

/** --token, else --token-file's first line (DKV_TOKEN arrives as --token). */
export function tokenOf(settings: ClientSecuritySettings): string | undefined {
  if (settings.token !== undefined && settings["token-file"] !== undefined) {
    throw new DkvError("USAGE", "pass either --token (or DKV_TOKEN) or --token-file, not both");
  }
  if (settings.token !== undefined) return settings.token.trim();
  if (settings["token-file"] === undefined) return undefined;
  const token = (readFileFor("--token-file", settings["token-file"]).split(/\r?\n/)[0] ?? "").trim();
  if (token === "") throw new DkvError("USAGE", `--token-file ${settings["token-file"]} holds no token`);
  return token;
}

/** An RPC client for one command run; `timeoutMs` is per request. */
export function openClient(settings: ClientSettings, timeoutMs: number): RpcClient {
  const transport = settings.transport as TransportName;
  const endpoints =
    settings.endpoints === undefined || settings.endpoints.length === 0
      ? [defaultEndpointFor(transport)]
      : [...settings.endpoints];
  if (timeoutMs <= 0) throw new DkvError("USAGE", "--timeout must be more than 0.");
  const tls = clientTlsOf(settings, endpoints);
  const token = tokenOf(settings);
  return new RpcClient({
    endpoints,
    transport,
    serializer: settings.serializer as SerializerName,
    timeoutMs,
    retryCount: settings["retry-count"],
    connectionsPerEndpoint: settings["connections-per-endpoint"],
    maxFrameBytes: settings["max-frame-bytes"],
    ...(tls === undefined ? {} : { tls }),
    ...(token === undefined ? {} : { token }),
  });
}

/** Runs `work` with a fresh client and always closes it, so the process can exit promptly. */
export async function withClient<T>(
  settings: ClientSettings,
  timeoutMs: number,
  work: (client: RpcClient) => Promise<T>,
): Promise<T> {
  await using client = openClient(settings, timeoutMs);
  return await work(client);
}

import { defaultEndpointFor } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { RpcClient } from "../src/rpc/client/index.ts";
import { type ClientSecuritySettings, clientTlsOf, tokenOf } from "../src/rpc/client/tls-connect.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";

/** The common client options as every kv/lock command parses them. */
export interface ClientSettings extends ClientSecuritySettings {
  shard: number;
  endpoints: readonly string[] | undefined;
  transport: string;
  serializer: string;
  "retry-count": number;
  "connections-per-endpoint": number;
  "max-frame-bytes": number;
}

export { type ClientSecuritySettings, clientTlsOf, tokenOf };

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

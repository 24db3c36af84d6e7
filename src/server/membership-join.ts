import { DkvError } from "../errors.ts";
import type { MembershipView } from "../raft/host/membership-types.ts";
import { type ClientTls, RpcClient } from "../rpc/client/index.ts";
import type { SerializerName, TransportName } from "../rpc/protocol/types.ts";

export interface JoinOptions {
  /** --join: client endpoints of current members, tried in order. */
  endpoints: readonly string[];
  transport: TransportName;
  serializer: SerializerName;
  timeoutMs: number;
  /** --cacert / --cert / --key / --insecure-skip-tls-verify: the members' client listener speaks TLS. */
  tls?: ClientTls;
  /** --token / --token-file / DKV_TOKEN: the members run --auth-file (the token needs the admin role). */
  token?: string;
}

/**
 * `dkv serve --join`: asks the running cluster for its membership (a linearizable read on
 * the answering member), trying each endpoint until one answers.
 */
export async function fetchMembershipView(options: JoinOptions): Promise<MembershipView> {
  const failures: string[] = [];
  for (const endpoint of options.endpoints) {
    const client = new RpcClient({
      endpoints: [endpoint],
      transport: options.transport,
      serializer: options.serializer,
      timeoutMs: options.timeoutMs,
      retryCount: 1,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.token === undefined ? {} : { token: options.token }),
    });
    try {
      const view = (await client.membership({ action: "members" })) as MembershipView;
      if (!Array.isArray(view?.registry?.members) || !Array.isArray(view.bootstrap)) {
        throw new DkvError("BAD_FRAME", "the membership answer lacks members or bootstrap");
      }
      return view;
    } catch (error) {
      failures.push(`${endpoint}: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      await client.close();
    }
  }
  throw new DkvError(
    "UNAVAILABLE",
    `--join: no member answered with the cluster's membership (${failures.join("; ")}); check the endpoints (client endpoints of running members)` +
      (options.tls === undefined && options.token === undefined
        ? "; members with client TLS or --auth-file need --cacert (and --cert/--key) or --token-file here too"
        : ""),
  );
}

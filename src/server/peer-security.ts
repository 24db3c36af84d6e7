/**
 * Resolves the peer-link security flags into node transport options: checks the cluster
 * id and loads the TLS files (the only I/O of it, so it lives in the composition root).
 */

import type { PeerSecurityFlags } from "../config/peer-security-options.ts";
import { DkvError } from "../errors.ts";
import type { NodeId } from "../raft/core/types.ts";
import { loadPeerTls, type PeerTls } from "../raft/transport/tls.ts";

/** What the node transport takes from the flags (see TcpNodeTransportOptions). */
export interface PeerTransportSecurity {
  clusterId: string;
  insecure: boolean;
  tls?: PeerTls;
}

const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks the flags and loads the TLS files (all three or none): a missing, unreadable or
 * mismatched file fails here, at start, with a message naming the flag.
 */
export async function resolvePeerSecurity(
  flags: PeerSecurityFlags,
  self: NodeId,
): Promise<PeerTransportSecurity> {
  const clusterId = flags.clusterId.trim();
  if (!CLUSTER_ID.test(clusterId)) {
    throw new DkvError(
      "USAGE",
      `--cluster-id "${flags.clusterId}" must be 1 to 128 letters, digits, '.', '_' or '-', the same on every member, e.g. --cluster-id prod-kv`,
    );
  }
  const files = {
    "--peer-cert-file": flags.peerCertFile,
    "--peer-key-file": flags.peerKeyFile,
    "--peer-trusted-ca-file": flags.peerTrustedCaFile,
  };
  const given = Object.entries(files).filter(([, path]) => path !== undefined && path !== "");
  if (given.length === 0) return { clusterId, insecure: flags.insecure };
  if (given.length < 3) {
    const missing = Object.entries(files)
      .filter(([, path]) => path === undefined || path === "")
      .map(([flag]) => flag);
    throw new DkvError(
      "USAGE",
      `peer TLS needs --peer-cert-file, --peer-key-file and --peer-trusted-ca-file together; ${missing.join(" and ")} missing`,
    );
  }
  const tls = await loadPeerTls(
    { certFile: flags.peerCertFile!, keyFile: flags.peerKeyFile!, caFile: flags.peerTrustedCaFile! },
    self,
  );
  return { clusterId, insecure: flags.insecure, tls };
}

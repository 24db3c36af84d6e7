/**
 * The peer-link security flags of `dkv serve` (spread at the end of `serveOptions`), and
 * their resolution into node transport options. `--insecure` is declared here once and
 * shared with the client listener's protected mode.
 */

import { DkvError } from "../errors.ts";
import type { NodeId } from "../raft/core/types.ts";
import type { PeerTls } from "../raft/transport/tls.ts";
import type { OptionSpec } from "./schema.ts";

/** The cluster id when --cluster-id is not given (like etcd's default --initial-cluster-token). */
export const DEFAULT_CLUSTER_ID = "dkv";

export const peerSecurityOptions = [
  {
    name: "insecure",
    type: "boolean",
    default: false,
    description:
      "Allow plain TCP on a non-loopback address (client listener and peer links); a warning is logged. " +
      "Without it such a listener is refused: anyone who reaches the port could use the cluster",
  },
  {
    name: "peer-cert-file",
    type: "string",
    valueHint: "FILE",
    description:
      "PEM certificate of this member for peer links (mutual TLS); it must name --replica-id (SAN DNS name or CN). Needs --peer-key-file and --peer-trusted-ca-file",
  },
  {
    name: "peer-key-file",
    type: "string",
    valueHint: "FILE",
    description: "PEM private key of --peer-cert-file",
  },
  {
    name: "peer-trusted-ca-file",
    type: "string",
    valueHint: "FILE",
    description:
      "PEM CA that signs every member's peer certificate; a peer without a certificate from it is refused",
  },
  {
    name: "cluster-id",
    type: "string",
    default: DEFAULT_CLUSTER_ID,
    valueHint: "ID",
    description:
      "Names this cluster (like etcd's --initial-cluster-token); every member must give the same one, and peer links from another cluster are refused. " +
      "Give each cluster its own so two clusters on one network never talk to each other",
  },
] as const satisfies readonly OptionSpec[];

/** The flags above as `dkv serve` parsed them. */
export interface PeerSecurityFlags {
  clusterId: string;
  insecure: boolean;
  peerCertFile?: string | undefined;
  peerKeyFile?: string | undefined;
  peerTrustedCaFile?: string | undefined;
}

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
  // Loaded here, not at import: client commands read this schema and never need X.509.
  const { loadPeerTls } = await import("../raft/transport/tls.ts");
  const tls = await loadPeerTls(
    { certFile: flags.peerCertFile!, keyFile: flags.peerKeyFile!, caFile: flags.peerTrustedCaFile! },
    self,
  );
  return { clusterId, insecure: flags.insecure, tls };
}

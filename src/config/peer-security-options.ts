/**
 * The peer-link security flags of `dkv serve` (spread at the end of `serveOptions`), and
 * their resolution into node transport options. `--insecure` is declared here once and
 * shared with the client listener's protected mode.
 */

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

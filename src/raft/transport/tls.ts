import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { PeerCertificate } from "node:tls";
import { DkvError } from "../../errors.ts";
import type { NodeId } from "../core/types.ts";

/** Mutual TLS material of the node transport, as PEM text. */
export interface PeerTls {
  /** This member's certificate (chain); it must name this member's id (SAN DNS name or CN). */
  cert: string;
  key: string;
  /** The CA that signs every member's certificate; the only one trusted on peer links. */
  ca: string;
}

export interface PeerTlsFiles {
  /** --peer-cert-file */
  certFile: string;
  /** --peer-key-file */
  keyFile: string;
  /** --peer-trusted-ca-file */
  caFile: string;
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DkvError("USAGE", `${flag} ${path} cannot be read (${reason}); give the path of a PEM file`, {
      cause: error,
    });
  }
}

function parseCertificate(pem: string, flag: string, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DkvError("USAGE", `${flag} ${path} is not a PEM certificate (${reason})`, { cause: error });
  }
}

/**
 * Reads and checks the peer TLS files at startup, so a wrong file fails `dkv serve` with a
 * clear message instead of every link failing its handshake later: the certificate must be
 * signed by the CA, match the key, be valid now, and name `self`.
 */
export async function loadPeerTls(files: PeerTlsFiles, self: NodeId, nowMs = Date.now()): Promise<PeerTls> {
  const [cert, key, ca] = await Promise.all([
    readPem(files.certFile, "--peer-cert-file"),
    readPem(files.keyFile, "--peer-key-file"),
    readPem(files.caFile, "--peer-trusted-ca-file"),
  ]);
  const leaf = parseCertificate(cert, "--peer-cert-file", files.certFile);
  const authority = parseCertificate(ca, "--peer-trusted-ca-file", files.caFile);
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DkvError("USAGE", `--peer-key-file ${files.keyFile} is not a PEM private key (${reason})`, {
      cause: error,
    });
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new DkvError(
      "USAGE",
      `--peer-key-file ${files.keyFile} is not the key of --peer-cert-file ${files.certFile}; give the pair issued together`,
    );
  }
  if (!leaf.checkIssued(authority) || !leaf.verify(authority.publicKey)) {
    throw new DkvError(
      "USAGE",
      `--peer-cert-file ${files.certFile} is not signed by --peer-trusted-ca-file ${files.caFile}; every member's certificate must come from that CA`,
    );
  }
  if (nowMs < leaf.validFromDate.getTime() || nowMs > leaf.validToDate.getTime()) {
    throw new DkvError(
      "USAGE",
      `--peer-cert-file ${files.certFile} is valid from ${leaf.validFrom} to ${leaf.validTo}, not now; issue a new one`,
    );
  }
  if (!memberUsage(leaf.keyUsage)) {
    throw new DkvError(
      "USAGE",
      `--peer-cert-file ${files.certFile} is a client certificate (its extended key usage lacks serverAuth), which members refuse; ` +
        `issue a member certificate, e.g. dkv cert create-member ${self}`,
    );
  }
  const names = namesOfX509(leaf);
  if (!names.has(self)) {
    throw new DkvError(
      "USAGE",
      `--peer-cert-file ${files.certFile} names ${[...names].join(", ") || "nothing"}, not this member "${self}"; ` +
        `issue it for "${self}" (SAN DNS name or CN), e.g. dkv cert create-member ${self}`,
    );
  }
  return { cert, key, ca };
}

/** `DNS:a, IP Address:1.2.3.4, DNS:b` → the DNS names. */
function dnsNames(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  return subjectAltName
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
}

function namesOfX509(cert: X509Certificate): Set<string> {
  const names = new Set(dnsNames(cert.subjectAltName));
  for (const line of cert.subject.split("\n")) {
    if (line.startsWith("CN=")) names.add(line.slice(3));
  }
  return names;
}

/** The extended key usage a member certificate carries (it both serves and dials). */
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

/**
 * Whether a certificate may be a member's: one without an extended key usage (usable for
 * anything), or one whose usage includes serverAuth. A client certificate (clientAuth
 * only, what `dkv cert create-client` issues) from the same CA is not.
 */
function memberUsage(extendedKeyUsage: readonly string[] | undefined): boolean {
  return extendedKeyUsage === undefined || extendedKeyUsage.includes(SERVER_AUTH);
}

/**
 * The member ids a verified peer certificate may speak for: its SAN DNS names and its
 * subject CN. Empty when the peer sent no certificate, or a client certificate (see
 * memberUsage): a client of the same CA must not pass for a member.
 */
export function certificateNames(cert: PeerCertificate | null | undefined): Set<string> {
  const names = new Set<string>();
  if (cert === null || cert === undefined || !memberUsage(cert.ext_key_usage)) return names;
  for (const name of dnsNames(cert.subjectaltname)) names.add(name);
  const cn: unknown = cert.subject?.CN;
  if (typeof cn === "string") names.add(cn);
  else if (Array.isArray(cn)) for (const name of cn) if (typeof name === "string") names.add(name);
  return names;
}

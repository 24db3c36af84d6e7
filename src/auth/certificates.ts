import { isIP } from "node:net";
import type * as X509 from "@peculiar/x509";
import { DkvError } from "../errors.ts";

type X509Library = typeof X509;
let library: Promise<X509Library> | undefined;

/**
 * @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata
 * API before it loads. Static imports do not guarantee that order once bundled into the
 * compiled binary, so both are loaded here, in order, on first use.
 */
function x509Library(): Promise<X509Library> {
  library ??= (async () => {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(crypto);
    return x509;
  })();
  return library;
}

/** ECDSA P-256 with SHA-256: small keys, fast handshakes, accepted everywhere. */
const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export const DEFAULT_CA_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
export const DEFAULT_LEAF_LIFETIME_MS = 2 * 365 * 24 * 3_600_000;
/** Certificates start this far in the past, so clocks a little behind still accept them. */
const backdateMs = 5 * 60_000;

export interface IssuedPem {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
}

export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

function validity(lifetimeMs: number, override: Validity): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return {
    notBefore: override.notBefore ?? new Date(now - backdateMs),
    notAfter: override.notAfter ?? new Date(now + lifetimeMs),
  };
}

/** A random positive 128-bit serial number (RFC 5280: unique per CA, at most 20 bytes). */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}

/** X.500 names: escape what RFC 4514 reserves, so an id cannot inject name parts. */
function commonName(value: string): string {
  return `CN=${value.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`)}`;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
}

async function keyPem(key: CryptoKey): Promise<string> {
  const x509 = await x509Library();
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A self-signed CA that may sign leaf certificates only (path length 0). */
export async function createCa(
  name: string,
  lifetimeMs = DEFAULT_CA_LIFETIME_MS,
  override: Validity = {},
): Promise<IssuedPem> {
  const x509 = await x509Library();
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: commonName(name),
    ...validity(lifetimeMs, override),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** The CA as loaded from its PEM files, ready to sign. */
export interface SigningCa {
  readonly certificate: X509.X509Certificate;
  readonly key: CryptoKey;
}

export async function loadSigningCa(certPem: string, keyPem: string): Promise<SigningCa> {
  const x509 = await x509Library();
  let certificate: X509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(certPem);
  } catch (error) {
    throw new DkvError("USAGE", "the CA certificate is not PEM; create one with 'dkv cert create-ca'", {
      cause: error,
    });
  }
  let key: CryptoKey;
  try {
    const der = x509.PemConverter.decodeFirst(keyPem);
    key = await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
  } catch (error) {
    throw new DkvError(
      "USAGE",
      "the CA key is not a PEM ECDSA P-256 private key; use the ca.key that 'dkv cert create-ca' wrote",
      { cause: error },
    );
  }
  return { certificate, key };
}

export interface LeafRequest {
  /** The subject's common name: a member's replica id or a client's name. */
  commonName: string;
  /** DNS names and IP addresses it answers on (members). */
  hosts?: readonly string[];
  /** serverAuth (members, which also dial peers) and/or clientAuth. */
  server: boolean;
  lifetimeMs?: number;
  validity?: Validity;
}

/** A certificate for a member or a client, signed by `ca`. */
export async function createLeaf(ca: SigningCa, request: LeafRequest): Promise<IssuedPem> {
  const x509 = await x509Library();
  const keys = await newKeys();
  const usages = request.server
    ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
    : [x509.ExtendedKeyUsage.clientAuth];
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(usages),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
  ];
  const hosts = [...new Set(request.hosts ?? [])];
  if (hosts.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        hosts.map((host) => (isIP(host) === 0 ? { type: "dns", value: host } : { type: "ip", value: host })),
      ),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: commonName(request.commonName),
    issuer: ca.certificate.subject,
    ...validity(request.lifetimeMs ?? DEFAULT_LEAF_LIFETIME_MS, request.validity ?? {}),
    signingKey: ca.key,
    publicKey: keys.publicKey,
    signingAlgorithm: algorithm,
    extensions,
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** The hosts of a member certificate: its id, the given hosts, and loopback. */
export function memberHosts(replicaId: string, hosts: readonly string[]): string[] {
  return [...new Set([replicaId, ...hosts, "localhost", "127.0.0.1", "::1"])];
}

import { DkvError } from "../../errors.ts";
import type { Endpoint } from "../protocol/endpoint.ts";
import { formatInet } from "../protocol/endpoint.ts";

/** TLS of a client listener, PEM text (see loadServerTls). */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  /** CA(s) client certificates must chain to; set when client certificates are required. */
  readonly ca?: string;
  readonly requireClientCert: boolean;
}

export interface ServerTlsFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  trustedCaFile?: string | undefined;
  clientCertAuth?: boolean;
}

async function readPem(path: string, flag: string): Promise<string> {
  // node:fs and node:crypto are loaded only with TLS on: any node module costs a server
  // without TLS ~4-8 MiB of RSS (test/footprint/cli-modules.test.ts).
  const { readFile } = await import("node:fs/promises");
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `cannot read ${flag} ${path} (${error instanceof Error ? error.message : String(error)}); check the path and its permissions`,
      { cause: error },
    );
  }
}

/**
 * Reads and checks the listener's certificate files: undefined when TLS is off. The
 * certificate must parse, its key must match it, and --client-cert-auth needs a CA, so
 * a mistake fails at start with a clear message instead of at every handshake.
 */
export async function loadServerTls(files: ServerTlsFiles): Promise<ServerTls | undefined> {
  const { certFile, keyFile, trustedCaFile, clientCertAuth = false } = files;
  if (certFile === undefined && keyFile === undefined) {
    if (clientCertAuth) {
      throw new DkvError("USAGE", "--client-cert-auth needs TLS: pass --cert-file and --key-file too");
    }
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new DkvError("USAGE", "--cert-file and --key-file go together: pass both (PEM files)");
  }
  if (clientCertAuth && trustedCaFile === undefined) {
    throw new DkvError(
      "USAGE",
      "--client-cert-auth needs --trusted-ca-file: the CA that signs the client certificates",
    );
  }
  const cert = await readPem(certFile, "--cert-file");
  const key = await readPem(keyFile, "--key-file");
  const { createPrivateKey, X509Certificate } = await import("node:crypto");
  let certificate: InstanceType<typeof X509Certificate>;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `--cert-file ${certFile} is not a PEM certificate; create one with 'dkv cert create-member'`,
      {
        cause: error,
      },
    );
  }
  let matches: boolean;
  try {
    matches = certificate.checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new DkvError("USAGE", `--key-file ${keyFile} is not a PEM private key`, { cause: error });
  }
  if (!matches)
    throw new DkvError("USAGE", `--key-file ${keyFile} is not the key of --cert-file ${certFile}`);
  if (!clientCertAuth) return { cert, key, requireClientCert: false };
  const ca = await readPem(trustedCaFile!, "--trusted-ca-file");
  try {
    new X509Certificate(ca);
  } catch (error) {
    throw new DkvError("USAGE", `--trusted-ca-file ${trustedCaFile} is not a PEM certificate`, {
      cause: error,
    });
  }
  return { cert, key, ca, requireClientCert: true };
}

/** Bun.listen / Bun.serve `tls` options of a listener. */
export function bunTlsOptions(tls: ServerTls) {
  return tls.requireClientCert
    ? { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true }
    : { cert: tls.cert, key: tls.key };
}

/** Loopback names and addresses: only this machine can reach a listener on them. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost") || host === "::1") return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  return /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Protected mode: a listener others can reach must use TLS, unless the operator says
 * --insecure (then a warning). Unix sockets are local (and created mode 0600).
 */
export function checkProtectedMode(
  endpoint: Endpoint,
  tls: boolean,
  allowInsecure: boolean,
  warn: (message: string) => void,
): void {
  if (endpoint.kind !== "inet" || tls || isLoopbackHost(endpoint.hostname)) return;
  const where = formatInet(endpoint.hostname, endpoint.port);
  if (!allowInsecure) {
    throw new DkvError(
      "USAGE",
      `refusing to listen on ${where} without TLS: anyone who can reach it could read and change every key. ` +
        "Pass --cert-file and --key-file (see 'dkv cert'), listen on 127.0.0.1, or pass --insecure on a network you trust",
    );
  }
  warn(`--insecure: listening on ${where} without TLS; anyone who can reach it can read and change data`);
}

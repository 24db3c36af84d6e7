import { DkvError } from "../../errors.ts";
import type { ClientTls } from "./socket-channel.ts";

/** The `tls` options of Bun.connect (and of fetch) for a client connection to `hostname`. */
export function bunClientTlsOptions(
  tls: ClientTls,
  hostname: string,
): { ca?: string; cert?: string; key?: string; rejectUnauthorized: boolean; serverName: string } {
  return {
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls.key === undefined ? {} : { key: tls.key }),
    rejectUnauthorized: tls.skipVerify !== true,
    serverName: tls.serverName ?? hostname,
  };
}

/**
 * What the handshake callback of a client TLS socket found: undefined when the
 * connection may be used, else why not (for a "cannot connect" message).
 */
export function tlsHandshakeFailure(
  tls: ClientTls,
  success: boolean,
  authorizationError: Error | null,
): string | undefined {
  if (success && (authorizationError === null || tls.skipVerify === true)) return undefined;
  return `TLS handshake failed (${authorizationError?.message ?? "refused"}); check --cacert (the CA that signed the server's certificate) and the host name`;
}

/** Refuses a token that cannot travel in a frame or an Authorization header. */
export function checkClientToken(token: string | undefined): void {
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new DkvError(
      "USAGE",
      "the token must be non-empty printable ASCII without spaces (check --token-file or DKV_TOKEN)",
    );
  }
}

/**
 * The client TLS and token flags (client-security-options.ts) as parsed: every client
 * command has them, and `dkv serve` for its --join request.
 */
export interface ClientSecuritySettings {
  cacert?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  "insecure-skip-tls-verify"?: boolean;
  token?: string | undefined;
  "token-file"?: string | undefined;
}

function readFileFor(flag: string, path: string): string {
  // node:fs only when a TLS or token file is given: loading a node module costs every
  // client command start-up time, and a server RSS.
  const { readFileSync } = require("node:fs") as typeof import("node:fs");
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
  const tls = {
    ca: settings.cacert === undefined ? undefined : readFileFor("--cacert", settings.cacert),
    cert: settings.cert === undefined ? undefined : readFileFor("--cert", settings.cert),
    key: settings.key === undefined ? undefined : readFileFor("--key", settings.key),
    skipVerify,
  };
  checkClientTlsFiles(settings, tls);
  return tls;
}

/**
 * Loads the PEM files the way the connection will, before anything is sent, so a file
 * that is not a CA, a certificate or its key is a usage error naming the file (and
 * certainly not applied) rather than a failure of the first request.
 */
function checkClientTlsFiles(settings: ClientSecuritySettings, tls: ClientTls): void {
  const { createSecureContext } = require("node:tls") as typeof import("node:tls");
  const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
  if (tls.ca !== undefined) {
    try {
      createSecureContext({ ca: tls.ca });
    } catch (error) {
      throw new DkvError(
        "USAGE",
        `--cacert ${settings.cacert} is not a PEM CA certificate (${reason(error)}); pass the CA certificate that signed the server's certificate`,
        { cause: error },
      );
    }
  }
  if (tls.cert === undefined || tls.key === undefined) return;
  if (!/-----BEGIN CERTIFICATE-----/.test(tls.cert)) {
    throw new DkvError(
      "USAGE",
      `--cert ${settings.cert} holds no PEM certificate; pass the client certificate (e.g. from 'dkv cert create-client')`,
    );
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(tls.key)) {
    throw new DkvError(
      "USAGE",
      `--key ${settings.key} holds no PEM private key; pass the key of the --cert certificate`,
    );
  }
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (error) {
    throw new DkvError(
      "USAGE",
      `--cert ${settings.cert} and --key ${settings.key} do not go together (${reason(error)}); pass the private key of that certificate`,
      { cause: error },
    );
  }
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

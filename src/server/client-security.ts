import { loadAuthFile, reloadOnSighup, TokenAuthority } from "../auth/index.ts";
import type { Logger } from "../logger.ts";
import { loadServerTls, type RpcServerOptions } from "../rpc/server/index.ts";

/** The serve flags of the client listener's security, as parsed. */
export interface ClientListenerSecurityFlags {
  "cert-file"?: string | undefined;
  "key-file"?: string | undefined;
  "trusted-ca-file"?: string | undefined;
  "client-cert-auth": boolean;
  "auth-file"?: string | undefined;
  "max-client-connections": number;
  "client-idle-timeout": number;
  insecure: boolean;
}

/**
 * TLS, tokens (with SIGHUP reload) and connection bounds of the client listener (files are
 * read here, in the composition root); `close` stops the reload handler.
 */
export async function clientListenerSecurity(
  flags: ClientListenerSecurityFlags,
  logger: Pick<Logger, "info" | "warn">,
): Promise<{
  server: Pick<RpcServerOptions, "tls" | "authority" | "allowInsecure" | "limits">;
  close(): void;
}> {
  const tls = await loadServerTls({
    certFile: flags["cert-file"],
    keyFile: flags["key-file"],
    trustedCaFile: flags["trusted-ca-file"],
    clientCertAuth: flags["client-cert-auth"],
  });
  if (tls !== undefined) await warnIfNotValidNow(tls.cert, flags["cert-file"] ?? "", logger);
  if (flags["trusted-ca-file"] !== undefined && !flags["client-cert-auth"]) {
    logger.warn("--trusted-ca-file has no effect without --client-cert-auth");
  }
  let authority: TokenAuthority | undefined;
  let close = () => {};
  const authFile = flags["auth-file"];
  if (authFile !== undefined) {
    authority = new TokenAuthority(await loadAuthFile(authFile));
    close = reloadOnSighup(authority, authFile, logger);
    logger.info(
      `token authentication on: ${authority.tokenCount} token(s) from ${authFile} (SIGHUP reloads it)`,
    );
  } else {
    // SIGHUP means "reload" to a server; its default action (exit, with no orderly stop)
    // would be a surprise when there is nothing to reload.
    const onHangup = () =>
      logger.info("SIGHUP: nothing to reload (no --auth-file); still serving (SIGINT or SIGTERM stop it)");
    process.on("SIGHUP", onHangup);
    close = () => {
      process.off("SIGHUP", onHangup);
    };
  }
  return {
    server: {
      ...(tls === undefined ? {} : { tls }),
      ...(authority === undefined ? {} : { authority }),
      allowInsecure: flags.insecure,
      limits: {
        maxConnections: flags["max-client-connections"],
        idleTimeoutMs: flags["client-idle-timeout"],
      },
    },
    close,
  };
}

/**
 * A client-listener certificate outside its validity period starts (so a member can be
 * restarted while a new one is issued) but every verifying client refuses the handshake:
 * say so at start, where the operator looks, instead of only in each client's error.
 */
async function warnIfNotValidNow(pem: string, certFile: string, logger: Pick<Logger, "warn">): Promise<void> {
  const { X509Certificate } = await import("node:crypto");
  const certificate = new X509Certificate(pem);
  const now = Date.now();
  if (now < certificate.validFromDate.getTime() || now > certificate.validToDate.getTime()) {
    logger.warn(
      `--cert-file ${certFile} is valid from ${certificate.validFrom} to ${certificate.validTo}, not now: ` +
        "clients that verify it (--cacert) will refuse every connection; issue a new one (dkv cert create-member) and restart",
    );
  }
}

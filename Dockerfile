# dkv in a container: the compiled single binary on a small glibc base, nothing else.
#
#   bun run build                                   # writes dist/dkv (linux x64 here)
#   docker build -t dkv .
#   docker run --rm -p 8080:8080 -v dkv-data:/data dkv
#
# For another architecture build its binary first (bun run build.ts --release) and pass
# it: docker build --build-arg DKV_BINARY=dist/dkv-linux-arm64 -t dkv .
# The binary is glibc-linked (bun build --compile), so the base must have glibc:
# distroless/cc has it (and libgcc/libstdc++) without a shell or package manager.

FROM debian:bookworm-slim AS prepare
# distroless has no shell to create the data directory, so it is made here with the
# nonroot user's uid (65532) and copied over; a named volume mounted on /data starts
# with this ownership.
RUN mkdir -p /data && chown 65532:65532 /data

FROM gcr.io/distroless/cc-debian12:nonroot
ARG DKV_BINARY=dist/dkv
COPY --chmod=0755 ${DKV_BINARY} /usr/local/bin/dkv
COPY --from=prepare --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
# 8080: client requests (tcp). 63001: Raft traffic between members (dstore shards).
EXPOSE 8080 63001
VOLUME ["/data"]
# Without arguments: the single-node default shards (lstore + lockmgr(lstore)) on all
# interfaces. Add --shards with dstore and the cluster flags for a replicated setup
# (see examples/compose-multi-node.yml). --insecure: a container listens on all of its
# interfaces, which protected mode refuses without TLS; publish the port on loopback
# only, or replace it with --cert-file/--key-file (README "Security").
ENTRYPOINT ["/usr/local/bin/dkv"]
CMD ["serve", "--transport-endpoint", "0.0.0.0:8080", "--data-dir", "/data", "--insecure"]
# Exec form: distroless has no shell. The server answers when its shards are up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/dkv", "cluster", "status", "--endpoints", "127.0.0.1:8080", "--timeout", "2s"]

# syntax=docker/dockerfile:1
# Postern container image: a release build on rust:1.95-bookworm, run on
# debian:bookworm-slim as uid/gid 10001 with the spool in /var/lib/postern.
#
#   docker build -t postern:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# No ca-certificates in the runtime image: reqwest and lettre use rustls with
# the Mozilla roots compiled in (webpki-roots); a private relay CA is given
# with POSTERN_RELAY_URL=...?ca=/path.pem.

# ---------------------------------------------------------------- build
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, against stub sources, so this layer is reused until
# Cargo.toml or Cargo.lock change. Cargo.toml names benches and an
# integration test, so stubs for those exist too (they are never built).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/load tests/it \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/load/main.rs \
 && echo 'fn main() {}' > benches/auth_checks.rs \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --locked --bin postern \
 && rm -rf src

# The real sources (and the database schema, compiled in); touching them
# makes cargo rebuild the crate itself whatever mtimes the build context
# carried.
COPY migrations ./migrations
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin postern \
 && install -D -m 0755 target/release/postern /out/postern \
 && /out/postern help > /dev/null

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="postern" \
      org.opencontainers.image.description="SMTP <-> HTTP webhook bridge: receive email as signed JSON webhooks, send it with an HTTP API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# Fixed ids so Kubernetes (runAsUser/fsGroup 10001) and volume owners agree.
RUN groupadd --system --gid 10001 postern \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/postern --shell /usr/sbin/nologin postern \
 && install -d -m 0750 -o 10001 -g 10001 /var/lib/postern

COPY --from=builder /out/postern /usr/local/bin/postern

# Container defaults: listen on all interfaces (the image's ports are only
# reachable where they are published), spool on the volume, JSON logs.
# With no route configured and these non-loopback listeners, Postern refuses
# to start: set POSTERN_WEBHOOK_URL (or POSTERN_ROUTES) and
# POSTERN_WEBHOOK_SECRET, or POSTERN_DEV_MODE=true for a throwaway instance
# that accepts mail for anyone.
# POSTERN_SMTPS_LISTEN=0.0.0.0:4650 needs POSTERN_TLS_CERT/POSTERN_TLS_KEY.
ENV POSTERN_SMTP_LISTEN=0.0.0.0:2525 \
    POSTERN_HTTP_LISTEN=0.0.0.0:8080 \
    POSTERN_SPOOL_DIR=/var/lib/postern \
    POSTERN_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/postern
VOLUME ["/var/lib/postern"]
# 2525 SMTP (+STARTTLS), 4650 implicit-TLS SMTP (when configured), 8080 HTTP API/health
EXPOSE 2525 4650 8080

# `postern healthcheck` exits 0 when GET /readyz on POSTERN_HTTP_LISTEN answers 200.
# (Docker honours it; podman/buildah only with --format docker; Kubernetes uses the chart's probes.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/postern", "healthcheck"]

# SIGTERM: stop accepting, finish in-flight work within POSTERN_SHUTDOWN_GRACE (25s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/postern"]
CMD ["serve"]

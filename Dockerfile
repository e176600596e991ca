# syntax=docker/dockerfile:1

# pollbridge: a static, non-root image with no shell.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t pollbridge .
#   docker run --rm -v pollbridge-state:/var/lib/pollbridge \
#     -v "$PWD/bridge.yaml:/etc/pollbridge/bridge.yaml:ro" \
#     -e APP_WEBHOOK_SECRET pollbridge
#
# The image's default config is the repository's bridge.yaml; mount your own
# over /etc/pollbridge/bridge.yaml. The working directory is the state volume,
# so a relative state path such as ./pollbridge.db is stored there and
# survives container restarts. With Redis state (REDIS_URL or state.redis)
# nothing is written to disk. docs/deploy.md covers compose, Kubernetes and
# rolling restarts.
#
# The demo programs (examples/demoapi, examples/receiver) are built by the
# "demo" target, used by examples/docker-compose.yml and examples/kubernetes:
#
#   docker build --target demo -t pollbridge-demo .
#
# examples/deploy_test.go runs the "build" stage's go build line itself and
# checks its result is static, so keep that command on one RUN line.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# VERSION is what `pollbridge version` prints. .git is not in the build
# context (.dockerignore), so the commit cannot be read from it: pass it here.
ARG VERSION=dev
# CGO_ENABLED=0: pure Go (net and os/user included), so the binary is
# statically linked and runs on an image with no libc. -trimpath drops the
# build machine's paths from the binary (reproducible builds, no leaked
# directories); -s -w drop the symbol table and DWARF (a smaller image;
# panics still print file:line).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /pollbridge .
# The state directory must exist and belong to the non-root user before it
# becomes a volume; the distroless stage has no shell to create it.
RUN mkdir -p /out/var/lib/pollbridge

# demo: the demo orders API and the signature-verifying receiver, for the
# compose and Kubernetes examples. Not built by a plain `docker build`.
FROM build AS demo-build
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/ ./examples/demoapi ./examples/receiver

FROM gcr.io/distroless/static-debian12:nonroot AS demo
COPY --from=demo-build /out/demoapi /out/receiver /
USER 65532:65532
# No ENTRYPOINT: each service names its program, e.g. ["/receiver", "-addr", ":8080"].
CMD ["/demoapi", "-addr", ":9000"]

# The image: distroless/static ships CA certificates, tzdata, /etc/passwd
# with the nonroot user 65532, and nothing else (no shell, no package
# manager). It must stay the last stage: a build without --target builds it.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="pollbridge" \
      org.opencontainers.image.description="Polls pull-only REST APIs and POSTs signed webhooks for every change" \
      org.opencontainers.image.source="https://github.com/pollbridge/pollbridge" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /pollbridge /pollbridge
COPY bridge.yaml /etc/pollbridge/bridge.yaml
COPY --from=build --chown=65532:65532 /out/var/lib/pollbridge /var/lib/pollbridge
WORKDIR /var/lib/pollbridge
VOLUME ["/var/lib/pollbridge"]
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading
# /etc/passwd.
USER 65532:65532
# 9090 is the admin listener (/healthz, /readyz, /metrics, the API). It is
# off unless the config sets admin.listen: 127.0.0.1:9090 serves the
# HEALTHCHECK below; 0.0.0.0:9090 (with admin.token, which /metrics and the
# API then require) lets other containers and the kubelet reach it.
EXPOSE 9090
# The exec form, because there is no shell. `pollbridge health` reads the
# same config as `run` to find admin.listen, asks /readyz, and exits non-zero
# unless the daemon answers ready (store reachable, not shutting down). A
# config without admin.listen makes the check fail: set it in yours.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/pollbridge", "health", "-c", "/etc/pollbridge/bridge.yaml"]
# SIGTERM (docker stop, Kubernetes) drains for up to shutdown_timeout: give
# the container a longer stop timeout (docker stop -t, stop_grace_period,
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/pollbridge"]
CMD ["run", "-c", "/etc/pollbridge/bridge.yaml"]

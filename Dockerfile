# syntax=docker/dockerfile:1

# pollbridge: a static, non-root image.
#
#   docker build -t pollbridge .
#   docker run --rm -v pollbridge-state:/var/lib/pollbridge \
#     -v "$PWD/bridge.yaml:/etc/pollbridge/bridge.yaml:ro" \
#     -e APP_WEBHOOK_SECRET pollbridge
#
# The image's default config is the repository's bridge.yaml; mount your own
# over /etc/pollbridge/bridge.yaml. The working directory is the state volume,
# so a relative state path such as ./pollbridge.db is stored there and
# survives container restarts.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pollbridge .
# The state directory must exist and belong to the non-root user before it
# becomes a volume; the distroless stage has no shell to create it.
RUN mkdir -p /out/var/lib/pollbridge

# distroless/static ships CA certificates, tzdata and the nonroot user 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pollbridge /pollbridge
COPY bridge.yaml /etc/pollbridge/bridge.yaml
COPY --from=build --chown=65532:65532 /out/var/lib/pollbridge /var/lib/pollbridge
WORKDIR /var/lib/pollbridge
VOLUME ["/var/lib/pollbridge"]
USER 65532:65532
ENTRYPOINT ["/pollbridge"]
CMD ["run", "-c", "/etc/pollbridge/bridge.yaml"]

# syntax=docker/dockerfile:1
# The origin's container image (deploy/k8s/origin.yaml runs it). Built in the Rust image of
# the toolchain the repository pins (rust-toolchain.toml), run from distroless: no shell, no
# package manager, a non-root user. The static assets, the seed data and the migrations are
# compiled into the binary, so the binary is all the image holds.
#
#   docker build -t ghcr.io/forecastin/forecastin-origin:0.1.0 .
#
# Checked offline by hadolint and deploy/check_consistency.py in ./scripts/test.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The image's toolchain is the pinned one; the pin's extra components (clippy, the wasm32
# target) are for development. The empty folder is the embedded SQLite's, for a container run
# without DATABASE_URL. The registry and the target folder are BuildKit cache mounts, kept
# from one build to the next: a change to the origin's code recompiles the workspace's crates,
# not the several hundred dependencies (the binary is copied out, as the mount is not in the
# image).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    rm rust-toolchain.toml \
    && cargo build --release --locked -p forecastin-origin \
    && install -D target/release/forecastin-origin /out/forecastin-origin \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/forecastin-origin /usr/local/bin/forecastin-origin
COPY --from=build --chown=10001:10001 /out/data /var/lib/forecastin
USER 10001:10001
WORKDIR /var/lib/forecastin
ENV LISTEN_ADDR=0.0.0.0:8080 \
    ADMIN_ADDR=0.0.0.0:9091 \
    DATA_DIR=/var/lib/forecastin
EXPOSE 8080 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/forecastin-origin", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/forecastin-origin"]
CMD ["serve"]

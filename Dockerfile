# syntax=docker/dockerfile:1
#
# snapward's container image: a release build in the official Rust image,
# copied into distroless (glibc + CA certificates, no shell, no package
# manager), running as the distroless `nonroot` user 65532 — the UID/GID the
# manifests in deploy/ expect (runAsUser/runAsGroup/fsGroup 65532).
#
#   docker build -t snapward:dev .
#
# No Docker engine runs on the CI machines of this repository, so CI does not
# build this image; scripts/validate-deploy.sh checks the manifests that use
# it. Keep it conventional: everything the build needs is in Cargo.lock.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The slim image has gcc and libc headers (aws-lc-sys and ring build C);
# TLS is rustls, so no OpenSSL.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin snapward \
    && install -D -m 0755 target/release/snapward /out/snapward \
    && strip /out/snapward

# cc-debian12 = the glibc of bookworm, the builder's; nonroot = UID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/snapward /usr/local/bin/snapward
USER 65532:65532
# JSON logs in a Job; the CronJob passes `run -f /etc/snapward ...`.
ENV SNAPWARD_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/snapward"]
CMD ["--help"]

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

# Base images are pinned by digest (a tag can be re-pointed, a digest
# cannot); the tag beside it says what the digest was when pinned.
# tests/it/deploy.rs fails on a FROM without @sha256:.
#
# NOT VERIFIED FROM THE MACHINE THAT PINNED THEM: it has no access to
# Docker Hub or gcr.io. Both are the digests public Dockerfiles pin for these
# tags (late 2026). A digest can only name content in that repository, so a
# wrong one makes `docker build` fail ("not found"), never pulls something
# else. Before a release, check and refresh them:
#   docker buildx imagetools inspect rust:1.95-slim-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# (the top-level "Digest:", the multi-platform index).
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
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
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /out/snapward /usr/local/bin/snapward
USER 65532:65532
# JSON logs in a Job; the CronJob passes `run -f /etc/snapward ...`.
ENV SNAPWARD_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/snapward"]
CMD ["--help"]

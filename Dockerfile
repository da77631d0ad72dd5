# syntax=docker/dockerfile:1
# An image of one of the examples, for Kubernetes (docs/kubernetes.md):
#
#   docker build --build-arg EXAMPLE=conformance -t registry.example.org/conformance:1 .
#
# The examples are built with rayai's `kubernetes` feature: `RAYAI_RENDER=k8s` prints their
# manifests, `RAYAI_DISCOVERY=kubernetes` finds replica pods.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG EXAMPLE=quickstart
# jemalloc (the examples' allocator) builds with make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p "${EXAMPLE}" \
    && install -D "target/release/${EXAMPLE}" "/out/${EXAMPLE}" \
    && ln -s "${EXAMPLE}" /out/app

FROM debian:bookworm-slim
# CA certificates for agents that call HTTPS APIs; nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 rayai \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin rayai
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV RAYAI_HOST=0.0.0.0
EXPOSE 8000 9000 9090
# `app` links to the example's binary, whose name is the program's name in Kubernetes.
ENTRYPOINT ["/usr/local/bin/app"]

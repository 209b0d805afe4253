# syntax=docker/dockerfile:1
# atowatch container image.
#   docker build -t atowatch:0.1.0 .
#   docker run --rm -p 9464:9464 -e ATOWATCH_BROKERS=kafka:9092 atowatch:0.1.0
# The image's config is config/default.toml; the Helm chart (helm/atowatch) mounts its
# own over /etc/atowatch.

FROM rust:1-bookworm AS build
# librdkafka is built from source by rdkafka-sys (configure + make, C and C++), with
# OpenSSL for TLS and SASL/SCRAM (the runtime image has libssl3).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake gcc g++ make perl zlib1g-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
# Link zlib statically: the distroless runtime image has no libz.so.1.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin atowatch \
 && install -D -m 0755 target/release/atowatch /out/atowatch \
 && strip --strip-debug /out/atowatch

# glibc, libgcc, libstdc++, libssl and CA certificates; no shell. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/atowatch /atowatch
COPY config/default.toml /etc/atowatch/atowatch.toml
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/atowatch"]
CMD ["run", "--config", "/etc/atowatch/atowatch.toml"]

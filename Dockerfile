# Multi-stage build of apikey-operator: a static-enough release binary on a
# distroless, non-root runtime. Not built by this project's CI (no container
# runtime or registry access there); build it with `docker build -t apikey-operator .`.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Everything (see .dockerignore): Cargo validates every declared target,
# benches and tests included.
COPY . .
# jemalloc: the allocator the memory figures of BENCHMARKS.md were measured with.
RUN cargo build --release --locked --features jemalloc --bin apikey-operator \
 && strip target/release/apikey-operator

# glibc, CA certificates, no shell, no package manager; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/apikey-operator /usr/local/bin/apikey-operator
USER 65532:65532
# 8443: verifier (TokenReview, forward-auth); 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/apikey-operator"]
CMD ["run", "--verify-addr=0.0.0.0:8443", "--admin-addr=0.0.0.0:9090"]

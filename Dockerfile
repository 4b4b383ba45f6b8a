# syntax=docker/dockerfile:1
# `aos run` in a container (Azure Container Apps, Kubernetes; docs/deploy.md): the webhook on
# :8080 and the queue workers. Multi-stage: build on Debian 12 (the glibc the runtime image
# has), run on distroless cc-debian12 as a non-root user with the release binary only: built
# without the `dev` feature, so no Altinn simulator and no Azurite launcher are in it.
#
#   docker build --build-arg AOS_COMMIT=$(git rev-parse --short=12 HEAD) -t altinn-aos:local .
#   docker run --rm -p 8080:8080 --env-file aos.env altinn-aos:local
#
# Scheduled work runs the same image with other arguments: `aos reconcile`, `aos catch-up`.
# The e2e test container_entrypoint runs the binary with this file's ENV, ENTRYPOINT and CMD.

FROM rust:1-bookworm AS build
# `aos --version` names this commit: --build-arg AOS_COMMIT=$(git rev-parse --short=12 HEAD)
# (.git is not in the build context).
ARG AOS_COMMIT=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p altinn-aos --no-default-features --bin aos

FROM gcr.io/distroless/cc-debian12:nonroot
#checkov:skip=CKV_DOCKER_2:Distroless has no shell or HTTP client for a HEALTHCHECK; the orchestrator probes GET /health (Container Apps readiness probe, Kubernetes readinessProbe).
COPY --from=build /src/target/release/aos /aos
# Container logs are collected, not read on a terminal: one JSON object per line.
ENV AOS_LOG_FORMAT=json
# distroless "nonroot" (uid/gid 65532), numeric so the runtime can check it is not root.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/aos"]
CMD ["run", "--listen", "0.0.0.0:8080"]

# syntax=docker/dockerfile:1
#
# nst's container image: built with the same `make setup` and `make build` CI runs, shipped as
# bin/nst plus the libtorch tree it links, on a runtime base without compilers or credentials.
#
#   docker build -t nst:cuda .                              # NVIDIA GPUs (CUDA 12.1), the default
#   docker build --build-arg NST_DEVICE=cpu -t nst:cpu .    # CPU only, on Debian bookworm-slim
#
# NST_DEVICE picks both the libtorch `make setup` fetches and the runtime base (the stage
# runtime-${NST_DEVICE} below); RUNTIME_BASE overrides the base alone. Needs BuildKit (Docker 23+
# or `docker buildx build`) for the cache mount. See docs/kubernetes.md.
#
# Base images are pinned by tag here. The release process should pin each by digest as well
# (image:tag@sha256:...): no digest can be resolved offline where this file was written.

ARG NST_DEVICE=cuda
ARG RUNTIME_BASE=runtime-${NST_DEVICE}

# --- build ------------------------------------------------------------------------------------
FROM golang:1.26.8-bookworm AS build
ARG NST_DEVICE
# LIBTORCH: build against an unpacked libtorch 2.1.x in the build context instead of the pinned
# wheel, e.g. --build-arg LIBTORCH=/src/third_party/libtorch (the context is copied to /src).
# It is moved to /opt/nst/libtorch-2.1.2-${NST_DEVICE} first, so that the binary's rpath points
# where the runtime stage puts it.
ARG LIBTORCH=
# VERSION: what `nst version` prints (the Makefile's `git describe` needs .git, which is not
# sent to the builder).
ARG VERSION=dev

RUN apt-get update \
	&& apt-get install -y --no-install-recommends python3-pip g++ make \
	&& rm -rf /var/lib/apt/lists/*

# Where `make setup` keeps wheels and the unpacked libtorch: the runtime stage copies
# $NST_CACHE/libtorch-2.1.2-$NST_DEVICE to the same absolute path, the binary's rpath.
ENV NST_CACHE=/opt/nst
# `make setup` skips the tools only `make test` needs (moto's S3 server, k8s/validate's modules).
ENV NST_TEST_TOOLS=0
WORKDIR /src

# libtorch and the gotch copy first, in a layer that changes only with the lock file: the same
# scripts/setup.sh `make setup` runs below (where it then finds everything done). The wheels
# (about 3 GB for CUDA) stay in a cache mount, out of the image; setup checks their sha256.
COPY go.mod go.sum Makefile ./
COPY scripts/ scripts/
RUN --mount=type=cache,target=/opt/nst/wheels \
	if [ -z "$LIBTORCH" ]; then bash scripts/setup.sh; fi

COPY . .
RUN --mount=type=cache,target=/opt/nst/wheels \
	--mount=type=cache,target=/root/.cache/go-build \
	if [ -n "$LIBTORCH" ]; then \
		dest="$NST_CACHE/libtorch-2.1.2-$NST_DEVICE"; \
		mkdir -p "$dest" && cp -a "$LIBTORCH/." "$dest/"; \
		export LIBTORCH="$dest"; \
	fi \
	&& make setup VERSION="$VERSION" \
	&& make build VERSION="$VERSION"

# --- runtime bases ----------------------------------------------------------------------------
# CUDA: the CUDA 12.1 / cuDNN 8 runtime the torch 2.1.2 wheels are built for. The driver comes
# from the node (NVIDIA container toolkit); NVIDIA_VISIBLE_DEVICES and
# NVIDIA_DRIVER_CAPABILITIES are set by this base.
FROM nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04 AS runtime-cuda
# CPU: glibc, libstdc++ and libgcc_s are all libtorch needs from the system.
FROM debian:bookworm-slim AS runtime-cpu

# --- runtime ----------------------------------------------------------------------------------
FROM ${RUNTIME_BASE}
ARG NST_DEVICE
ARG VERSION=dev

LABEL org.opencontainers.image.title="nst" \
	org.opencontainers.image.description="Neural style transfer over image catalogues in object storage (libtorch ${NST_DEVICE})" \
	org.opencontainers.image.source="https://github.com/nst-project/nst" \
	org.opencontainers.image.url="https://github.com/nst-project/nst" \
	org.opencontainers.image.documentation="https://github.com/nst-project/nst/blob/main/docs/kubernetes.md" \
	org.opencontainers.image.version="${VERSION}" \
	org.opencontainers.image.vendor="nst-project"

# A fixed non-root user; Kubernetes manifests run as the same uid/gid (runAsUser: 65532).
RUN groupadd --system --gid 65532 nst \
	&& useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin nst

# Root certificates for HTTPS to S3 and GCS (debian:bookworm-slim has none).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# libtorch at the absolute path the binary's rpath names; libtorch_cpu.so finds the CUDA
# runtime libraries through its own $ORIGIN/../../nvidia/*/lib rpath, so the tree stays whole.
COPY --from=build /opt/nst/libtorch-2.1.2-${NST_DEVICE} /opt/nst/libtorch-2.1.2-${NST_DEVICE}
COPY --from=build /src/bin/nst /usr/local/bin/nst

# gotch creates $HOME/.cache/gotch at start-up and exits if it cannot; /tmp is writable here
# and is an emptyDir under Kubernetes' readOnlyRootFilesystem.
ENV GOTCH_CACHE=/tmp/gotch
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nst"]
CMD ["--help"]

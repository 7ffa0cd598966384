# GRATServe GPU image: grat_server and gratctl, LibTorch and the CUDA runtime from the pinned
# torch wheel (the driver comes from the host through the NVIDIA container toolkit), the CUDA
# kernels for sm_90a and sm_80, the default bundles baked in, real bundles in /models.
#   docker build -t gratserve:latest .
#   buildah bud --format docker --layers -t gratserve:latest .   (scripts/container_build.sh)
#   docker run --gpus all -p 50051:50051 -v /srv/bundles:/models:ro gratserve:latest
# README "Container image" has the rest (size, config, GPU runs, the CI test).

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---- build stage: the project's own install and build scripts, as on CI ----
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /src
# Only what installing needs, so this layer is reused while the sources change.
COPY requirements.txt requirements-nvcc.txt ./
COPY scripts/install_deps.sh scripts/
# Debian's Python refuses system-wide pip installs (PEP 668): the wheels go into a venv, which
# is first on PATH, so install_deps.sh and the build use it. --image-build adds the CUDA
# compiler from PyPI at torch's CUDA version (requirements-nvcc.txt).
# Debian packages are not pinned (hadolint DL3008): bookworm's point and security updates
# replace the old versions in the archive, so pins would break the build; the torch wheel and
# every Python package are pinned (requirements*.txt).
# Behind a TLS-intercepting proxy pip needs its CA: scripts/container_build.sh passes the
# host's (bind-mounted); unset, pip uses its own bundle.
ARG PIP_CERT
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && python3 -m venv "$VIRTUAL_ENV" \
 && ./scripts/install_deps.sh --image-build \
 && rm -rf /var/lib/apt/lists/*
# The wheels' CUDA toolkit (Debian bookworm's Python is 3.11). CMake finds nvcc through
# CUDACXX, LibTorch's CMake package through PATH.
ENV CUDA_HOME=/opt/venv/lib/python3.11/site-packages/nvidia/cu13
ENV CUDACXX=${CUDA_HOME}/bin/nvcc \
    PATH=${CUDA_HOME}/bin:${PATH}
COPY . .
# Tests are CI's job (the host build); the image builds the server, the clients, the kernels
# (sm_90a and sm_80, CMakeLists.txt) and the default bundles, then stages the runtime files.
RUN ./scripts/build.sh -DGRAT_BUILD_TESTS=OFF \
 && ./scripts/container_stage.sh

# ---- runtime stage ----
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Debian packages that own the libraries the binaries load (gRPC, protobuf, FFmpeg, ...),
# listed by container_stage.sh from the build.
COPY --from=build /runtime-packages.txt /tmp/runtime-packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /stage/ /
RUN ldconfig \
 && groupadd --system --gid 10001 grat \
 && useradd --system --uid 10001 --gid grat --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin grat \
 && mkdir -p /models
# NVIDIA_* ask the NVIDIA container toolkit for the GPUs and the driver's compute libraries.
ENV PATH=/opt/gratserve/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    GRAT_SERVER=localhost:50051
WORKDIR /opt/gratserve
VOLUME ["/models"]
EXPOSE 50051 9464
USER 10001:10001
# SIGTERM drains: health turns NOT_SERVING, running jobs get drain_timeout_s to finish.
STOPSIGNAL SIGTERM
# Plaintext gRPC health on $GRAT_SERVER (a config with TLS needs its own check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["gratctl", "health"]
ENTRYPOINT ["grat_server"]
CMD ["--config", "/etc/grat/config.yaml"]

#!/usr/bin/env bash
# Installs every build/test dependency: Debian packages and pinned Python wheels.
# Idempotent: packages already present are skipped. Used by .ci/run and README.
set -euo pipefail

APT_PACKAGES=(
  cmake ninja-build g++ pkg-config git
  libgtest-dev libgmock-dev
  clang-format
  nlohmann-json3-dev libyaml-cpp-dev
  libpng-dev libwebp-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libspdlog-dev prometheus-cpp-dev prometheus
)

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[deps] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if ! "$PY" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"; then
  echo "[deps] pip install failed" >&2
  exit 1
fi
echo "[deps] ok: torch $("$PY" -c 'import torch;print(torch.__version__)')"

#!/usr/bin/env bash
# Installs every build/test dependency: Debian packages and pinned Python wheels.
# Idempotent: packages already present are skipped. Used by .ci/run, README and the Dockerfile.
#   scripts/install_deps.sh                a developer's or CI machine: also the container
#                                          tools (buildah, debootstrap) tests/container uses
#   scripts/install_deps.sh --image-build  the Dockerfile's build stage: no container tools,
#                                          but the CUDA compiler from PyPI (requirements-nvcc.txt)
set -euo pipefail

image_build=0
case "${1:-}" in
  "") ;;
  --image-build) image_build=1 ;;
  *) echo "usage: $0 [--image-build]" >&2; exit 2 ;;
esac

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
if [ "$image_build" = 0 ]; then
  # tests/container: build the image (buildah, chroot isolation; no daemon), make its Debian
  # base locally (debootstrap). (The deploy lint renders the kustomize overlays with the
  # machine's kubectl; Debian's kubernetes-client is 1.20, too old, and clashes with it.)
  APT_PACKAGES+=(buildah debootstrap)
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[deps] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  # The image's build stage skips recommended packages (smaller, faster; the build needs none).
  no_rec=()
  if [ "$image_build" = 1 ]; then no_rec=(--no-install-recommends); fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${no_rec[@]}" "${missing[@]}"
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
reqs=(-r "$here/requirements.txt")
if [ "$image_build" = 1 ]; then reqs+=(-r "$here/requirements-nvcc.txt"); fi
if ! "$PY" -m pip install -q --disable-pip-version-check "${reqs[@]}"; then
  echo "[deps] pip install failed" >&2
  exit 1
fi

if [ "$image_build" = 1 ]; then
  # The wheels put nvcc, its headers and the CUDA libraries under site-packages/nvidia/cu13 but
  # not in a toolkit's layout: nvcc.profile links from lib64/, CMake's FindCUDAToolkit (which
  # LibTorch's CMake package calls) looks for unversioned libraries (libcudart.so) and the
  # driver's link stub (lib64/stubs/libcuda.so; the real one comes from the host's driver at
  # run time). Add those names; nothing the wheels hold is changed.
  cuda="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
  [ -x "$cuda/bin/nvcc" ] || { echo "[deps] no nvcc in $cuda" >&2; exit 1; }
  ln -sfn lib "$cuda/lib64"
  mkdir -p "$cuda/targets/x86_64-linux" "$cuda/lib/stubs"
  ln -sfn ../../include "$cuda/targets/x86_64-linux/include"
  ln -sfn ../../lib "$cuda/targets/x86_64-linux/lib"
  for f in "$cuda"/lib/lib*.so.*; do
    base="${f%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
  done
  # Link stub of the driver library: no symbol of it is linked directly (the kernels reach the
  # driver through cudart's entry points), CMake only needs the file to exist.
  echo 'int grat_cuda_link_stub;' | gcc -shared -x c - -Wl,-soname,libcuda.so.1 \
    -o "$cuda/lib/stubs/libcuda.so"
  # Debian's CMake 3.25.1 fails in FindCUDAToolkit when the toolkit has no libnvToolsExt (the
  # wheels have only the header-only nvtx3) and the project asks for CMake >= 3.25: it sets a
  # property on the missing CUDA::nvToolsExt target. Later CMake releases guard it with
  # `TARGET CUDA::nvToolsExt`; the same guard here, in the image only (the CI machine's CMake
  # module carries exactly this edit).
  for mod in /usr/share/cmake-3.25/Modules/FindCUDAToolkit.cmake; do
    [ -f "$mod" ] || continue
    sed -i 's/^\( *\)if(CMAKE_MINIMUM_REQUIRED_VERSION VERSION_GREATER_EQUAL 3\.25)$/\1if(TARGET CUDA::nvToolsExt AND CMAKE_MINIMUM_REQUIRED_VERSION VERSION_GREATER_EQUAL 3.25)/' "$mod"
  done
  echo "[deps] CUDA compiler from PyPI: $("$cuda/bin/nvcc" --version | tail -1) at $cuda"
fi
echo "[deps] ok: torch $("$PY" -c 'import torch;print(torch.__version__)')"

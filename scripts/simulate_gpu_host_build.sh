#!/usr/bin/env bash
# Checks here (root, Debian) that the server builds on a GPU host from the carried .debs alone:
# in a private mount namespace, /usr is overlaid with whiteouts for every file of the installed
# packages that .debs/ carries (and pkg-config), so neither CMake, the compiler, the linker nor
# the loader sees the system copies; then the GPU host's steps (source scripts/gpu_host_env.sh,
# configure with $GRAT_GPU_CMAKE_ARGS_SERVER, build). Prints where each package was found and
# the libraries the binary loads from outside /tmp/grat-deps and LibTorch. Replaces
# /tmp/grat-deps. The GPU hosts have CMake 4: put one first on PATH to match
# (e.g. pip install --target /tmp/cmake4 cmake; PATH=/tmp/cmake4/cmake/data/bin:$PATH).
# usage: scripts/simulate_gpu_host_build.sh [build_dir] [extra cmake args, e.g. -DGRAT_WITH_CUDA=OFF]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${GRAT_SIM_INSIDE:-}" ]; then
  exec env GRAT_SIM_INSIDE=1 unshare -m "$0" "$@"
fi
build=${1:-/tmp/grat-srv-sim}
shift || true
s=/tmp/grat-sim-usr
rm -rf "$s" && mkdir -p "$s/upper" "$s/work" "$s/merged"
for p in $(for f in "$root"/.debs/*.deb; do dpkg-deb -f "$f" Package; done) pkg-config; do
  dpkg -L "$p" 2>/dev/null | while read -r f; do
    case $f in /usr/*) ;; /lib/* | /bin/* | /sbin/*) f=/usr$f ;; *) continue ;; esac
    if [ -L "$f" ] || [ -f "$f" ]; then
      mkdir -p "$s/upper$(dirname "${f#/usr}")"
      mknod "$s/upper${f#/usr}" c 0 0 2>/dev/null || true
    fi
  done
done
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$s/upper,workdir=$s/work" "$s/merged"
mount --bind "$s/merged" /usr
echo "hidden: $(find "$s/upper" -type c | wc -l) files of the carried packages"

rm -rf /tmp/grat-deps "$build"
cd "$root"
set +u
source scripts/gpu_host_env.sh
set -u
cmake --version | head -1
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" $GRAT_GPU_CMAKE_ARGS_SERVER "$@" >"$build.cmake.log" 2>&1 ||
  { tail -40 "$build.cmake.log"; exit 1; }
ninja -C "$build" grat_server_bin server_overhead server_load >"$build.build.log" 2>&1 ||
  { grep -E "error|FAILED" -A3 "$build.build.log" | head -40; exit 1; }
ls -l "$build"/server/{grat_server,server_overhead,server_load}
echo "-- packages found outside /tmp/grat-deps (expect only glibc's libdl/librt, CUDA, LibTorch):"
grep -E "^[A-Za-z0-9_-]+:(PATH|FILEPATH)=/" \
  "$build/CMakeCache.txt" | grep -v "NOTFOUND\|/tmp/grat-deps\|CMAKE_\|CUDA\|torch" || true
echo "-- libraries server_load loads from outside /tmp/grat-deps and LibTorch:"
ldd "$build/server/server_load" | grep -v "grat-deps\|torch/lib" || true

#!/usr/bin/env bash
# Runs in the Dockerfile's build stage after scripts/build.sh: lays out under STAGE (default
# /stage) exactly what the runtime stage copies, and writes RUNTIME_PACKAGES (default
# /runtime-packages.txt), the Debian packages that own every library those files load.
#   /opt/gratserve/bin       grat_server, gratctl
#   /opt/gratserve/lib       libgrat_kernels.so (the operators, CUDA kernels for sm_90a + sm_80)
#   /opt/gratserve/bundles   the default bundles the build exported (flux-shapes, the tiny
#                            video model)
#   /etc/grat/config.yaml    deploy/container/config.yaml
#   <site-packages>/torch/lib, <site-packages>/nvidia/*/lib   LibTorch and the CUDA runtime
#                            libraries of the torch wheel, at the same paths as here (their
#                            RUNPATHs point at each other), less what nothing loads
#   /etc/ld.so.conf.d/gratserve.conf   those library folders, for the loader
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
stage="${STAGE:-/stage}"
pkgs="${RUNTIME_PACKAGES:-/runtime-packages.txt}"
PY="${PYTHON:-python3}"
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

fail() { echo "container_stage: $*" >&2; exit 1; }
for f in server/grat_server clients/gratctl kernels/libgrat_kernels.so; do
  [ -f "$build/$f" ] || fail "missing $build/$f (run scripts/build.sh first)"
done
grep -q '^CMAKE_CUDA_COMPILER:[A-Z]*=/' "$build/CMakeCache.txt" ||
  fail "the build found no nvcc: the image must carry the CUDA kernels"
for b in flux-shapes hunyuan-video-tiny; do
  [ -f "$root/bundles/$b/model.yaml" ] || fail "missing bundles/$b (the build exports it)"
done

rm -rf "$stage"
mkdir -p "$stage/opt/gratserve/bin" "$stage/opt/gratserve/lib" "$stage/opt/gratserve/bundles" \
  "$stage/etc/grat" "$stage/etc/ld.so.conf.d"
install -m 0755 "$build/server/grat_server" "$build/clients/gratctl" "$stage/opt/gratserve/bin/"
install -m 0644 "$build/kernels/libgrat_kernels.so" "$stage/opt/gratserve/lib/"
cp -a "$root/bundles/flux-shapes" "$root/bundles/hunyuan-video-tiny" "$stage/opt/gratserve/bundles/"
install -m 0644 "$root/deploy/container/config.yaml" "$stage/etc/grat/config.yaml"

# LibTorch: the C++ libraries; not the Python bindings (libtorch_python, libshm), headers or
# CMake files. libtorch_cuda_linalg and libcaffe2_nvrtc are loaded on demand by libtorch_cuda.
mkdir -p "$stage$site/torch/lib"
for l in libc10.so libc10_cuda.so libtorch.so libtorch_cpu.so libtorch_cuda.so \
         libtorch_cuda_linalg.so libtorch_nvshmem.so libcaffe2_nvrtc.so libgomp.so.1; do
  [ -f "$site/torch/lib/$l" ] || fail "torch wheel without lib/$l"
  cp -a "$site/torch/lib/$l" "$stage$site/torch/lib/"
done
# The CUDA libraries of the wheel's nvidia-* dependencies (only lib/: no headers, no nvcc),
# less what neither LibTorch nor a library it loads uses: static archives, the toolkit names
# this build added (unversioned .so links, stubs/), the FFTW and BLAS drop-in front-ends, the
# multi-GPU solver, CUDA checkpointing, CUPTI's profiler-host extensions, cuFile's RDMA
# plug-in, the alternative NVRTC, NVVM (nvcc's), and NVSHMEM's MPI/PMIx/IB/UCX/libfabric
# plug-ins (whose libraries the image does not have; one pod serves one GPU).
for d in "$site"/nvidia/*/lib; do
  rel="${d#"$site"/}"
  mkdir -p "$stage$site/$rel"
  (cd "$d" && find . -maxdepth 1 \( -type f -o -type l \) -name '*.so*' \
     ! -name '*.a' ! -name 'libcufftw.so*' ! -name 'libnvblas.so*' ! -name 'libcusolverMg.so*' \
     ! -name 'libcheckpoint.so*' ! -name 'libnvperf_*' ! -name 'libpcsamplingutil.so*' \
     ! -name 'libcufile_rdma.so*' ! -name 'libnvrtc*.alt.so*' ! -name 'libnvvm.so*' \
     ! -name 'nvshmem_bootstrap_*' ! -name 'nvshmem_transport_*' -print0 |
     while IFS= read -r -d '' f; do
       # Keep versioned files and the links the libraries' own packages ship; drop the
       # unversioned links install_deps.sh --image-build added for CMake.
       if [ -L "$f" ] && [[ "$f" == *.so ]]; then continue; fi
       cp -a "$f" "$stage$site/$rel/"
     done)
done
{
  echo /opt/gratserve/lib
  echo "$site/torch/lib"
  for d in "$stage$site"/nvidia/*/lib; do echo "${d#"$stage"}"; done
} >"$stage/etc/ld.so.conf.d/gratserve.conf"

# Debian packages the runtime needs: the owners of every library that the binaries and the
# staged libraries load from outside the stage (gRPC, protobuf, FFmpeg, zlib for cuDNN, ...).
libpath="$stage/opt/gratserve/lib:$stage$site/torch/lib$(printf ':%s' "$stage$site"/nvidia/*/lib)"
deps=$(find "$stage" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
         xargs -0 env LD_LIBRARY_PATH="$libpath" ldd 2>/dev/null || true)
# libcuda.so.1 is the host driver's, mounted by the NVIDIA container toolkit.
missing=$(echo "$deps" | grep 'not found' | grep -v 'libcuda\.so\.1 ' | sort -u || true)
[ -z "$missing" ] || fail "unresolved libraries: $missing"
libs=$(echo "$deps" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
: >"$pkgs.tmp"
for l in $libs; do
  case "$l" in "$stage"/* | "$site"/* | "$build"/*) continue ;; esac
  real=$(readlink -f "$l")
  owner=""
  for p in "$l" "$real" "${l#/usr}" "/usr$l" "${real#/usr}" "/usr$real"; do
    owner=$(dpkg -S "$p" 2>/dev/null | head -1) && break
  done
  [ -n "$owner" ] || fail "no Debian package owns $l"
  echo "${owner%%:*}" >>"$pkgs.tmp"
done
sort -u "$pkgs.tmp" | grep -v '^libc6$' >"$pkgs"
rm -f "$pkgs.tmp"
echo "container_stage: $(du -sh "$stage" | cut -f1) staged; runtime packages: $(paste -sd' ' "$pkgs")"

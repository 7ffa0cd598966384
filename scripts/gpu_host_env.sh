#!/usr/bin/env bash
# Source on the GPU host (no network, no apt): unpacks the carried Debian packages in .debs/
# (made here with `apt-get download`, see README) into /tmp/grat-deps and points CMake,
# pkg-config and the loader at them. Never unpacks into /.
#   source scripts/gpu_host_env.sh && cmake -S . -B /tmp/b $GRAT_GPU_CMAKE_ARGS
# $GRAT_GPU_CMAKE_ARGS_SERVER also builds the server (gRPC, protobuf, spdlog, prometheus-cpp,
# from the carried packages; re2 is found through the carried pkgconf; protoc and
# grpc_cpp_plugin run from the prefix through LD_LIBRARY_PATH).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/tmp/grat-deps
debs=$(cd "$root/.debs" && ls ./*.deb)
# The minimal FFmpeg of scripts/make_gpu_ffmpeg.sh, when carried (MP4 output on the GPU host).
[ -d "$root/.ffmpeg/usr" ] && debs="$debs ffmpeg:$(cat "$root/.ffmpeg/VERSION")"
if [ ! -d "$prefix/usr" ] || [ "$(cat "$prefix/.debs" 2>/dev/null)" != "$debs" ]; then
  rm -rf "$prefix" && mkdir -p "$prefix"
  for f in "$root"/.debs/*.deb; do dpkg -x "$f" "$prefix"; done
  [ -d "$root/.ffmpeg/usr" ] && cp -a "$root/.ffmpeg/usr/." "$prefix/usr/"
  echo "$debs" >"$prefix/.debs"
  # Debian's libz.so points at its own zlib version by absolute path: use the host's.
  lib="$prefix/usr/lib/x86_64-linux-gnu"
  if [ ! -e "$lib/libz.so" ] && [ -e /lib/x86_64-linux-gnu/libz.so.1 ]; then
    ln -sf /lib/x86_64-linux-gnu/libz.so.1 "$lib/libz.so"
  fi
fi
export CMAKE_PREFIX_PATH="$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_SYSROOT_DIR="$prefix"
export PKG_CONFIG_LIBDIR="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$prefix/usr/share/pkgconfig"
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Debian keeps some headers in the multiarch folder (openssl/opensslconf.h), which CMake's
# package modules do not add for a prefix outside /usr.
export CPATH="$prefix/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
export GRAT_GPU_CMAKE_ARGS="-G Ninja -DGRAT_BUILD_TESTS=OFF -DGRAT_WITH_VIDEO=OFF -DGRAT_BUILD_TINY_BUNDLE=OFF -DGRAT_BUILD_SERVER=OFF -DCMAKE_CUDA_ARCHITECTURES=90a"
# With the minimal FFmpeg carried: the engine with MP4 output (video benchmarks).
export GRAT_GPU_CMAKE_ARGS_VIDEO="${GRAT_GPU_CMAKE_ARGS/-DGRAT_WITH_VIDEO=OFF/-DGRAT_WITH_VIDEO=ON} -DPKG_CONFIG_EXECUTABLE=$prefix/usr/bin/pkgconf"
export GRAT_GPU_CMAKE_ARGS_SERVER="${GRAT_GPU_CMAKE_ARGS/-DGRAT_BUILD_SERVER=OFF/-DGRAT_BUILD_SERVER=ON} -DProtobuf_PROTOC_EXECUTABLE=$prefix/usr/bin/protoc -DPKG_CONFIG_EXECUTABLE=$prefix/usr/bin/pkgconf"

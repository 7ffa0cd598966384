#!/usr/bin/env bash
# Here (not on the GPU host): a minimal build of Debian's own FFmpeg 5.1 source (libavcodec with
# only the libx264 encoder, libavformat with only the MP4 muxer, libswscale, libavutil) plus
# Debian's libx264, installed into .ffmpeg/usr (ignored by git) for GPU hosts to carry.
# Debian's full libavcodec59 needs ~110 shared libraries (~60 MB of packages), more than a
# device call carries; this one needs only libc, libm and libx264 (~6 MB). Same API and
# soname as Debian's, so the engine builds with GRAT_WITH_VIDEO=ON there unchanged.
#   scripts/make_gpu_ffmpeg.sh        (then pass .ffmpeg in `carry`; gpu_host_env.sh uses it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ver=5.1.9
work=/tmp/grat-ffmpeg-build
out="$root/.ffmpeg"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get install -y -q libx264-dev nasm >/dev/null
mkdir -p "$work" && cd "$work"
tarball=ffmpeg_$ver.orig.tar.xz
if [ ! -f "$tarball" ]; then
  for pool in debian-security/pool/updates debian/pool; do
    curl -sfLO "http://deb.debian.org/$pool/main/f/ffmpeg/$tarball" && break
  done
fi
rm -rf "ffmpeg-$ver" && tar xf "$tarball" && cd "ffmpeg-$ver"
./configure --prefix=/usr --libdir=/usr/lib/x86_64-linux-gnu --enable-shared --disable-static \
  --disable-programs --disable-doc --disable-everything --disable-autodetect --disable-network \
  --enable-gpl --enable-libx264 --enable-encoder=libx264 --enable-muxer=mp4 \
  --enable-protocol=file --enable-swscale --disable-avdevice --disable-avfilter \
  --disable-swresample --disable-postproc >"$work/configure.log"
make -j"$(nproc)" >"$work/make.log"
rm -rf "$out" && make install DESTDIR="$out" >/dev/null
cp -a /usr/lib/x86_64-linux-gnu/libx264.so.* "$out/usr/lib/x86_64-linux-gnu/"
echo "$ver minimal (libx264 + mp4)" >"$out/VERSION"
du -sh "$out"

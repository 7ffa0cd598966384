#!/usr/bin/env bash
# On a CUDA host: build video_bench against the carried Debian packages (.debs/, which must
# also hold ffmpeg's libav* for the MP4 stage: GRAT_WITH_VIDEO stays on here), export the
# full-size HunyuanVideo bundle with random bf16 weights (~43 GB under /tmp), then time one
# denoising step per shape x attention and whole clips. Not yet run on a GPU host.
# usage: bench/run_video_bench.sh <out_dir> <commit> [shapes] [patterns] [clips] [clip steps]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
source "$root/scripts/gpu_host_env.sh"
build=/tmp/grat-video-bench
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" ${GRAT_GPU_CMAKE_ARGS/-DGRAT_WITH_VIDEO=OFF/-DGRAT_WITH_VIDEO=ON} \
  >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
ninja -C "$build" video_bench >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
bundle=/tmp/hunyuan-video-bundle
if [ ! -f "$bundle/model.yaml" ]; then
  ( cd "$root" && GRAT_OPS_LIB="$build/kernels/libgrat_kernels.so" python3 -m models.export \
      --preset hunyuan-video --device cuda --dtype bf16 --no-check --out "$bundle" ) 2>&1 |
    grep -v Warning
fi
"$build/bench/video_bench" "$bundle" "$out/video_bench.json" "$commit" \
  "${3:-960x544x129,1280x720x129}" "${4:-full,B,X,auto}" "${5:-1280x720x129:B,1280x720x129:B:10}" \
  "${6:-50}"

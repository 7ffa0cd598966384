#!/usr/bin/env bash
# On a CUDA host: build engine_bench against the carried Debian packages (.debs/), export the
# full-size FLUX.1-dev bundle with random bf16 weights, then time one denoising step per
# resolution x attention and whole 28-step images (stage breakdown, peak memory).
# usage: bench/run_engine_bench.sh <out_dir> <commit> [steps-res] [image-res] [image-patterns]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
source "$root/scripts/gpu_host_env.sh"
build=/tmp/grat-engine-bench
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" $GRAT_GPU_CMAKE_ARGS >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
ninja -C "$build" engine_bench >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
bundle=/tmp/flux-dev-bundle
if [ ! -f "$bundle/model.yaml" ]; then
  ( cd "$root" && GRAT_OPS_LIB="$build/kernels/libgrat_kernels.so" python3 -m models.export \
      --preset flux-dev --device cuda --dtype bf16 --no-check --out "$bundle" ) 2>&1 | grep -v Warning
fi
"$build/bench/engine_bench" "$bundle" "$out/engine_steps.json" "$commit" steps "${3:-1024,2048,4096}"
"$build/bench/engine_bench" "$bundle" "$out/engine_image.json" "$commit" image "${4:-1024,4096}" "${5:-auto,B}"

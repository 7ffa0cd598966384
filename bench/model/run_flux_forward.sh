#!/usr/bin/env bash
# On a CUDA host: build flux_forward, export the full-size FLUX.1-dev transformer with random
# bf16 weights to TorchScript, then time one forward per resolution x pattern from C++.
# usage: bench/model/run_flux_forward.sh <out_dir> <commit> [res] [patterns] [reps]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
build=/tmp/grat-model-bench
cmake -S "$root/bench/model" -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
ninja -C "$build" flux_forward
lib="$build/gpu/kernels/libgrat_kernels.so"
model=/tmp/flux-dev
if [ ! -f "$model/transformer.pt" ]; then
  ( cd "$root" && GRAT_OPS_LIB="$lib" python3 -m models.export --preset flux-dev \
      --transformer-only --device cuda --dtype bf16 --out "$model" )
fi
"$build/flux_forward" "$model/transformer.pt" "$out/flux_forward.json" "$commit" \
  "${3:-1024,4096}" "${4:-full,B,X}" "${5:-3}"

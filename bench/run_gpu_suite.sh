#!/usr/bin/env bash
# One GPU-host call: build (carried .debs), probe error paths, export the full-size FLUX.1-dev
# bundle (random bf16), time the transformer forward from C++ and the engine per step.
# usage: bench/run_gpu_suite.sh <out_dir> <commit>
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
source "$root/scripts/gpu_host_env.sh"
build=/tmp/grat-suite
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" $GRAT_GPU_CMAKE_ARGS >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
ninja -C "$build" engine_bench flux_forward >"$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head; exit 1; }
lib="$build/kernels/libgrat_kernels.so"
echo "== error-path probe (integer in a TORCH_CHECK message)"
for dev in cpu cuda; do
  python3 -c "
import sys, torch
torch.ops.load_library('$lib')
q = torch.randn(1, 15, 2, 64, device='$dev', dtype=torch.bfloat16)
try:
    torch.ops.grat.attention(q, q, q, [4, 4], [2, 2], 'B', 1, 0, True, [], False, None)
except RuntimeError as e:
    print('$dev: RuntimeError:', str(e).splitlines()[0][:100])
"; echo "$dev probe rc=$?"
done
bundle=/tmp/flux-dev-bundle
( cd "$root" && GRAT_OPS_LIB="$lib" python3 -m models.export --preset flux-dev --device cuda \
    --dtype bf16 --no-check --out "$bundle" ) 2>&1 | grep -v -i warn
echo "== transformer forward (C++, TorchScript)"
"$build/bench/flux_forward" "$bundle/transformer.pt" "$out/flux_forward.json" "$commit" 1024,4096 full,B,X 2
echo "== engine: one denoising step"
"$build/bench/engine_bench" "$bundle" "$out/engine_steps.json" "$commit" steps 1024,2048,4096
echo "== engine: whole 28-step image"
"$build/bench/engine_bench" "$bundle" "$out/engine_image.json" "$commit" image 1024 auto

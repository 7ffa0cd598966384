#!/usr/bin/env bash
# One GPU-host call for the engine issue: build (carried .debs), probe error paths, export the
# full-size FLUX.1-dev bundle (random bf16) while the benchmarks build, then the engine per step
# (1024^2..8192^2, full/B/X/auto) and whole 28-step images, in one process (one bundle load).
# usage: bench/run_gpu_suite.sh <out_dir> <commit> [step resolutions] [images res:pattern,...]
# Time on an H100 (estimate): build 2-3 min with the export overlapped, load 25 s, steps
# ~3 min (8192^2 full alone ~1.5 min), images 1024 + 4096 ~1.5 min.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
step_res=${3:-1024,2048,4096,8192}; images=${4:-1024:auto,4096:B}
source "$root/scripts/gpu_host_env.sh"
source "$root/bench/gpu_prepare.sh"
grat_prepare_flux_suite "$out" || exit 1
ninja -C "$build" engine_bench >"$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head; exit 1; }
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
wait "$export_pid" || { echo "export failed"; tail -20 "$out/export.log"; exit 1; }
grep -v -i warn "$out/export.log" | tail -3
echo "== engine: one denoising step per resolution x attention, then whole 28-step images"
"$build/bench/engine_bench" "$bundle" "$out/engine.json" "$commit" "$step_res" full,B,X,auto "$images"

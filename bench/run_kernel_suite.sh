#!/usr/bin/env bash
# One GPU-host call for the kernels issue plus the engine's 8192^2 memory check: build
# (carried .debs), GPU tests + compute-sanitizer on the build's kernels library while the
# full-size bundle exports, the attention benchmark (ours / raster / regroup; peers at 8192^2
# only, the others were measured before), then
# the engine's 8192^2 steps (peak memory) and 4096^2 steps.
# usage: bench/run_kernel_suite.sh <out_dir> <commit> [attention cases] [engine patterns]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}; commit=${2:?commit}
cases=${3:-flux4096,video32,flux2048}; patterns=${4:-B,X}
source "$root/scripts/gpu_host_env.sh"
source "$root/bench/gpu_prepare.sh"
grat_prepare_flux_suite "$out" || exit 1
ninja -C "$build" engine_bench >"$out/build.log" 2>&1 &
build_pid=$!
echo "== GPU tests (kernels of this build)"
SKIP_BUILD=1 bash "$root/tests/gpu/run_gpu_tests.sh" "$build" >"$out/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "FAIL|failures|passed|ERROR SUMMARY|hazard|seed=" "$out/gpu_tests.log" | head -20
export GIT_COMMIT=$commit
echo "== attention benchmark ($cases: ours only; flux8192 with its peers)"
python3 "$root/bench/attention_bench.py" "$lib" --cases "$cases" --no-flex --no-full --no-portable \
  --tag "attention_$commit" --out "$out" 2>&1 | tail -9
python3 "$root/bench/attention_bench.py" "$lib" --cases flux8192 --no-portable \
  --tag "attention_peers8192_$commit" --out "$out" 2>&1 | tail -5
wait "$build_pid" || { grep -E "error|FAILED" "$out/build.log" | head; exit 1; }
wait "$export_pid" || { echo "export failed"; tail -20 "$out/export.log"; exit 1; }
echo "== engine steps (peak memory)"
"$build/bench/engine_bench" "$bundle" "$out/engine.json" "$commit" 4096,8192 "$patterns" -

#!/usr/bin/env bash
# On a CUDA host, issue #18's measurements as one background chain (longer than one device
# call): the fused ops' and the engine's GPU tests, then the full-size FLUX.1-dev bundle
# (random bf16) through engine_bench with CUDA graphs off and on, the TorchScript executor
# setting, and the step profile (bench/step_profile.py).
#   1. build the kernels library and engine_bench (/tmp/grat-suite) while the bundle exports;
#      the kernels-only GPU test project (tests/gpu/run_gpu_tests.sh: attention, fused ops,
#      compute-sanitizer) in its own build
#   2. engine_bench: steps at 512..4096 (full, auto) and 28-step images (512^2 batch 1 and 4,
#      1024^2), graphs off / on / on with the optimizing executor
#   3. step_profile.py at 512^2 and 1024^2 (where a step goes, with the fused ops)
#   bench/run_step_speed.sh start COMMIT
#   bench/run_step_speed.sh start-8192 COMMIT  (only engine_bench at 8192^2, full and auto:
#                                               ~1.5 min a full-attention step; ~5 min in all)
#   bench/run_step_speed.sh wait SECONDS      (brings back logs and JSON in $OUT)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/gss; logs=/tmp/gss-out
source "$root/bench/gpu_prepare.sh"
case "${1:?start|start-8192|wait}" in
start | start-8192)
  commit=${2:?commit}
  only_8192=$([ "$1" = start-8192 ] && echo 1 || echo 0)
  rm -rf "$work" "$logs" && mkdir -p "$work" "$logs"
  grat_chain_src "$root" "$work"
  cat >"$work/chain.sh" <<CHAIN
set -x -o pipefail
cd $work/src
source scripts/gpu_host_env.sh
source bench/gpu_prepare.sh
export GRAT_COMMIT=$commit
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
grat_prepare_flux_suite $logs || exit 1
ninja -C \$build engine_bench >$logs/build_bench.log 2>&1 || { grep -E "error|FAILED" $logs/build_bench.log | head; exit 1; }
b=\$build/bench/engine_bench
if [ $only_8192 = 1 ]; then
  wait \$export_pid || { echo "export failed"; tail -20 $logs/export.log; exit 1; }
  \$b --no-graphs \$bundle $logs/engine_8192.json $commit 8192 full,auto - >$logs/engine_8192.log 2>&1
  echo "8192 rc \$?"; grep -v "\[engine\]" $logs/engine_8192.log | tail -5
  echo SUITE-DONE; exit 0
fi
CUDA_ARCH=90a tests/gpu/run_gpu_tests.sh /tmp/gss-gpu-tests >$logs/gpu_tests.log 2>&1
echo "gpu tests rc \$?"; grep -E "^==|FAIL|passed|failed" $logs/gpu_tests.log | tail -20
wait \$export_pid || { echo "export failed"; tail -20 $logs/export.log; exit 1; }
imgs=512:auto:1:28,512:auto:4:28,1024:auto:1:28,1024:full:1:28
\$b --no-graphs --warm-images \$bundle $logs/engine_off.json $commit 512,1024,2048,4096 full,auto \$imgs >$logs/engine_off.log 2>&1
echo "graphs off rc \$?"; grep -v "\[engine\]" $logs/engine_off.log | tail -25
\$b --graphs --max-graph-tokens=16384 --warm-images \$bundle $logs/engine_on.json $commit 512,1024,2048,4096 full,auto \$imgs >$logs/engine_on.log 2>&1
echo "graphs on rc \$?"; grep -v "\[engine\]" $logs/engine_on.log | tail -25
\$b --graphs --optimized-execution --warm-images \$bundle $logs/engine_on_opt.json $commit 512,1024 full,auto \$imgs >$logs/engine_on_opt.log 2>&1
echo "graphs on + optimizing executor rc \$?"; grep -v "\[engine\]" $logs/engine_on_opt.log | tail -25
export GRAT_OPS_LIB=\$lib
for r in 512 1024; do
  python3 bench/step_profile.py --bundle \$bundle --res \$r --attention B --out $logs/step_profile_\$r.json >$logs/step_profile_\$r.log 2>&1
  tail -12 $logs/step_profile_\$r.log
done
echo SUITE-DONE
CHAIN
  grat_chain_start "$work" "$logs"
  ;;
wait)
  grat_chain_until_done "$work" "$logs" "${2:?seconds}"
  grat_chain_pack "$logs"
  grep -v '^+' "$logs/suite.log" | tail -40
  ;;
esac

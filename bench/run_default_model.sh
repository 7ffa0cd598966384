#!/usr/bin/env bash
# On a CUDA host: train the default model (models/train) and measure GRAT's fidelity on it, as
# one background chain that survives between device calls (training takes most of 20 minutes,
# a device call at most 10).
#   1. build the kernels library and the server (from the carried .debs/), the server in the
#      background while the model trains
#   2. a GPU smoke run of every training phase (seconds): a broken recipe stops here
#   3. the training (python -m models.train.train), the checkpoint and the bundle
#   4. bench/fidelity_bench.py on the bundle: full, GRAT-B, GRAT-X and full-first-k at 512^2
#      and 1024^2 (one run per size), 200 captions
# `wait` brings back what the chain wrote, within the device tool's limits (8 files of at most
# 16 MiB): results.tgz (curves, grids, JSON, logs), the checkpoint folder as a tar in 15 MiB
# parts (ckpt.tar.part-aa, ...: `cat ckpt.tar.part-* | tar x`) and the chain's log.
# The first H200 run (fast recipe, --minutes 6.2): tokenizers 3 s, autoencoder 99 s, latents
# 91 s, transformer 179 s (1,618 steps, ~110 ms each), outputs 11 s
# (bench/results/train_flux_shapes_h200_fast_first*).
#   git archive COMMIT >.src/src.tar   (optional; .src/ is git-excluded, carry it with .debs)
#   bench/run_default_model.sh start COMMIT [train args...]
#   bench/run_default_model.sh start COMMIT --init-from models/train/weights --config continue256 --minutes 18
#   bench/run_default_model.sh start-train COMMIT [train args...]   (no server, no fidelity)
#   bench/run_default_model.sh wait SECONDS
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/gdm; logs=/tmp/gdm-out
source "$root/bench/gpu_prepare.sh"
case "${1:?start|start-train|wait}" in
start | start-train)
  commit=${2:?commit}
  fidelity=$([ "$1" = start ] && echo 1 || echo 0)
  shift 2
  rm -rf "$work" "$logs" && mkdir -p "$work" "$logs"
  grat_chain_src "$root" "$work"
  cat >"$work/chain.sh" <<CHAIN
set -x -o pipefail
cd $work/src
source scripts/gpu_host_env.sh
export GRAT_COMMIT=$commit PATH=/tmp/grat-deps/usr/bin:\$PATH   # protoc for the Python stubs
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
# shellcheck disable=SC2086
cmake -S . -B $work/build \$GRAT_GPU_CMAKE_ARGS_SERVER >$logs/cmake.log 2>&1 || { tail -30 $logs/cmake.log; exit 1; }
ninja -C $work/build grat_kernels >$logs/build_kernels.log 2>&1 || { tail -30 $logs/build_kernels.log; exit 1; }
export GRAT_OPS_LIB=$work/build/kernels/libgrat_kernels.so
[ $fidelity = 1 ] && (ninja -C $work/build grat_server_bin >$logs/build_server.log 2>&1; echo "server build rc \$?" >>$logs/build_server.log) &
server_build=\$!
python3 -m models.train.train --smoke --device cuda --steps 24 --out $work/smoke >$logs/smoke.log 2>&1 ||
  { tail -40 $logs/smoke.log; exit 1; }
grep -i "cuda graph" $logs/smoke.log | sed 's/^\[[^]]*\] /smoke: /'
echo "smoke ok at \${SECONDS}s"
python3 -m models.train.train --out $work/ckpt --bundle $work/bundle --results $logs $* \
  2>&1 | tee $logs/train.log | grep -v Warning || { echo "training FAILED"; exit 1; }
grep -i "cuda graph" $logs/train.log | sed 's/^\[[^]]*\] /train: /'
[ $fidelity = 1 ] || { echo SUITE-DONE; exit 0; }
wait \$server_build; tail -3 $logs/build_server.log
for size in 512 1024; do   # one size at a time: a chain cut short keeps the finished size
  python3 bench/fidelity_bench.py --bundle $work/bundle --server-bin $work/build/server/grat_server \
    --device cuda:0 --sizes \$size --captions 200 --modes full,B,X,first4 --clients 16 \
    --commit $commit --out $logs/fidelity_\$size.json --figure $logs/fidelity_\$size.png \
    --images $work/images 2>&1 | tail -15
done
echo SUITE-DONE
CHAIN
  grat_chain_start "$work" "$logs"
  ;;
wait)
  grat_chain_until_done "$work" "$logs" "${2:?seconds}"
  grat_chain_pack "$logs"
  if [ -f "$work/ckpt/config.json" ]; then
    tar -C "$work" -cf - ckpt | split -b 15M - "${OUT:-/tmp}/ckpt.tar.part-"
  fi
  grep -v '^\[' "$logs/suite.log" | tail -40
  grep '^\[' "$logs/suite.log" | tail -4   # the training's latest lines
  ;;
esac

#!/usr/bin/env bash
# On a CUDA host: the full-size HunyuanVideo transformer forward (ours from C++ TorchScript, and
# the diffusers + FlexAttention peer) as one background chain that survives between device calls.
#   [PEER_MODES=B,X,full-nomask,full] bench/model/run_video_suite.sh start COMMIT [grids] [patterns] [reps]
#   bench/model/run_video_suite.sh wait SECONDS     # copies the logs and JSON into $OUT
# The peer needs diffusers: carry .whl/ (diffusers, importlib_metadata wheels).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=/tmp/gv; logs=/tmp/gv-out
source "$root/bench/gpu_prepare.sh"
case "${1:?start|wait}" in
start)
  commit=${2:?commit}
  rm -rf "$work/src" && mkdir -p "$work" "$logs" && cp -r "$root" "$work/src"
  cat >"$work/chain.sh" <<CHAIN
set -x
cd $work/src
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
cmake -S bench/model -B $work/build -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
ninja -C $work/build video_forward || exit 1
export GRAT_OPS_LIB=$work/build/gpu/kernels/libgrat_kernels.so
python3 tests/gpu/test_rope_gpu.py \$GRAT_OPS_LIB
OUT=$logs python3 bench/model/full_paths.py \$GRAT_OPS_LIB 32,48,80 256,77
python3 -m models.export --preset hunyuan-video --transformer-only --device cuda --dtype bf16 \
  --out $work/hv || exit 1
$work/build/video_forward $work/hv/transformer.pt $logs/video_forward.json $commit \
  ${3:-32x48x80,33x45x80} ${4:-full,full@77,B,X} ${5:-2}
python3 -m pip install -q --no-index --no-deps --no-compile --target $work/site .whl/*.whl
PYTHONPATH=$work/site GIT_COMMIT=$commit REPS=1 OUT=$logs MODES=\${PEER_MODES:-B,X,full-nomask,full} \
  python3 bench/model/video_peer.py
# Pattern full through our own kernel instead of SDPA (GRAT_FULL_KERNEL=own).
GRAT_FULL_KERNEL=own $work/build/video_forward $work/hv/transformer.pt \
  $logs/video_forward_ownfull.json $commit ${3:-32x48x80} full,full@77 1
echo SUITE-DONE
CHAIN
  grat_chain_start "$work" "$logs"
  ;;
wait)
  grat_chain_wait "$work" "$logs" "${2:?seconds}"
  ;;
esac

#!/usr/bin/env bash
# On a CUDA host: the video engine benchmark as one background chain that survives between
# device calls (a full run takes ~20 minutes, a device call at most 10). It builds video_bench
# against the carried .debs/ and the minimal FFmpeg in .ffmpeg/ (scripts/make_gpu_ffmpeg.sh:
# MP4 encoding is measured, not skipped), exports the full-size HunyuanVideo bundle with random
# bf16 weights (~43 GB under /tmp), then times one denoising step per shape x attention and
# whole clips.
#   bench/run_video_bench.sh start COMMIT [shapes] [patterns] [clips] [clip steps]
#   bench/run_video_bench.sh wait SECONDS     # copies the logs and JSON into $OUT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/gvb; logs=/tmp/gvb-out
source "$root/bench/gpu_prepare.sh"
case "${1:?start|wait}" in
start)
  commit=${2:?commit}
  [ -d "$root/.ffmpeg/usr" ] || { echo "carry .ffmpeg (scripts/make_gpu_ffmpeg.sh)"; exit 1; }
  rm -rf "$work/src" "$logs" && mkdir -p "$work" "$logs" && cp -r "$root" "$work/src"
  cat >"$work/chain.sh" <<CHAIN
set -x
cd $work/src
source scripts/gpu_host_env.sh
source bench/gpu_prepare.sh
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
grat_prepare $logs $work/build "\$GRAT_GPU_CMAKE_ARGS_VIDEO" --preset hunyuan-video --device cuda \
  --dtype bf16 --no-check --out $work/bundle || exit 1
grep -q "MP4 output ON" $logs/cmake.log || { echo "no MP4 encoder"; exit 1; }
ninja -C $work/build video_bench >$logs/build.log 2>&1 || { tail -30 $logs/build.log; exit 1; }
wait \$export_pid || { tail -30 $logs/export.log; exit 1; }
du -sh $work/bundle
$work/build/bench/video_bench $work/bundle $logs/video_bench.json $commit \
  ${3:-256x256x17,512x320x33,960x544x33,960x544x129,1280x720x129} ${4:-full,B,X,auto} \
  ${5:-1280x720x129:B,1280x720x129:B:10} ${6:-50}
echo SUITE-DONE
CHAIN
  grat_chain_start "$work" "$logs"
  ;;
wait)
  grat_chain_wait "$work" "$logs" "${2:?seconds}"
  ;;
esac

#!/usr/bin/env bash
# The main job on a fresh machine: install deps, build (which also exports the default
# bundles), start the gRPC server with the default image model flux-shapes, trained here on a
# world of flat shapes (and, with --tiny-video, the tiny video bundle) on localhost, generate a
# demo image, score it with the scene checker (when the prompt is in the model's grammar:
# models/train/README.md) and then a demo video (9 frames, MP4) through gratctl, then drain
# the server with SIGTERM.
#   ./scripts/demo.sh ["prompt"] [out.png] [out.mp4]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
prompt="${1:-a red circle left of a blue square}"
out="${2:-$root/demo.png}"
video_out="${3:-$root/demo.mp4}"
"$root/scripts/install_deps.sh"
"$root/scripts/build.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # small CPU hosts: see README
port="${GRAT_DEMO_PORT:-50051}"
log="$build/demo_server.log"
GRAT_LISTEN="127.0.0.1:$port" GRAT_METRICS_LISTEN="127.0.0.1:$((port + 1))" \
  "$build/server/grat_server" --tiny-video >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
ctl=("$build/clients/gratctl" --server "127.0.0.1:$port")
for _ in $(seq 1 120); do
  if "${ctl[@]}" health >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then echo "server exited; log: $log" >&2; tail -20 "$log" >&2; exit 1; fi
  sleep 0.5
done
"${ctl[@]}" health
"${ctl[@]}" models
"${ctl[@]}" generate --prompt "$prompt" --width 256 --height 256 --seed 7 --attention auto --out "$out"
echo "demo image: $out (server log: $log)"
# The checker's verdict (exit 1: the image fails its caption; 2: a prompt outside the grammar).
PYTHONPATH="$root" "${PYTHON:-python3}" -m models.train.checker "$out" "$prompt" || true
# The tiny video model (random weights): 9 frames of 256x256 at 8 fps, H.264 in MP4.
"${ctl[@]}" generate --model hunyuan-video-tiny --prompt "$prompt" --width 256 --height 256 \
  --frames 9 --fps 8 --seed 7 --out "$video_out"
echo "demo video: $video_out (server log: $log)"

#!/usr/bin/env bash
# One GPU-host call for the server: build it from the carried .debs (scripts/gpu_host_env.sh),
# export the full-size FLUX.1-dev bundle (random bf16) while the server builds, then
#   a) server_overhead: 1024^2, 8 steps, 3 repeats, cuda:0 (engine direct vs through the server)
#   b) batching gain at 512^2: server_load on cuda:0, max_batch 1 then 4 (16 clients, 48 requests)
#   c) latency under load: 200 requests from 16 clients at 512^2, max_batch 4
#   d) two GPUs (only where `nvidia-smi -L` lists >= 2): cuda:0,cuda:1 against cuda:0 alone,
#      max_batch 4, 16 clients, 96 requests
#   e) where a batch's time goes (GPU only): engine_bench at 512^2, 8 steps, batch 1 and 4 (each
#      run twice, the second warm): text encode, denoise, decode, encode, wall
# Every step prints its table row; a summary table (with the b and d ratios) ends the run.
# Logs and JSON in <out_dir>. A failing step is reported and the next one runs.
#
# usage: bench/run_server_bench.sh <out_dir> <commit> [steps]   (steps: default "a b c d")
#   1 GPU:  bench/run_server_bench.sh OUT COMMIT       (d skips itself)
#   2 GPUs: bench/run_server_bench.sh OUT COMMIT d     (a-c and d together overrun 600 s)
# GRAT_BENCH_CPU=1: a dry run of the same logic on a CPU host (tiny bundle, cpu devices, 256^2,
# 2 steps; d runs on cpu,cpu).
#
# Time budget, one H100 call (hard limit 600 s; estimates: bundle load ~22 s per device and
# process, one 1024^2 step ~0.2 s, a 512^2 8-step image ~1 s alone, ~0.6 s in a batch of 4;
# the build took 2 min on a 2-core CPU host, CUDA on):
#   unpack .debs + configure                          ~30 s
#   build grat_kernels (sm_90a, 16 cores)             ~40 s
#   export (background, ~90 s) | server build (~30 s)  ~90 s        -> ~160 s
#   a) 2 loads + 12 images of 1024^2                  ~80 s         -> ~240 s
#   b) mb1: load + 4 warm-up + 48 images              ~80 s
#      mb4: load + 8 warm-up + 48 images              ~60 s         -> ~380 s
#   c) load + 8 warm-up + 200 images                  ~150 s        -> ~530 s
#   d) (2-GPU call, alone) 2 loads + 96 images; 1 load + 96 images  ~180 s after the build
# Each step runs under `timeout` so that the summary still prints by GRAT_BENCH_DEADLINE_S
# (default 580 s after the start); a step that does not fit is skipped and says so.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?out dir}
commit=${2:?commit}
steps=${3:-a b c d}
mkdir -p "$out"
out=$(cd "$out" && pwd)
deadline=${GRAT_BENCH_DEADLINE_S:-580}
source "$root/scripts/gpu_host_env.sh"

if [ "${GRAT_BENCH_CPU:-0}" = 1 ]; then
  build=/tmp/grat-srv-cpu
  extra_cmake=(-DGRAT_WITH_CUDA=OFF)
  export_args=(--preset flux-tiny --device cpu --out /tmp/grat-bench-tiny)
  bundle=/tmp/grat-bench-tiny
  dev0=cpu dev01=cpu,cpu big=256 size=256 nsteps=2 gpus=2
  export OMP_NUM_THREADS=1 GRAT_GPU_NAME=cpu
else
  build=/tmp/grat-srv
  extra_cmake=()
  export_args=(--preset flux-dev --device cuda --dtype bf16 --no-check --out /tmp/flux-dev-bundle)
  bundle=/tmp/flux-dev-bundle
  dev0=cuda:0 dev01=cuda:0,cuda:1 big=1024 size=512 nsteps=8
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  GRAT_GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  export GRAT_GPU_NAME
fi
echo "== $GRAT_GPU_NAME x$gpus, commit $commit, steps: $steps"

source "$root/bench/gpu_prepare.sh"
grat_prepare "$out" "$build" "$GRAT_GPU_CMAKE_ARGS_SERVER ${extra_cmake[*]}" "${export_args[@]}" ||
  exit 1
echo "== configured + kernels built at ${SECONDS}s; export in the background"
targets=(server_overhead server_load)
[ "${GRAT_BENCH_CPU:-0}" = 1 ] || targets+=(engine_bench)
ninja -C "$build" -j"$(nproc)" "${targets[@]}" >"$out/build_server.log" 2>&1 ||
  { grep -E "error|FAILED" "$out/build_server.log" | head; }
echo "== server built at ${SECONDS}s"
wait "$export_pid" || { echo "export FAILED:"; tail -5 "$out/export.log"; }
grep -v -i warn "$out/export.log" | tail -2
echo "== bundle ready at ${SECONDS}s"

failed=""
# run_step NAME CMD...: the command under the time left, log in $out/NAME.log, rows printed.
run_step() {
  local name=$1
  shift
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "== $name: SKIPPED (out of time at ${SECONDS}s)"
    failed="$failed $name(skipped)"
    return
  fi
  echo "== $name (t=${SECONDS}s)"
  timeout -k 5 "$left" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  grep -v '^{"ts"' "$out/$name.log" | tail -6
  if [ "$rc" -ne 0 ]; then
    failed="$failed $name"
    echo "!! $name FAILED rc=$rc (124: out of time); log tail:"
    tail -5 "$out/$name.log"
  fi
}
load() {  # NAME ARGS...: server_load at $size, $nsteps, 16 clients
  local name=$1
  shift
  run_step "$name" "$build/server/server_load" --bundle "$bundle" --size "$size" \
    --steps "$nsteps" --clients 16 --batch-delay-ms 20 --out "$out/$name.json" --commit "$commit" "$@"
}

for s in $steps; do
  case $s in
    a) run_step a_overhead "$build/server/server_overhead" "$bundle" "$dev0" "$big" "$nsteps" 3 \
         "$out/a_overhead.json" "$commit" ;;
    b) load b_mb1 --devices "$dev0" --max-batch 1 --requests 48 --warmup 4
       load b_mb4 --devices "$dev0" --max-batch 4 --requests 48 --warmup 8 ;;
    c) load c_200 --devices "$dev0" --max-batch 4 --requests 200 --warmup 8 ;;
    d) if [ "$gpus" -ge 2 ]; then
         load d_2dev --devices "$dev01" --max-batch 4 --requests 96 --warmup 16
         load d_1dev --devices "$dev0" --max-batch 4 --requests 96 --warmup 8
       else
         echo "== d: skipped ($gpus GPU)"
       fi ;;
    e) if [ "${GRAT_BENCH_CPU:-0}" = 1 ]; then
         echo "== e: skipped (engine_bench needs CUDA)"
       else
         b1="$size:auto:1:$nsteps" b4="$size:auto:4:$nsteps"
         run_step e_stages "$build/bench/engine_bench" "$bundle" "$out/e_stages.json" "$commit" \
           - - "$b1,$b4,$b1,$b4"
       fi ;;
    *) echo "unknown step $s" ;;
  esac
done

echo "== summary (t=${SECONDS}s)"
python3 - "$out" <<'EOF' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
def get(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
a = get("a_overhead")
if a:
    print(f"a overhead {a['device']} {a['size']}^2 {a['steps']} steps: engine {a['engine_median_s']:.3f} s, "
          f"other thread {a['engine_other_thread_median_s']:.3f} s, server {a['server_median_s']:.3f} s "
          f"({a['overhead_percent']:+.1f}% / {a['overhead_vs_other_thread_percent']:+.1f}%)")
print(f"{'step':8} {'devices':16} {'mb':>3} {'req':>4} {'ok':>4} {'fail':>4} {'img/s':>7} "
      f"{'p50_s':>7} {'p90_s':>7} {'p99_s':>7} {'queue_s':>7} {'batch':>5}")
rows = {}
for name in ["b_mb1", "b_mb4", "c_200", "d_1dev", "d_2dev"]:
    r = get(name)
    if not r:
        continue
    rows[name] = r
    p = r["params"]
    print(f"{name:8} {p['devices']:16} {p['max-batch']:>3} {p['requests']:>4} {r['ok']:>4} "
          f"{r['failures']:>4} {r['throughput_images_per_s']:7.3f} {r['latency_p50_s']:7.3f} "
          f"{r['latency_p90_s']:7.3f} {r['latency_p99_s']:7.3f} {r['queue_wait_mean_s']:7.3f} "
          f"{r['mean_batch_size']:5.2f}")
def ratio(label, num, den):
    if num in rows and den in rows and rows[den]["throughput_images_per_s"] > 0:
        x = rows[num]["throughput_images_per_s"] / rows[den]["throughput_images_per_s"]
        print(f"{label}: {x:.2f}x")
ratio("batching gain (b: max_batch 4 / 1)", "b_mb4", "b_mb1")
ratio("two devices (d: 2 / 1)", "d_2dev", "d_1dev")
EOF
echo "== done at ${SECONDS}s${failed:+; failed or skipped:$failed}"
[ -z "$failed" ]

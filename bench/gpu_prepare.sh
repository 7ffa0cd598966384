#!/usr/bin/env bash
# Sourced by the GPU-host benchmark scripts (after scripts/gpu_host_env.sh): one way to
# configure, build the kernels library and start the bundle export (it needs the library)
# in the background while the caller builds the rest.
#   grat_prepare OUT BUILD "CMAKE ARGS" EXPORT_ARGS...
# Sets $lib (the kernels library) and $export_pid; logs cmake.log / build_kernels.log /
# export.log in OUT; returns 1 (printing the error) if configuring or building fails.
grat_prepare() {
  local out=$1 build=$2 cmake_args=$3
  shift 3
  local src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$build" $cmake_args >"$out/cmake.log" 2>&1 ||
    { tail -30 "$out/cmake.log"; return 1; }
  ninja -C "$build" grat_kernels >"$out/build_kernels.log" 2>&1 ||
    { grep -E "error|FAILED" "$out/build_kernels.log" | head; return 1; }
  lib="$build/kernels/libgrat_kernels.so"
  (cd "$src" && GRAT_OPS_LIB="$lib" python3 -m models.export "$@") >"$out/export.log" 2>&1 &
  export_pid=$!
}

# The engine suites' set-up (run_gpu_suite.sh, run_kernel_suite.sh): the default GPU build in
# /tmp/grat-suite and the full-size FLUX.1-dev bundle (random bf16) exported from it.
#   grat_prepare_flux_suite OUT
# Sets $build and $bundle besides grat_prepare's $lib and $export_pid.
grat_prepare_flux_suite() {
  build=/tmp/grat-suite
  bundle=/tmp/flux-dev-bundle
  grat_prepare "$1" "$build" "$GRAT_GPU_CMAKE_ARGS" --preset flux-dev --device cuda --dtype bf16 \
    --no-check --out "$bundle"
}

# Background chains that outlive one device call (run_video_suite.sh, run_video_bench.sh):
#   grat_chain_start WORK LOGS      runs WORK/chain.sh detached, output in LOGS/suite.log
#   grat_chain_wait WORK LOGS SECS  waits until it printed SUITE-DONE or ended (at most SECS),
#                                   copies LOGS into $OUT and prints the log's tail
#   grat_chain_until_done WORK LOGS SECS   the waiting alone (run_default_model.sh packs LOGS
#                                          itself, within the device tool's file limits)
grat_chain_start() {
  setsid bash "$1/chain.sh" >"$2/suite.log" 2>&1 </dev/null &
  echo "started"
}
grat_chain_until_done() {
  local work=$1 logs=$2 limit=$3 start
  start=$(date +%s)
  while ! grep -q SUITE-DONE "$logs/suite.log" 2>/dev/null && pgrep -f "$work/chain.sh" >/dev/null; do
    [ $(($(date +%s) - start)) -ge "$limit" ] && break
    sleep 5
  done
}
grat_chain_wait() {
  grat_chain_until_done "$1" "$2" "$3"
  local logs=$2
  cp "$logs"/* "${OUT:-/tmp}/" 2>/dev/null || true
  grep -v '^\[' "$logs/suite.log" | tail -40
}

# The source a chain builds (run_default_model.sh, run_step_speed.sh): .src/src.tar when
# carried (`git archive COMMIT >.src/src.tar`: exactly that commit, whereas the device copies
# the working tree with its uncommitted edits and a stale .git), else a copy of the tree.
#   grat_chain_src ROOT WORK    fills WORK/src (with ROOT/.debs)
grat_chain_src() {
  local root=$1 work=$2
  if [ -f "$root/.src/src.tar" ]; then
    mkdir "$work/src" && tar -C "$work/src" -xf "$root/.src/src.tar"
    cp -r "$root/.debs" "$work/src/.debs"
  else
    cp -r "$root" "$work/src"
  fi
}
# After grat_chain_until_done: suite.log and the rest of LOGS as results.tgz into $OUT.
grat_chain_pack() {
  local logs=$1 dest=${OUT:-/tmp}
  cp "$logs/suite.log" "$dest/"
  tar -C "$logs" -czf "$dest/results.tgz" --exclude suite.log .
}

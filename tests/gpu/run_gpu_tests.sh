#!/usr/bin/env bash
# Builds grat_kernels with CUDA and runs the GPU tests: correctness over a grid of layouts,
# then compute-sanitizer memcheck and racecheck on a small case.
# Usage: tests/gpu/run_gpu_tests.sh [build-dir]   (default /tmp/grat-gpu-build)
# Env: CUDA_ARCH (default 90a;80), SKIP_BUILD=1 to reuse the build dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-/tmp/grat-gpu-build}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$root/tests/gpu" -B "$build" -G Ninja \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a;80}" >/dev/null
  ninja -C "$build" grat_kernels
fi
lib="$build/kernels/libgrat_kernels.so"
test="$root/tests/gpu/test_attention_gpu.py"
python3 "$test" "$lib" --errors-only
python3 "$test" "$lib"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool (small case)"
    compute-sanitizer --tool "$tool" --error-exitcode 3 python3 "$test" "$lib" --small
  done
else
  echo "compute-sanitizer not found: sanitizer checks skipped" >&2
fi
echo "GPU tests passed"

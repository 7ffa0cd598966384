#!/usr/bin/env bash
# Builds grat_kernels with CUDA (kernels-only CMake project in this folder) and runs the GPU
# tests: unsupported-input errors, correctness over a grid of layouts on every CUDA path, the
# fused elementwise ops against their CPU reference, then compute-sanitizer memcheck and
# racecheck on small cases. Every step runs; the exit status is non-zero if any failed.
# Usage: tests/gpu/run_gpu_tests.sh [build-dir]   (default /tmp/grat-gpu-build)
# Env: CUDA_ARCH (default "90a;80"), SKIP_BUILD=1 to reuse the build dir.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-/tmp/grat-gpu-build}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$root/tests/gpu" -B "$build" -G Ninja \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a;80}" >/dev/null || exit 1
  ninja -C "$build" grat_kernels || exit 1
fi
lib="$build/kernels/libgrat_kernels.so"
test="$root/tests/gpu/test_attention_gpu.py"
fused="$root/tests/gpu/test_fused_gpu.py"
failed=()
echo "== unsupported inputs must raise"
python3 "$test" "$lib" --errors-only || failed+=(errors)
echo "== correctness"
python3 "$test" "$lib" || failed+=(correctness)
echo "== fused elementwise ops"
python3 "$fused" "$lib" || failed+=(fused)
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool (small case)"
    compute-sanitizer --tool "$tool" --error-exitcode 3 python3 "$test" "$lib" --small ||
      failed+=("$tool")
    echo "== compute-sanitizer --tool $tool (fused ops, small cases)"
    compute-sanitizer --tool "$tool" --error-exitcode 3 python3 "$fused" "$lib" --small ||
      failed+=("fused-$tool")
  done
else
  echo "compute-sanitizer not found: sanitizer checks skipped" >&2
fi
if ((${#failed[@]})); then
  echo "GPU tests FAILED: ${failed[*]}"
  exit 1
fi
echo "GPU tests passed"

#!/usr/bin/env bash
# Configures and builds into build/ (BUILD_DIR to override). Extra args go to CMake.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${gen[@]}" "$@"
elif [ "$#" -gt 0 ]; then
  cmake "$build" "$@"
fi
cmake --build "$build" --parallel "${JOBS:-$(nproc)}"

#!/usr/bin/env bash
# One command from a fresh machine to a passing test run: deps, build, every CPU test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/scripts/build.sh"
cd "${BUILD_DIR:-$root/build}"
ctest --output-on-failure --label-exclude gpu -j "${JOBS:-$(nproc)}"

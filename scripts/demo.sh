#!/usr/bin/env bash
# The main job until the server exists: deps, build, then GRAT attention on the CPU next
# to full attention.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/scripts/build.sh"
"${BUILD_DIR:-$root/build}/kernels/grat_demo"

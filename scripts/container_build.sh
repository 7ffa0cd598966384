#!/usr/bin/env bash
# Builds the container image with buildah, no daemon needed: the base image first where it is
# missing (scripts/container_base.sh), then the Dockerfile with chroot isolation. Caches, so a
# second build in the same run (or on the same machine) is quick: every step's layer
# (--layers: an unchanged scripts/install_deps.sh and requirements reuse the installed build
# stage; unchanged sources reuse the whole image), and pip's downloads, in a folder on the host
# bind-mounted into the build (GRAT_CONTAINER_CACHE, default /var/cache/gratserve-container).
#   scripts/container_build.sh [TAG]    TAG defaults to gratserve:latest, the image that
#                                       deploy/k8s runs
# With Docker instead: docker build -t gratserve:latest .
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-gratserve:latest}"
cache="${GRAT_CONTAINER_CACHE:-/var/cache/gratserve-container}"
mkdir -p "$cache/pip"
"$root/scripts/container_base.sh"
# pip behind a TLS-intercepting proxy: the CA bundle the host's pip is told to use.
extra=()
cert="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
if [ -n "$cert" ] && [ -f "$cert" ]; then
  extra+=(-v "$(readlink -f "$cert"):/run/pip-ca.crt:ro" --build-arg PIP_CERT=/run/pip-ca.crt)
fi
start=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --force-rm: a failed step leaves no working container behind.
buildah bud --isolation chroot --format docker --layers --force-rm \
  -v "$cache/pip:/root/.cache/pip" "${extra[@]}" \
  -t "$tag" -f "$root/Dockerfile" "$root" 2>&1 | tee "$log"
echo "container_build: $tag in $((SECONDS - start)) s," \
  "$(buildah images --format '{{.Size}}' "$tag" | head -1)"
# Disk: keep the layers this build made or reused (the cache for the next build), drop the
# untagged ones earlier builds left (each source change leaves ~8 GB of them).
used=$(grep -oE '^--> (Using cache )?[0-9a-f]{11,}' "$log" | grep -oE '[0-9a-f]{11,}$' | cut -c1-12 || true)
for id in $(buildah images --filter dangling=true --format '{{.ID}}'); do
  case " $(echo $used) " in *" ${id:0:11}"*) continue ;; esac
  buildah rmi "$id" >/dev/null 2>&1 || true
done

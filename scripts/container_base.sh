#!/usr/bin/env bash
# Makes the Dockerfile's base image locally, for machines that cannot pull it (CI here):
# Debian bookworm, variant minbase, by debootstrap from the Debian mirror apt uses, trimmed as
# Debian's official slim images are (no docs, man pages or locales; apt keeps no lists or
# .debs), and tagged with the exact name the Dockerfile's FROM uses, so that the same
# Dockerfile pulls the real image anywhere else. Skipped when that image is already in
# buildah's storage (FORCE=1 remakes it).
#   scripts/container_base.sh [IMAGE]     IMAGE defaults to the Dockerfile's BASE_IMAGE
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${1:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$root/Dockerfile")}"
[ -n "$image" ] || { echo "container_base: no ARG BASE_IMAGE in Dockerfile" >&2; exit 1; }
suite=bookworm

if [ "${FORCE:-0}" != 1 ] && buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "container_base: $image already present"
  exit 0
fi
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "container_base: no $tool (scripts/install_deps.sh)" >&2; exit 1; }
done

# The mirror apt already uses (first non-security Debian URI), else deb.debian.org.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
           2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 |
           tr -d ' ' || true)
mirror="${mirror:-http://deb.debian.org/debian}"

work=$(mktemp -d /var/tmp/grat-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; echo "container_base: debootstrap failed" >&2; exit 1; }
r="$work/rootfs"
# As the official image: deb822 sources with updates and security, and the slim settings.
rm -f "$r/etc/apt/sources.list"
cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
echo 'APT::AutoRemove::SuggestsImportant "false";' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$r/usr/share/man/"* "$r/usr/share/info/"* "$r/usr/share/locale/"* \
  "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"* \
  "$r/var/log/"*.log "$r/var/log/apt/"* "$r/tmp/"* "$r/root/".bash_history
: >"$r/etc/machine-id"
tar -C "$r" --numeric-owner -cf "$work/rootfs.tar" .
cat >"$work/Containerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
CMD ["bash"]
EOF
buildah bud --quiet --isolation chroot --format docker -t "$image" -f "$work/Containerfile" "$work" >/dev/null
echo "container_base: $image from debootstrap ($suite, minbase, $mirror) in $((SECONDS - start)) s," \
  "$(buildah images --format '{{.Size}}' "$image" | head -1)"

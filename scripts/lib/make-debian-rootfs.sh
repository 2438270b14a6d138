#!/usr/bin/env bash
# make-debian-rootfs.sh OUT.tar [SUITE]
#
# Writes a Debian root filesystem as a plain tar for `stagefarm image import
# --rootfs` (scripts/demo.sh imports it as debian:bookworm): mmdebstrap's
# minbase variant of SUITE (default bookworm), the packages of priority
# required plus apt, the same set as the docker.io debian image.
#
# The image's /etc/apt/sources.list names the archive it was made from
# ($DEBIAN_MIRROR, default http://deb.debian.org/debian, with SUITE-updates,
# and SUITE-security from $DEBIAN_SECURITY_MIRROR), so `apt-get update` in a
# RUN step reaches the same archive as this machine. /etc/resolv.conf and
# /etc/hostname are left empty and /dev without entries (the sandbox mounts
# its own), so nothing of this host ends up in the image. Like the docker.io
# debian images (debuerreotype), apt keeps no .deb files or package caches and
# fetches no translations, so an `apt-get install` layer holds only what was
# installed (for gcc: ~190 MB instead of ~350 MB), and dpkg does not fsync
# every file it unpacks (force-unsafe-io: a layer is written once, at the end
# of the step; mmdebstrap itself runs dpkg so too, --dpkgopt, whose file the
# last hook removes).
#
# Certificate authorities this machine added locally (the .crt files in
# /usr/local/share/ca-certificates, e.g. a company proxy's that intercepts
# TLS) are copied to the same place in the image, so a RUN step that installs
# ca-certificates trusts what this machine trusts (the npm registry in
# examples/ts-app). A plain Debian machine has none, and nothing is copied.
#
# Reproducible for a given state of the archive: file times are
# SOURCE_DATE_EPOCH (default 2023-06-10, bookworm's release), and mmdebstrap
# removes its logs and caches. A new point release or security update changes
# the packages and so the bytes. About 20 s to 3 min, mostly downloading
# ~30 MB of packages; needs mmdebstrap (scripts/lib/setup.sh installs it).
set -euo pipefail

out=${1:?usage: make-debian-rootfs.sh OUT.tar [SUITE]}
suite=${2:-bookworm}
case $out in /*) ;; *) out=$PWD/$out ;; esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1686355200}

if ! command -v mmdebstrap >/dev/null; then
  echo "make-debian-rootfs: mmdebstrap is not installed (scripts/lib/setup.sh installs it)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/debian-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/docker-clean" <<'APT'
// As in the docker.io debian images: no .deb files or caches left in a layer.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
cat >"$work/docker-gzip-indexes" <<'APT'
// As in the docker.io debian images: package lists stay compressed on disk.
Acquire::GzipIndexes "true";
APT
cat >"$work/docker-no-languages" <<'APT'
// As in the docker.io debian images: no translations downloaded.
Acquire::Languages "none";
APT
cat >"$work/docker-apt-speedup" <<'DPKG'
# As in the docker.io debian images: no fsync for every unpacked file.
force-unsafe-io
DPKG
chmod 0644 "$work"/docker-*

local_cas=(/usr/local/share/ca-certificates/*.crt)
ca_hooks=()
if [ -e "${local_cas[0]}" ]; then
  ca_hooks=(--customize-hook="mkdir -p \"\$1/usr/local/share/ca-certificates\" && cp ${local_cas[*]} \"\$1/usr/local/share/ca-certificates/\"")
fi

mkdir -p "$(dirname "$out")"
rm -f "$out.partial"
mmdebstrap --quiet --mode=root --variant=minbase --format=tar --dpkgopt=force-unsafe-io \
  --customize-hook=': >"$1/etc/resolv.conf"' \
  --customize-hook='echo localhost >"$1/etc/hostname"' \
  --customize-hook="cp $work/docker-clean $work/docker-gzip-indexes $work/docker-no-languages \"\$1/etc/apt/apt.conf.d/\"" \
  --customize-hook="cp $work/docker-apt-speedup \"\$1/etc/dpkg/dpkg.cfg.d/\"" \
  "${ca_hooks[@]}" \
  --customize-hook='rm -f "$1"/var/cache/apt/*.bin "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap' \
  "$suite" "$out.partial" \
  "deb $mirror $suite main" \
  "deb $mirror $suite-updates main" \
  "deb $security $suite-security main"
# mmdebstrap writes the device nodes of /dev into the tar; a container
# runtime mounts its own /dev, and images carry none.
tar --delete --file "$out.partial" --wildcards './dev/?*'
mv "$out.partial" "$out"
echo "make-debian-rootfs: wrote $out ($suite from $mirror)" >&2

#!/usr/bin/env bash
# make-busybox-rootfs.sh OUT.tar
#
# Writes the root filesystem of the fidelity cases' "busybox" base image as a
# plain tar (the image described in ../shared/fidelity/README.md, "Base
# image"): /bin/busybox from Debian's busybox-static, every applet an absolute
# symlink to /bin/busybox (what `busybox --install -s` makes), the directories
# and /etc files a container runtime expects, and /etc/passwd and /etc/group
# (Debian's busybox has no adduser/addgroup). Entries sorted by name, owner
# 0:0, mtime 2000-01-01T00:00:00Z, GNU format: the same bytes on every run.
#
# The binary comes from $BUSYBOX_DEB when that names a busybox-static .deb,
# otherwise from the installed busybox-static package (scripts/lib/setup.sh
# installs it), so no network is needed. The cases' listings were made with
# 1:1.35.0-4+deb12u1+b1; another version changes their /bin/busybox line.
set -euo pipefail

out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
case $out in /*) ;; *) out=$PWD/$out ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/busybox-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

if [ -n "${BUSYBOX_DEB:-}" ]; then
  dpkg-deb -x "$BUSYBOX_DEB" "$work/deb"
  busybox=$work/deb/bin/busybox
  version=$(dpkg-deb -f "$BUSYBOX_DEB" Version)
else
  if ! version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null) || [ -z "$version" ]; then
    echo "make-busybox-rootfs: busybox-static is not installed (scripts/lib/setup.sh installs it)" >&2
    exit 1
  fi
  busybox=/bin/busybox
fi

mkdir -p "$root"
for dir in bin sbin usr usr/bin usr/sbin usr/local usr/local/bin lib etc home var var/spool \
           var/spool/mail var/www dev proc sys run; do
  install -d -m 0755 "$root/$dir"
done
install -d -m 0700 "$root/root"
install -d -m 1777 "$root/tmp"
install -m 0755 "$busybox" "$root/bin/busybox"

"$root/bin/busybox" --list-full | while read -r applet; do
  if [ "$applet" != bin/busybox ]; then
    mkdir -p "$root/$(dirname "$applet")"
    ln -sfn /bin/busybox "$root/$applet"
  fi
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
GROUP
# Present in the image so a runtime's bind mounts over them leave nothing in a layer.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
echo busybox >"$root/etc/hostname"
chmod 0644 "$root"/etc/{passwd,group,hosts,resolv.conf,hostname}

mkdir -p "$(dirname "$out")"
tar --create --file "$out.partial" --directory "$root" --sort=name --format=gnu \
  --numeric-owner --owner=0 --group=0 --mtime='2000-01-01 00:00:00Z' .
mv "$out.partial" "$out"
echo "make-busybox-rootfs: wrote $out (busybox-static $version)" >&2

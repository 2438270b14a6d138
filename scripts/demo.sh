#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, builds
# stagefarm, makes a busybox base image from Debian's busybox-static (no
# network), imports it, builds the examples with `stagefarm build`, and runs
# the diamond example's image with runc.
#
# STAGEFARM_HOME (default /var/tmp/stagefarm-demo) holds the local store; the
# images are also written to $STAGEFARM_HOME/out/ as OCI layouts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
stagefarm_setup
stagefarm="$STAGEFARM_BUILD/bin/stagefarm"
export STAGEFARM_HOME="${STAGEFARM_HOME:-/var/tmp/stagefarm-demo}"
out="$STAGEFARM_HOME/out"
mkdir -p "$out"

echo "== base image: busybox from Debian's busybox-static"
if ! "$stagefarm" image inspect busybox >/dev/null 2>&1; then
  "$STAGEFARM_ROOT/scripts/lib/make-busybox-rootfs.sh" "$out/busybox-rootfs.tar"
  "$stagefarm" image import --rootfs \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "$out/busybox-rootfs.tar" busybox
fi

for example in diamond heredoc-app; do
  echo "== stagefarm build examples/$example"
  "$stagefarm" build -t "$example:demo" --output "type=oci,dest=$out/$example/" \
    "$STAGEFARM_ROOT/examples/$example" | tee "$out/$example.digest"
done

echo "== running diamond:demo with runc"
bundle="$out/diamond-bundle"
rm -rf "$bundle"
umoci --log error unpack --image "$out/diamond:demo" "$bundle" >/dev/null
# umoci's runtime config asks for a terminal; the demo prints to a pipe.
python3 - "$bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
json.dump(config, open(path, "w"))
EOF
runc run --bundle "$bundle" "stagefarm-demo-$$"
rm -rf "$bundle"

echo "== images"
"$stagefarm" image ls
echo "diamond:demo is $(cat "$out/diamond.digest")"

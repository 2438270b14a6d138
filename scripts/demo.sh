#!/usr/bin/env bash
# scripts/demo.sh [EXAMPLE]
#
# The main job, end to end on a fresh Debian 12 machine (root; no network but
# Debian's archive, and the npm registry for ts-app):
#   1. installs the Debian packages that are missing and builds stagefarm;
#   2. makes the base images from Debian packages and imports them, once:
#      busybox from busybox-static, debian:bookworm with mmdebstrap
#      (scripts/lib/make-*-rootfs.sh);
#   3. builds examples/EXAMPLE (default c-project) with a plain `stagefarm
#      build`: the embedded cluster, a coordinator and two worker processes,
#      with the live progress view on a terminal (plain lines otherwise) that
#      says which worker runs each stage;
#   4. runs the image's program with umoci and runc, and prints the image
#      digest and where the build's timeline is: `--trace` writes it to
#      $STAGEFARM_HOME/out/trace.json (docs/user-guide.md says how to open it).
# EXAMPLE is c-project, go-service (run as a server and asked once with
# curl) or ts-app. The first run takes a few minutes on a 2-core machine
# (README.md has figures); a second run is cached and takes seconds.
#
# STAGEFARM_HOME (default /var/tmp/stagefarm-demo) holds the local store and
# the cluster's data; the image is also written to $STAGEFARM_HOME/out/ as an
# OCI layout. STAGEFARM_BIN=DIR uses the stagefarm binaries in DIR (a build
# made elsewhere) instead of building this tree.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
example=${1:-c-project}
case $example in
  c-project | go-service | ts-app) ;;
  *) echo "usage: scripts/demo.sh [c-project|go-service|ts-app]" >&2; exit 2 ;;
esac
demo_start=$SECONDS
if [ -n "${STAGEFARM_BIN:-}" ]; then
  stagefarm_install_packages
  stagefarm="$STAGEFARM_BIN/stagefarm"
else
  stagefarm_setup
  stagefarm="$STAGEFARM_BUILD/bin/stagefarm"
fi
lib="$STAGEFARM_ROOT/scripts/lib"
export STAGEFARM_HOME="${STAGEFARM_HOME:-/var/tmp/stagefarm-demo}"
out="$STAGEFARM_HOME/out"
mkdir -p "$out"
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

echo "== base images, made from Debian packages (once: kept in the store)"
if ! "$stagefarm" image inspect busybox >/dev/null 2>&1; then
  "$lib/make-busybox-rootfs.sh" "$out/busybox-rootfs.tar"
  "$stagefarm" image import --rootfs --change "ENV PATH=$base_path" \
    "$out/busybox-rootfs.tar" busybox
  rm -f "$out/busybox-rootfs.tar"
fi
if ! "$stagefarm" image inspect debian:bookworm >/dev/null 2>&1; then
  echo "mmdebstrap --variant=minbase bookworm (downloads ~30 MB from Debian's archive)"
  "$lib/make-debian-rootfs.sh" "$out/debian-bookworm.tar" bookworm
  "$stagefarm" image import --rootfs --change "ENV PATH=$base_path" --change 'CMD ["bash"]' \
    "$out/debian-bookworm.tar" debian:bookworm
  rm -f "$out/debian-bookworm.tar"
fi
"$stagefarm" image ls

echo
echo "== stagefarm build examples/$example (embedded cluster: a coordinator and 2 workers)"
"$stagefarm" plan "$STAGEFARM_ROOT/examples/$example" | sed -n '/^waves/,$p'
build_start=$SECONDS
rm -rf "$out/$example"
# Progress goes to stderr (the live view on a terminal), the digest to stdout.
digest=$("$stagefarm" build -t "$example:demo" --output "type=oci,dest=$out/$example/" \
  --trace "$out/trace.json" "$STAGEFARM_ROOT/examples/$example")
build_seconds=$((SECONDS - build_start))

echo
echo "== running $example:demo with runc"
case $example in
  c-project)
    "$lib/run-oci-image.sh" "$out/$example:demo"
    ;;
  ts-app)
    "$lib/run-oci-image.sh" "$out/$example:demo" design:45m code:2.5h review:30m code:1h
    ;;
  go-service)
    port=${DEMO_PORT:-8080}
    name="stagefarm-demo-$$"
    "$lib/run-oci-image.sh" --host-network --env "PORT=$port" --name "$name" \
      "$out/$example:demo" &
    server=$!
    for _ in $(seq 100); do
      curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    echo "\$ curl 127.0.0.1:$port/"
    curl -sS "http://127.0.0.1:$port/"
    echo "\$ echo 'to be or not to be' | curl --data-binary @- 127.0.0.1:$port/count"
    echo 'to be or not to be' | curl -sS --data-binary @- "http://127.0.0.1:$port/count"
    runc kill "$name" TERM
    wait "$server"
    ;;
esac

echo
echo "== done in $((SECONDS - demo_start)) s (the build $build_seconds s)"
echo "$example:demo is $digest"
echo "its OCI layout: $out/$example/"
echo "the build's timeline: $out/trace.json (open it in https://ui.perfetto.dev, chrome://tracing"
echo "  or the Performance panel of Chromium's DevTools: docs/user-guide.md, Looking at a timeline)"

#!/usr/bin/env bash
# examples_test.sh --bin DIR
#
# Issue 7's acceptance for examples/: each example is built with `stagefarm
# build` on the embedded cluster (a coordinator and two worker processes) and
# its program is run from the exported OCI layout with umoci and runc
# (scripts/lib/run-oci-image.sh):
#   c-project   the three compile stages ran on both workers; textinfo prints
#               what each library computes (checked against known values)
#   go-service  `--target builder` stops at the builder (no final stage); the
#               full build reuses it; the server answers on 127.0.0.1 and
#               stops cleanly on SIGTERM
#   ts-app      only with STAGEFARM_EXAMPLES_TS=1 (Debian's npm is ~300
#               packages and `npm ci` needs the npm registry): the timesheet
#               CLI prints its sample day
# Base images are made from Debian packages: busybox from busybox-static,
# debian:bookworm with mmdebstrap. The debian rootfs tar is kept in
# $STAGEFARM_TEST_IMAGES (default /var/tmp/stagefarm-test-images) and reused
# for a week, since making it downloads ~30 MB; everything else lives in a
# temporary STAGEFARM_HOME removed at the end. Needs root, runc, umoci,
# mmdebstrap, curl and Debian's archive (the builds run apt-get).
# Ends with "N passed, N failed".
set -euo pipefail

bin=
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: examples_test.sh --bin DIR" >&2; exit 2 ;;
  esac
done
[ -n "$bin" ] || { echo "usage: examples_test.sh --bin DIR" >&2; exit 2; }
bin=$(cd "$bin" && pwd)
source_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lib=$source_root/scripts/lib
stagefarm=$bin/stagefarm
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

for tool in runc umoci mmdebstrap curl python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "examples_test: $tool is not installed (scripts/lib/setup.sh installs it)" >&2
    exit 1
  fi
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/stagefarm-examples.XXXXXX")
export STAGEFARM_HOME=$work/home
server_id="stagefarm-examples-go-$$"
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    runc kill "$server_id" KILL >/dev/null 2>&1 || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # The embedded cluster stops with its client; should the client have been
  # killed, its daemons are found by their data dirs under this test's home.
  local pid
  for pid in $(pgrep -f -- "--data-dir=$STAGEFARM_HOME/" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
elapsed() { echo "$((SECONDS - $1))s"; }

# build NAME LOG [stagefarm build flags...]: a build with JSON progress; the
# output and progress go to LOG, the image digest to stdout.
build() {
  local log=$1
  shift
  if ! "$stagefarm" build --progress json "$@" >"$log" 2>&1; then
    echo "stagefarm build $* failed:" >&2
    grep -v '"event":"log"' "$log" | tail -20 >&2
    return 1
  fi
  grep -o '^sha256:[0-9a-f]\{64\}$' "$log" | tail -1
}

# stage_workers LOG STAGE...: the workers that ran the stages, one a line.
stage_workers() {
  local log=$1
  shift
  python3 - "$log" "$@" <<'PY'
import json, sys
log, stages = sys.argv[1], set(sys.argv[2:])
for line in open(log):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("event") == "done" and event.get("stage_name") in stages:
        print(event.get("worker", ""))
PY
}

echo "== base images"
start=$SECONDS
"$lib/make-busybox-rootfs.sh" "$work/busybox.tar" 2>/dev/null
"$stagefarm" image import --rootfs --change "ENV PATH=$base_path" "$work/busybox.tar" busybox >/dev/null
images=${STAGEFARM_TEST_IMAGES:-/var/tmp/stagefarm-test-images}
mkdir -p "$images"
debian_tar=$images/debian-bookworm.tar
if [ -z "$(find "$debian_tar" -mtime -7 2>/dev/null)" ]; then
  "$lib/make-debian-rootfs.sh" "$debian_tar" bookworm
fi
"$stagefarm" image import --rootfs --change "ENV PATH=$base_path" --change 'CMD ["bash"]' \
  "$debian_tar" debian:bookworm >/dev/null
echo "base images in $(elapsed "$start")"

echo "== c-project"
start=$SECONDS
if digest=$(build "$work/c.log" -t textinfo:test --output "type=oci,dest=$work/c/" \
      "$source_root/examples/c-project"); then
  echo "c-project built in $(elapsed "$start"): $digest"
  workers=$(stage_workers "$work/c.log" wordcount crc32 base64 | sort -u | wc -l)
  if [ "$workers" -ge 2 ]; then
    pass "c-project: the compile stages ran on $workers workers"
  else
    fail "c-project: the compile stages ran on $workers worker(s), expected 2"
    grep '"event":"done"' "$work/c.log" >&2 || true
  fi
  output=$("$lib/run-oci-image.sh" "$work/c:test" 2>&1) || true
  expected="textinfo: three libraries, each built in its own stage
  wordcount  1 lines, 9 words, 44 bytes
  crc32      6d93c138
  base64     VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZwo="
  if [ "$output" = "$expected" ]; then
    pass "c-project: textinfo runs and prints each library's result"
  else
    fail "c-project: textinfo printed:"$'\n'"$output"
  fi
  output=$("$lib/run-oci-image.sh" "$work/c:test" hello stagefarm 2>&1) || true
  if grep -q 'crc32      96fea768' <<<"$output"; then
    pass "c-project: textinfo reads its arguments"
  else
    fail "c-project: textinfo hello stagefarm printed:"$'\n'"$output"
  fi
else
  fail "c-project: build"
fi

echo "== go-service"
start=$SECONDS
if build "$work/go-builder.log" --target builder -t wordcount-builder:test \
      "$source_root/examples/go-service" >/dev/null; then
  echo "go-service --target builder built in $(elapsed "$start")"
  stages=$(grep -c '"event":"done"' "$work/go-builder.log" || true)
  if [ "$stages" -eq 1 ] && grep -q '"stage_name":"builder"' "$work/go-builder.log" \
      && ! grep -q '"stage":1' "$work/go-builder.log"; then
    pass "go-service: --target builder builds the builder stage only"
  else
    fail "go-service: --target builder ran $stages stages"
  fi
else
  fail "go-service: --target builder"
fi
start=$SECONDS
if digest=$(build "$work/go.log" -t wordcount-service:test --output "type=oci,dest=$work/go/" \
      "$source_root/examples/go-service"); then
  echo "go-service built in $(elapsed "$start"): $digest"
  if grep -q '"stage_name":"builder".*"event":"cached"\|"event":"cached".*"stage_name":"builder"' \
      "$work/go.log"; then
    pass "go-service: the full build takes the builder from the cache"
  else
    fail "go-service: the full build ran the builder again"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$lib/run-oci-image.sh" --host-network --env "PORT=$port" --name "$server_id" "$work/go:test" \
    >"$work/server.log" 2>&1 &
  server_pid=$!
  up=0
  for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" = 1 ]; then
    pass "go-service: the server answers /healthz on 127.0.0.1:$port"
    counted=$(printf 'the cat and the hat\nThe end.\n' \
      | curl -fsS --data-binary @- "http://127.0.0.1:$port/count?top=2")
    if [ "$counted" = '{"lines":2,"words":7,"bytes":29,"top":[{"word":"the","count":3},{"word":"and","count":1}]}' ]; then
      pass "go-service: POST /count counts"
    else
      fail "go-service: POST /count answered $counted"
    fi
    if curl -fsS "http://127.0.0.1:$port/" | grep -q '^wordcount-service (go1\.'; then
      pass "go-service: / says what the service is"
    else
      fail "go-service: / did not answer as expected"
    fi
  else
    fail "go-service: the server did not answer within 10 s:"$'\n'"$(cat "$work/server.log")"
  fi
  runc kill "$server_id" TERM >/dev/null 2>&1 || true
  status=0
  wait "$server_pid" || status=$?
  server_pid=
  if [ "$up" = 1 ] && [ "$status" -eq 0 ] && grep -q 'wordcount-service stopped' "$work/server.log"; then
    pass "go-service: SIGTERM stops the server cleanly"
  elif [ "$up" = 1 ]; then
    fail "go-service: after SIGTERM the server exited $status:"$'\n'"$(cat "$work/server.log")"
  fi
else
  fail "go-service: build"
fi

if [ "${STAGEFARM_EXAMPLES_TS:-0}" = 1 ]; then
  echo "== ts-app"
  start=$SECONDS
  if digest=$(build "$work/ts.log" -t timesheet:test --output "type=oci,dest=$work/ts/" \
        "$source_root/examples/ts-app"); then
    echo "ts-app built in $(elapsed "$start"): $digest"
    output=$("$lib/run-oci-image.sh" "$work/ts:test" 2>&1) || true
    if grep -q '^total     5:00$' <<<"$output" && grep -q '^code      3:30   70%  4 hours$' <<<"$output"; then
      pass "ts-app: timesheet prints the sample day"
    else
      fail "ts-app: timesheet printed:"$'\n'"$output"
    fi
    if [ -z "$(find "$work/ts" -type f -size +1c -exec tar -tzf {} \; 2>/dev/null \
          | grep '^app/node_modules/typescript/' | head -1)" ]; then
      pass "ts-app: the image has no TypeScript (production dependencies only)"
    else
      fail "ts-app: the image holds node_modules/typescript"
    fi
  else
    fail "ts-app: build"
  fi
else
  echo "== ts-app skipped (STAGEFARM_EXAMPLES_TS=1 builds it)"
fi

echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

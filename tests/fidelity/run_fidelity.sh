#!/usr/bin/env bash
# run_fidelity.sh [options] [CASES_DIR]
#
# Builds every fidelity case (a directory holding a Dockerfile) with Buildah,
# the reference, and with stagefarm, from the same busybox base, and compares
# the images' canonical listings (files: type, mode, owner, content, link
# target; config). Case layout, staging and base image: the README of
# ../shared/fidelity/, the default CASES_DIR ($STAGEFARM_SHARED_DIR/fidelity,
# else SOURCE_ROOT/../shared/fidelity).
#
# Per case:
#   - with buildah.txt: Buildah's listing must equal buildah.txt (else the
#     harness or the base is wrong: "buildah-mismatch"), and stagefarm's must
#     equal Buildah's, except for the differences in buildah_departures.txt;
#   - with expected.txt (a case Buildah cannot build): stagefarm's listing
#     must equal expected.txt, with the same exceptions; Buildah is skipped.
# Prints one summary line per case (result: pass, fail, buildah-mismatch, or
# stagefarm-unavailable while `stagefarm build`/`image import` do not exist)
# and the differences; exits 0 only when every case passes.
#
# Options:
#   --only CASE        run only this case (repeatable)
#   --keep DIR         work in DIR and keep it (contexts, images, listings)
#   --stagefarm PATH   the stagefarm binary (default SOURCE_ROOT/build/bin/stagefarm)
#   --skip-buildah     do not run Buildah: compare stagefarm with buildah.txt
#                      or expected.txt directly (quicker while developing)
#
# Needs root (Buildah's chroot isolation), buildah, skopeo, python3, GNU tar.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_root=$(cd "$here/../.." && pwd)
listing_tool=$here/image_listing.py
departures=$here/buildah_departures.txt
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() {  # usage EXIT_CODE
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "$1"
}

only=()
keep=""
stagefarm=$source_root/build/bin/stagefarm
skip_buildah=0
cases_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --only) only+=("${2:?--only needs a case name}"); shift 2 ;;
    --keep) keep=${2:?--keep needs a directory}; shift 2 ;;
    --stagefarm) stagefarm=${2:?--stagefarm needs a path}; shift 2 ;;
    --skip-buildah) skip_buildah=1; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "run_fidelity: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$cases_dir" ] || usage 2; cases_dir=$1; shift ;;
  esac
done
cases_dir=${cases_dir:-${STAGEFARM_SHARED_DIR:-$source_root/../shared}/fidelity}
cases_dir=$(cd "$cases_dir" && pwd)

if [ -n "$keep" ]; then
  mkdir -p "$keep"
  work=$(cd "$keep" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/fidelity.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  trap 'exit 130' INT TERM  # so that the EXIT trap cleans up
fi

# ---------------------------------------------------------------------------

# Seconds since the epoch with microseconds.
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# stage_context CASE_DIR DEST: the README's "Staging the context", step by step.
# Returns non-zero when a step fails (callers run it where set -e does not apply).
stage_context() {
  local case_dir=$1 dest=$2
  rm -rf "$dest" && mkdir -p "$dest" || return
  if [ -d "$case_dir/context" ]; then
    cp -R "$case_dir/context/." "$dest/" || return
  fi
  if [ "$(id -u)" -eq 0 ]; then chown -R -h 0:0 "$dest" || return; fi
  find "$dest" -type d -exec chmod 0755 {} + &&
    find "$dest" -type f -perm /111 -exec chmod 0755 {} + &&
    find "$dest" -type f ! -perm /111 -exec chmod 0644 {} + &&
    chmod 0755 "$dest" || return
  if [ -f "$case_dir/prepare.sh" ]; then
    (cd "$dest" && sh "$case_dir/prepare.sh") ||
      { echo "run_fidelity: $case_dir/prepare.sh failed" >&2; return 1; }
  fi
}

# build_flags CASE_DIR: the case's -f, --build-arg and --target flags, one a line.
build_flags() {
  local case_dir=$1 line
  printf '%s\n' -f "$case_dir/Dockerfile"
  if [ -f "$case_dir/build-args" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in '' | '#'*) continue ;; esac
      printf '%s\n' --build-arg "$line"
    done <"$case_dir/build-args"
  fi
  if [ -f "$case_dir/target" ]; then
    printf '%s\n' --target "$(tr -d ' \t\r\n' <"$case_dir/target")"
  fi
}

# ---------------------------------------------------------------------------
# Buildah: vfs storage under $work, the base imported under both names.

buildah_ready=0
buildah_setup() {
  export CONTAINERS_STORAGE_CONF=$work/buildah/storage.conf
  mkdir -p "$work/buildah"
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "vfs"
graphroot = "$work/buildah/graph"
runroot = "$work/buildah/run"
EOF
  if buildah inspect --type image localhost/busybox:latest >/dev/null 2>&1; then
    buildah_ready=1
    return
  fi
  local container log=$work/buildah/import.log
  {
    container=$(buildah from scratch) &&
      buildah add --quiet "$container" "$work/base/busybox-rootfs.tar" / &&
      buildah config --env "PATH=$base_path" "$container" &&
      buildah commit --quiet --format docker "$container" localhost/busybox:latest &&
      buildah tag localhost/busybox:latest docker.io/library/busybox:latest &&
      buildah rm "$container"
  } >"$log" 2>&1 && buildah_ready=1
  if [ "$buildah_ready" -ne 1 ]; then
    echo "run_fidelity: importing the base into Buildah failed: $(tail -n 1 "$log")" >&2
  fi
}

# buildah_build CASE_DIR OUT_DIR: OUT_DIR/image (OCI layout, tag "case"), OUT_DIR/build.log.
buildah_build() {
  local case_dir=$1 out=$2 image flags
  image=localhost/fidelity-$(basename "$case_dir" | tr -c 'a-z0-9\n' '-'):latest
  mapfile -t flags < <(build_flags "$case_dir")
  stage_context "$case_dir" "$out/context" >"$out/build.log" 2>&1 || return
  # Buildah's chroot isolation re-executes a sealed memfd copy of itself; the kernel
  # sometimes refuses the seal with EBUSY ("sealing memfd copy: Device or resource
  # busy", seen once in CI). That is the reference tool failing before the step ran,
  # so it is retried, at most twice, and said in the log; any other failure is final.
  local attempt attempt_log=$out/build-attempt.log
  for attempt in 1 2 3; do
    buildah bud --isolation chroot --pull=never --format docker --layers "${flags[@]}" \
      -t "$image" "$out/context" >"$attempt_log" 2>&1
    local status=$?
    cat "$attempt_log" >>"$out/build.log"
    [ "$status" -eq 0 ] && break
    if [ "$attempt" -eq 3 ] || ! grep -q 'sealing memfd copy' "$attempt_log"; then
      return 1
    fi
    echo "run_fidelity: buildah's memfd seal failed transiently; building again" \
      >>"$out/build.log"
  done
  skopeo copy --quiet --format v2s2 "containers-storage:$image" "oci:$out/image:case" \
    >>"$out/build.log" 2>&1
}

# ---------------------------------------------------------------------------
# stagefarm: its own data dir under $work, the base imported as "busybox".

stagefarm_import_status=""  # empty: imported; otherwise why not
stagefarm_setup() {
  mkdir -p "$work/stagefarm"
  if [ ! -x "$stagefarm" ]; then
    stagefarm_import_status="no stagefarm binary at $stagefarm"
    return
  fi
  if ! STAGEFARM_HOME=$work/stagefarm/home "$stagefarm" image import --rootfs \
    --change "ENV PATH=$base_path" "$work/base/busybox-rootfs.tar" busybox \
    >"$work/stagefarm/import.log" 2>&1; then
    stagefarm_import_status=$(unavailable_or_failed "stagefarm image import" \
      "$work/stagefarm/import.log")
  fi
}

# unavailable_or_failed WHAT LOG: one line saying why WHAT did not work.
unavailable_or_failed() {
  if grep -q 'unknown command' "$2"; then
    echo "$1: not available"
  else
    echo "$1: failed: $(tail -n 1 "$2")"
  fi
}

# stagefarm_build CASE_DIR OUT_DIR: OUT_DIR/image (OCI layout), OUT_DIR/build.log.
stagefarm_build() {
  local case_dir=$1 out=$2 flags
  mapfile -t flags < <(build_flags "$case_dir")
  stage_context "$case_dir" "$out/context" >"$out/build.log" 2>&1 || return
  rm -rf "$out/image"
  STAGEFARM_HOME=$work/stagefarm/home "$stagefarm" build "${flags[@]}" \
    --output "type=oci,dest=$out/image/" "$out/context" >>"$out/build.log" 2>&1
}

# ---------------------------------------------------------------------------

list_image() {  # list_image IMAGE LISTING_FILE
  python3 "$listing_tool" show "$1" >"$2" 2>"$2.err"
}

# compare LOG A B [--allow FILE --case CASE]: diff A B into LOG; fails when they differ.
compare() {
  local log=$1
  shift
  python3 "$listing_tool" diff "$@" >"$log" 2>&1
}

case_dirs=()
for dir in "$cases_dir"/*/; do
  dir=${dir%/}
  [ -f "$dir/Dockerfile" ] || continue
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $(basename "$dir") "* ]]; then continue; fi
  case_dirs+=("$dir")
done
if [ ${#case_dirs[@]} -eq 0 ]; then
  echo "run_fidelity: no cases in $cases_dir${only:+ named ${only[*]}}" >&2
  exit 2
fi

mkdir -p "$work/base"
base_tar=$work/base/busybox-rootfs.tar
if [ ! -f "$base_tar" ]; then
  "$source_root/scripts/lib/make-busybox-rootfs.sh" "$base_tar"
fi
if [ "$skip_buildah" -eq 0 ]; then
  for tool in buildah skopeo; do
    command -v "$tool" >/dev/null ||
      { echo "run_fidelity: $tool is not installed (scripts/lib/setup.sh installs it)" >&2; exit 2; }
  done
  buildah_setup
fi
stagefarm_setup

row() { printf '%-28s %9s %11s  %s' "$@"; }  # row CASE BUILDAH_S STAGEFARM_S RESULT
row case "buildah s" "stagefarm s" result; echo
failures=0
summary=()
details=()
for case_dir in "${case_dirs[@]}"; do
  name=$(basename "$case_dir")
  out=$work/cases/$name
  rm -rf "$out"
  mkdir -p "$out/buildah" "$out/stagefarm"
  result=pass
  notes=()
  buildah_seconds=-
  stagefarm_seconds=-

  if [ -f "$case_dir/buildah.txt" ]; then
    expected=$case_dir/buildah.txt
  elif [ -f "$case_dir/expected.txt" ]; then
    expected=$case_dir/expected.txt
  else
    summary+=("$(row "$name" - - "error: no buildah.txt or expected.txt")")
    echo "${summary[-1]}"
    failures=$((failures + 1))
    continue
  fi

  # The reference: Buildah's own image, which must be the one buildah.txt lists.
  reference=$expected
  reference_name=$(basename "$expected")
  if [ "$skip_buildah" -eq 0 ] && [ "$expected" = "$case_dir/buildah.txt" ]; then
    if [ "$buildah_ready" -ne 1 ]; then
      result=fail
      notes+=("buildah: the base image could not be imported ($work/buildah/import.log)")
    else
      start=$(now)
      if buildah_build "$case_dir" "$out/buildah"; then
        buildah_seconds=$(elapsed "$start" "$(now)")
        if ! list_image "$out/buildah/image:case" "$out/buildah/listing.txt"; then
          result=fail
          notes+=("buildah: listing failed: $(cat "$out/buildah/listing.txt.err")")
        elif compare "$out/buildah/vs-buildah.txt.diff" "$expected" "$out/buildah/listing.txt"
        then
          reference=$out/buildah/listing.txt
          reference_name="Buildah's image"
          notes+=("buildah: listing = buildah.txt")
        else
          result="buildah-mismatch"
          notes+=("buildah: its listing differs from buildah.txt (the harness or the base is" \
            "wrong, not stagefarm):" "$(cat "$out/buildah/vs-buildah.txt.diff")")
        fi
      else
        buildah_seconds=$(elapsed "$start" "$(now)")
        result=fail
        notes+=("buildah: build failed:" "$(tail -n 20 "$out/buildah/build.log")")
      fi
    fi
  fi

  if [ "$skip_buildah" -eq 1 ]; then
    notes+=("buildah: skipped (--skip-buildah)")
  elif [ "$expected" != "$case_dir/buildah.txt" ]; then
    notes+=("buildah: skipped (the case has $reference_name)")
  fi

  # stagefarm against the reference.
  if [ -n "$stagefarm_import_status" ]; then
    if [[ $stagefarm_import_status == *"not available" ]]; then
      [ "$result" = pass ] && result="stagefarm-unavailable"
      notes+=("stagefarm build: not available ($stagefarm_import_status)")
    else
      [ "$result" = pass ] && result=fail
      notes+=("$stagefarm_import_status")
    fi
  else
    start=$(now)
    if stagefarm_build "$case_dir" "$out/stagefarm"; then
      stagefarm_seconds=$(elapsed "$start" "$(now)")
      if ! list_image "$out/stagefarm/image" "$out/stagefarm/listing.txt"; then
        [ "$result" = pass ] && result=fail
        notes+=("stagefarm: listing failed: $(cat "$out/stagefarm/listing.txt.err")")
      elif compare "$out/stagefarm/diff.txt" "$reference" "$out/stagefarm/listing.txt" \
        --allow "$departures" --case "$name"; then
        if [ -s "$out/stagefarm/diff.txt" ]; then
          notes+=("$(cat "$out/stagefarm/diff.txt")"
            "stagefarm: listing = $reference_name but for the allowed differences")
        else
          notes+=("stagefarm: listing = $reference_name")
        fi
      else
        [ "$result" = pass ] && result=fail
        notes+=("stagefarm: listing differs from $reference_name:" \
          "$(cat "$out/stagefarm/diff.txt")")
      fi
    else
      stagefarm_seconds=$(elapsed "$start" "$(now)")
      if grep -q 'unknown command' "$out/stagefarm/build.log"; then
        [ "$result" = pass ] && result="stagefarm-unavailable"
        notes+=("stagefarm build: not available")
      else
        [ "$result" = pass ] && result=fail
        notes+=("stagefarm build: failed:" "$(tail -n 20 "$out/stagefarm/build.log")")
      fi
    fi
  fi

  [ "$result" = pass ] || failures=$((failures + 1))
  summary+=("$(row "$name" "$buildah_seconds" "$stagefarm_seconds" "$result")")
  details+=("== $name: $result" "${notes[@]}")
  echo "${summary[-1]}"
done

echo
printf '%s\n' "${details[@]}"
echo
row case "buildah s" "stagefarm s" result; echo
printf '%s\n' "${summary[@]}"
echo "fidelity: $((${#case_dirs[@]} - failures))/${#case_dirs[@]} cases pass" \
  "(cases: $cases_dir; work: $work${keep:+, kept})"
[ "$failures" -eq 0 ]

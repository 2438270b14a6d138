#!/usr/bin/env bash
# build_bench.sh [options]
#
# The build engine's benchmarks (issue 5), each run with stagefarm and with
# Buildah (the reference: `buildah bud --isolation chroot --pull=never
# --format docker --layers`, vfs storage) in the same run, from the same
# busybox base (../shared/tools/make-busybox-base.sh), every build in fresh
# storage. Needs root, runc, buildah, skopeo, python3, GNU tar, zstd, mkfs.ext4 (and
# loop devices, for the file system the builders store on; see $fs below).
#
#   steps     per-step overhead: FROM busybox and N `RUN true` steps against
#             1, (t_N - t_1)/(N - 1); the same with `RUN touch /fK` (a layer
#             each); the floor: a bare `runc run` of /bin/true in a prepared
#             bundle
#   layer     layer creation: one RUN that copies SIZE bytes in FILES files
#             from a bind mount of the context into the image, against the
#             same RUN copying into a tmpfs mount (no layer); the difference
#             is the layer (diff, tar, digest, store). The data: see --data
#   export    the image of `layer` exported: stagefarm --output
#             type=oci,dest=X.tar,compression=gzip|zstd|uncompressed, against
#             `skopeo copy containers-storage:IMG oci-archive:X.tar` (gzip, and
#             --dest-compress-format zstd); and `zstd -3 -T2` of the same layer
#             alone (the compressor's own rate)
#   unpack    that gzip OCI tar (stagefarm's export, the same file for both)
#             brought in (stagefarm image import; skopeo copy into
#             containers-storage) then `FROM it` + `RUN true` built, against
#             `FROM busybox` + `RUN true`; and the snapshot unpack alone (the
#             build's "unpacking layer" to "unpacked layer" notes) against
#             the copy into containers-storage and GNU `tar -x` of the same
#             files uncompressed (the file system's rate)
#   fidelity  cold build of every case of ../shared/fidelity (context staged as
#             its README says; 10-heredoc: Buildah builds equivalent.Dockerfile)
#
# Prints one JSON line per measurement on stdout ({"bench":"build","name":...,
# "unit":..., "better":"lower|higher", "stagefarm":..., "buildah":...,
# "ratio": stagefarm/buildah, "load": 1-minute load average when it started,
# and extra fields}), then a summary table on stderr. MB is 10^6 bytes.
# Benchmarks are run by hand (figures in docs/BENCHMARKS.md); the ctest
# `bench.build_bench_smoke` runs --quick only to check the script works.
#
# Options:
#   --only LIST        comma-separated subset of steps,layer,export,unpack,fidelity
#   --steps N          RUN steps of the long Dockerfile (default 20)
#   --reps N           repetitions of each steps build, median kept (default 3)
#   --mb N             layer size in MB (default 500)
#   --files N          files in the layer (default 10000; --data synthetic only)
#   --data KIND        what the layer's files hold: "synthetic" (default):
#                      FILES seeded files, each half random bytes and half hex
#                      text of random bytes (about 3/4 of it left by gzip or
#                      zstd; hex is zstd's slow case); "usr": real files, an
#                      evenly spread sample of this machine's /usr (every k-th
#                      regular file of at most 16 MiB in sorted walk order,
#                      the last cut so the sample is exactly SIZE; a layer as
#                      a package install makes). The file count is in the
#                      layer's JSON line
#   --cases LIST       comma-separated fidelity cases (default: all)
#   --quick            tiny sizes: --steps 2 --reps 1 --mb 2 --files 100
#                      --cases 09-dockerignore
#   --keep DIR         work in DIR and keep it (logs, Dockerfiles, images)
#   --fs loop|root     where the builders store: a fresh ext4 on a loop device
#                      (default), or DIR's own file system (see $fs below)
#   --stagefarm PATH   the binary (default SOURCE_ROOT/build/bin/stagefarm)
#   --shared DIR       the shared directory (default $STAGEFARM_SHARED_DIR,
#                      else SOURCE_ROOT/../shared)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_root=$(cd "$here/.." && pwd)
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
buildah_flags=(--isolation chroot --pull=never --format docker --layers)

usage() {  # usage EXIT_CODE
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "$1"
}

only=steps,layer,export,unpack,fidelity
steps=20
reps=3
mb=500
files=10000
data=synthetic
cases=""
keep=""
fs_choice=loop
stagefarm=$source_root/build/bin/stagefarm
shared=${STAGEFARM_SHARED_DIR:-$source_root/../shared}
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    --mb) mb=${2:?}; shift 2 ;;
    --files) files=${2:?}; shift 2 ;;
    --data) data=${2:?}; shift 2 ;;
    --cases) cases=${2:?}; shift 2 ;;
    --quick) steps=2 reps=1 mb=2 files=100 cases=09-dockerignore; shift ;;
    --keep) keep=${2:?}; shift 2 ;;
    --fs) fs_choice=${2:?}; shift 2 ;;
    --stagefarm) stagefarm=${2:?}; shift 2 ;;
    --shared) shared=${2:?}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "build_bench: unknown argument $1" >&2; usage 2 ;;
  esac
done
[ "$steps" -ge 2 ] || { echo "build_bench: --steps must be at least 2" >&2; exit 2; }
case $data in
  synthetic | usr) ;;
  *) echo "build_bench: --data must be synthetic or usr, not $data" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "build_bench: needs root (runc, overlay mounts, buildah)" >&2; exit 2; }
for tool in runc buildah skopeo python3 tar mkfs.ext4 zstd; do
  command -v "$tool" >/dev/null || { echo "build_bench: $tool is not installed" >&2; exit 2; }
done
[ -x "$stagefarm" ] || { echo "build_bench: no stagefarm binary at $stagefarm" >&2; exit 2; }
stagefarm=$(cd "$(dirname "$stagefarm")" && pwd)/$(basename "$stagefarm")
shared=$(cd "$shared" && pwd)

if [ -n "$keep" ]; then
  mkdir -p "$keep"
  work=$(cd "$keep" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/build_bench.XXXXXX")
fi
# remove_later PATH...: moves each PATH that exists aside (renamed beside
# itself), to be removed once every measurement is done: on a file system
# without a journal, removing 10,000 files slows what makes files soon after
# it (see $fs below).
doomed=()
remove_later() {
  local path aside
  for path in "$@"; do
    [ -e "$path" ] || [ -L "$path" ] || continue
    aside=$(mktemp -u "$(dirname "$path")/.removed.XXXXXXXX")
    mv "$path" "$aside"
    doomed+=("$aside")
  done
}

# What the builders store and unpack, and the images they export, go to a
# file system of the run's own ($fs): a fresh ext4 (mkfs's defaults: a
# journal, no discard; inode tables written at mkfs) on a loop device with
# direct I/O (its writes reach the disk without a second page cache), gone
# when the run ends; logs stay in $work/runs. This machine's root file system
# has no journal and is mounted with discard; there, making files soon after
# many were removed is slow (ext4 checks the free inodes it considers for a
# recent removal), and `tar -x` of the layer's 10,000 files took 0.65 to
# 4.9 s in one session, slowest right after removals (docs/BENCHMARKS.md, "Where the
# builders store"). Without loop devices, $fs is a directory of $work (said on stderr).
fs=$work/fs
fs_mounted=""
! mountpoint -q "$fs" || umount "$fs"
remove_later "$fs" && rm -f "$fs.img" && mkdir -p "$fs"
on_exit() {
  if [ -n "$fs_mounted" ]; then
    umount "$fs" 2>/dev/null || umount -l "$fs" 2>/dev/null || true
    losetup -d "$fs_device" 2>/dev/null || true
    rm -f "$fs.img"
  fi
  [ -n "$keep" ] || rm -rf "$work"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
if [ "$fs_choice" = root ]; then
  fs_kind="$(df --output=source "$work" | tail -n 1) (--fs root)"
elif [ "$fs_choice" != loop ]; then
  echo "build_bench: --fs must be loop or root, not $fs_choice" >&2
  exit 2
elif truncate -s "$((mb * 24 + 4096))M" "$fs.img" &&
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$fs.img" 2>"$work/mkfs.log" &&
  fs_device=$(losetup --find --show --direct-io=on "$fs.img" 2>>"$work/mkfs.log") &&
  mount "$fs_device" "$fs" 2>>"$work/mkfs.log"; then
  fs_mounted=yes
  fs_kind="fresh ext4 on loop, direct I/O"
else
  rm -f "$fs.img"
  fs_kind="$(df --output=source "$work" | tail -n 1) (no loop device)"
  echo "build_bench: $(tail -n 1 "$work/mkfs.log"); builds store in $fs on $fs_kind" >&2
fi
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------
# Time and numbers.

now() { echo "${EPOCHREALTIME/,/.}"; }
load() { cut -d' ' -f1 /proc/loadavg; }
calc() { awk "BEGIN { printf \"%.6g\", $* }"; }  # calc EXPRESSION
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# stamp: each line of stdin to stdout, prefixed by the time it arrived.
stamp() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/,/.}" "$line"; done
}

# run_timed LOG CMD...: runs CMD with its stdout and stderr time-stamped into LOG,
# under /usr/bin/time, after a sync. Sets T_START, T_END (epoch seconds) and CPU (user + system
# seconds of CMD and its children). Fails, with LOG's tail on stderr, when CMD does.
run_timed() {
  local log=$1 status
  shift
  # What the previous command left dirty is written out first, untimed: its
  # writeback would otherwise run during this one (seen: stagefarm's layer
  # phase at 2.3-2.8 s in these runs against 1.3-1.4 s started clean).
  sync
  T_START=$(now)
  set +e
  { /usr/bin/time -f 'cpu %U %S' -o "$log.cpu" "$@" 2>&1; } | stamp >"$log"
  status=${PIPESTATUS[0]}
  set -e
  T_END=$(now)
  CPU=$(awk '/^cpu / { print $2 + $3 }' "$log.cpu")
  if [ "$status" -ne 0 ]; then
    echo "build_bench: failed ($status): $*" >&2
    tail -n 15 "$log" >&2
    return 1
  fi
}

# line_time LOG REGEX: the time stamp of the last line of LOG matching REGEX.
line_time() {
  awk -v re="$2" '{ t = $1; $1 = ""; if ($0 ~ re) last = t } END { if (last == "") exit 1; print last }' "$1"
}

# emit NAME UNIT BETTER STAGEFARM BUILDAH LOAD [EXTRA_JSON]: one JSON line, one table row.
summary=()
emit() {
  local ratio extra=${7:+,$7}
  ratio=$(calc "($5 > 0) ? $4 / $5 : 0")
  printf '{"bench":"build","name":"%s","unit":"%s","better":"%s","stagefarm":%s,"buildah":%s,"ratio":%s,"load":%s%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "$ratio" "$6" "$extra"
  summary+=("$(printf '%-34s %10s %10s %7s  %-8s %5s' "$1" "$4" "$5" "$ratio" "$2" "$6")")
}

# ---------------------------------------------------------------------------
# The base image and fresh storage for each builder.

base_tar=$work/base/busybox-rootfs.tar
if [ ! -f "$base_tar" ]; then
  if [ -z "${BUSYBOX_DEB:-}" ]; then
    for deb in /var/cache/apt/archives/busybox-static_*.deb; do
      [ -f "$deb" ] && export BUSYBOX_DEB=$deb
    done
  fi
  "$shared/tools/make-busybox-base.sh" "$base_tar" 2>"$work/base.log" ||
    { cat "$work/base.log" >&2; exit 1; }
fi

# sf_fresh DIR: a new stagefarm data dir, DIR/home (a link to a directory of
# $fs named like DIR), with the base as "busybox"; sets SF_HOME.
sf_fresh() {
  local home
  home=$fs/$(basename "$1")
  remove_later "$1" "$home" && mkdir -p "$1" "$home" && ln -s "$home" "$1/home"
  SF_HOME=$1/home
  STAGEFARM_HOME=$SF_HOME "$stagefarm" image import --rootfs --change "ENV PATH=$base_path" \
    "$base_tar" busybox >"$1/import.log" 2>&1 || { cat "$1/import.log" >&2; return 1; }
}

# bh_fresh DIR [nobase]: new vfs storage in a directory of $fs named like DIR
# (DIR/storage.conf, exported as CONTAINERS_STORAGE_CONF, names it), with the
# base as localhost/busybox and docker.io/library/busybox unless "nobase".
bh_fresh() {
  local container root
  root=$fs/$(basename "$1")
  remove_later "$1" "$root" && mkdir -p "$1" "$root"
  export CONTAINERS_STORAGE_CONF=$1/storage.conf
  printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' "$root" "$root" \
    >"$CONTAINERS_STORAGE_CONF"
  [ "${2:-}" != nobase ] || return 0
  {
    container=$(buildah from scratch) &&
      buildah add --quiet "$container" "$base_tar" / &&
      buildah config --env "PATH=$base_path" "$container" &&
      buildah commit --quiet --format docker "$container" localhost/busybox:latest &&
      buildah tag localhost/busybox:latest docker.io/library/busybox:latest &&
      buildah rm "$container"
  } >"$1/import.log" 2>&1 || { cat "$1/import.log" >&2; return 1; }
}

# sf_build DIR LOG ARGS...: `stagefarm build ARGS` in DIR's data dir, timed (run_timed).
sf_build() {
  local dir=$1 log=$2
  shift 2
  run_timed "$log" env STAGEFARM_HOME="$dir/home" "$stagefarm" build --progress plain "$@"
}
# bh_build LOG ARGS...: `buildah bud` with the reference flags, timed.
bh_build() {
  local log=$1
  shift
  run_timed "$log" buildah bud "${buildah_flags[@]}" "$@"
}
# bh_drop DIR: drops the Buildah storage made by bh_fresh DIR (its vfs layers
# can be large), not the logs: moved aside, removed at the end.
bh_drop() {
  remove_later "$fs/$(basename "$1")"
}

empty_ctx=$work/empty-context
mkdir -p "$empty_ctx"

# build_seconds BUILDER NAME DOCKERFILE [CONTEXT]: a cold build (fresh storage) of
# DOCKERFILE, logs under $work/runs/NAME.BUILDER; prints the seconds.
build_seconds() {
  local builder=$1 name=$2 file=$3 ctx=${4:-$empty_ctx} dir=$work/runs/$2.$1
  if [ "$builder" = stagefarm ]; then
    sf_fresh "$dir" && sf_build "$dir" "$dir/build.log" -f "$file" -t "bench-$name:latest" "$ctx" || return
  else
    bh_fresh "$dir" && bh_build "$dir/build.log" -f "$file" -t "localhost/bench-$name:latest" "$ctx" || return
    bh_drop "$dir"
  fi
  calc "$T_END - $T_START"
}

mkdir -p "$work/files" "$work/runs"

# ---------------------------------------------------------------------------
# steps: per-step overhead.

if wants steps; then
  {
    echo "FROM busybox"
    echo "RUN true"
  } >"$work/files/true-1.Dockerfile"
  {
    echo "FROM busybox"
    for ((i = 1; i <= steps; i++)); do echo "RUN true"; done
  } >"$work/files/true-$steps.Dockerfile"
  {
    echo "FROM busybox"
    echo "RUN touch /f1"
  } >"$work/files/touch-1.Dockerfile"
  {
    echo "FROM busybox"
    for ((i = 1; i <= steps; i++)); do echo "RUN touch /f$i"; done
  } >"$work/files/touch-$steps.Dockerfile"

  # The floor: runc run of /bin/true in a bundle made once from the base, with
  # `runc spec`'s defaults but the namespaces of a build step (pid, ipc, uts,
  # mount: the host's network, as RUN has by default); and with the defaults
  # unchanged (also a network and a cgroup namespace).
  bundle=$work/runc-bundle
  rm -rf "${bundle:?}" && mkdir -p "$bundle/rootfs"
  tar -xf "$base_tar" -C "$bundle/rootfs"
  (cd "$bundle" && runc spec)
  python3 - "$bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["args"] = ["/bin/true"]
spec["process"]["terminal"] = False
json.dump(spec, open(path[:-len("config.json")] + "default.json", "w"))
spec["linux"]["namespaces"] = [
    n for n in spec["linux"]["namespaces"] if n["type"] in ("pid", "ipc", "uts", "mount")]
json.dump(spec, open(path[:-len("config.json")] + "step.json", "w"))
EOF
  # runc_ms SPEC: the median of 20 runs with SPEC as the bundle's config.json, in ms.
  runc_ms() {
    local i start times=()
    cp "$bundle/$1" "$bundle/config.json"
    for ((i = 0; i < 20; i++)); do
      start=$(now)
      runc --root "$work/runc-root" run --bundle "$bundle" "build-bench-$$-$i" </dev/null
      times+=("$(calc "($(now) - $start) * 1000")")
    done
    median "${times[@]}"
  }
  runc_load=$(load)
  runc_ms=$(runc_ms step.json)
  runc_default_ms=$(runc_ms default.json)
  echo "steps: bare runc run of /bin/true: ${runc_ms} ms; ${runc_default_ms} ms with runc spec's namespaces (medians of 20, load $runc_load)" >&2

  for kind in true touch; do
    step_load=$(load)
    declare -A per_step=()
    for builder in stagefarm buildah; do
      one=() many=()
      for ((r = 1; r <= reps; r++)); do
        one+=("$(build_seconds "$builder" "$kind-1-$r" "$work/files/$kind-1.Dockerfile")")
        many+=("$(build_seconds "$builder" "$kind-$steps-$r" "$work/files/$kind-$steps.Dockerfile")")
      done
      t1=$(median "${one[@]}")
      tn=$(median "${many[@]}")
      per_step[$builder]=$(calc "($tn - $t1) / ($steps - 1) * 1000")
      echo "steps: $builder RUN $kind: 1 step ${t1}s (${one[*]}), $steps steps ${tn}s (${many[*]})" >&2
    done
    emit "step_overhead_run_$kind" ms lower "${per_step[stagefarm]}" "${per_step[buildah]}" \
      "$step_load" "\"steps\":$steps,\"reps\":$reps,\"runc_floor_ms\":$runc_ms,\"runc_default_spec_ms\":$runc_default_ms,\"runc_load\":$runc_load"
    unset per_step
  done
fi

# ---------------------------------------------------------------------------
# layer / export / unpack share one data set and one image.

if wants layer || wants export || wants unpack; then
  data_ctx=$work/data-context
  bytes=$((mb * 1000000))
  marker=$data_ctx/.complete-$data-$bytes-$([ "$data" = usr ] || echo "$files")
  if [ ! -f "$marker" ]; then
    rm -rf "$data_ctx" && mkdir -p "$data_ctx"
    python3 - "$data" "$data_ctx/data" "$bytes" "$files" >"$data_ctx/count" <<'EOF'
# Writes the layer's files under ROOT and prints how many.
# synthetic: FILES files (100 a directory), BYTES in all, seeded; each file
# half random bytes, half hex text of random bytes, so compressors have work.
# usr: an evenly spread sample of /usr (see --data), BYTES in all.
import os, random, shutil, sys
kind, root, total, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if kind == "synthetic":
    rng = random.Random(5)
    size = total // count
    for i in range(count):
        d = os.path.join(root, "d%03d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        n = size + (total - size * count if i == count - 1 else 0)
        half = n // 2
        body = rng.randbytes(half) + rng.randbytes((n - half + 1) // 2).hex().encode()[: n - half]
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(body)
    print(count)
    sys.exit(0)
candidates = []
for top, dirs, names in os.walk("/usr"):
    dirs.sort()
    for name in sorted(names):
        path = os.path.join(top, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        size = os.path.getsize(path)
        if 0 < size <= 16 << 20:
            candidates.append((path, size))
available = sum(size for _, size in candidates)
if available < total:
    sys.exit("build_bench: /usr has only %d bytes in files of at most 16 MiB" % available)
# Every step-th file first; the rest in order if that falls short.
step = max(1, available // total)
written = picked = 0
for path, size in candidates[::step] + candidates:
    if written == total:
        break
    target = os.path.join(root, os.path.relpath(path, "/usr"))
    if os.path.exists(target):
        continue
    os.makedirs(os.path.dirname(target), exist_ok=True)
    take = min(size, total - written)
    with open(path, "rb") as source, open(target, "wb") as out:
        out.write(source.read(take))
    shutil.copymode(path, target)
    written += take
    picked += 1
print(picked)
EOF
    touch "$marker"
  fi
  files=$(cat "$data_ctx/count")
  # The step prints a line when its process is done: the layer is made after it.
  printf 'FROM busybox\nRUN --mount=type=bind,target=/src mkdir -p /data && cp -a /src/data/. /data/ && echo copied-the-data\n' \
    >"$work/files/layer.Dockerfile"
  printf 'FROM busybox\nRUN --mount=type=bind,target=/src --mount=type=tmpfs,target=/data cp -a /src/data/. /data/ && echo copied-the-data\n' \
    >"$work/files/layer-tmpfs.Dockerfile"
fi

# sf_done LOG: seconds from the start of the last run_timed to the "done in" (or, for a
# stage the cache answered, "CACHED") line of LOG: the last stage finished, its layers
# written; compression and export follow.
sf_done() { calc "$(line_time "$1" '\] (done in |CACHED)') - $T_START"; }

if wants layer || wants export; then
  layer_load=$(load)
  # stagefarm: the tmpfs step (no layer), then the layer step; its image is
  # kept uncompressed in the store (tag bench-big) for the exports.
  dir=$work/runs/layer-tmpfs.stagefarm
  sf_fresh "$dir"
  sf_build "$dir" "$dir/build.log" -f "$work/files/layer-tmpfs.Dockerfile" "$data_ctx"
  sf_tmpfs_done=$(sf_done "$dir/build.log")
  sf_tmpfs_total=$(calc "$T_END - $T_START")
  remove_later "${dir:?}/home"
  big=$work/runs/layer.stagefarm
  sf_fresh "$big"
  sf_build "$big" "$big/build.log" -f "$work/files/layer.Dockerfile" -t bench-big:latest \
    --output "type=oci,dest=$fs/layer-image/,compression=uncompressed" "$data_ctx"
  done_s=$(sf_done "$big/build.log")
  sf_layer_s=$(calc "$done_s - $sf_tmpfs_done")
  sf_phase_s=$(calc "$(line_time "$big/build.log" '] layer sha256:') - $(line_time "$big/build.log" 'copied-the-data')")
  sf_layer_total=$(calc "$T_END - $T_START")
  grep -o 'layer sha256:.*' "$big/build.log" | tail -n 1 >&2 || true
  remove_later "$fs/layer-image"
  # The exports: FROM that image, one LABEL, an empty context. What follows the
  # stage ("done in") is compressing the layers, writing the tar and nothing else.
  printf 'FROM bench-big\nLABEL bench=export\n' >"$work/files/export.Dockerfile"
  declare -A sf_export_s=() sf_export_cpu=() sf_export_size=()
  for compression in uncompressed gzip zstd; do
    log=$big/export-$compression.log
    sf_build "$big" "$log" -f "$work/files/export.Dockerfile" \
      --output "type=oci,dest=$fs/big-$compression.tar,compression=$compression" "$empty_ctx"
    sf_export_s[$compression]=$(calc "$T_END - $T_START - $(sf_done "$log")")
    sf_export_cpu[$compression]=$CPU
    sf_export_size[$compression]=$(stat -c %s "$fs/big-$compression.tar")
  done
  remove_later "${big:?}/home"
  # Buildah: the same two steps; the image stays for the export.
  dir=$work/runs/layer-tmpfs.buildah
  bh_fresh "$dir"
  bh_build "$dir/build.log" -f "$work/files/layer-tmpfs.Dockerfile" -t localhost/bench-tmpfs "$data_ctx"
  bh_tmpfs_s=$(calc "$T_END - $T_START")
  bh_drop "$dir"
  dir=$work/runs/layer.buildah
  bh_fresh "$dir"
  bh_build "$dir/build.log" -f "$work/files/layer.Dockerfile" -t localhost/bench-big:latest "$data_ctx"
  bh_layer_s=$(calc "$T_END - $T_START - $bh_tmpfs_s")
  bh_phase_s=$(calc "$(line_time "$dir/build.log" '^ Successfully tagged') - $(line_time "$dir/build.log" 'copied-the-data')")
  if wants layer; then
    # From the step's last output line to the layer stored (stagefarm: its
    # "layer" note; Buildah: "Successfully tagged", after the commit). Neither
    # includes removing the container's or the context's files afterwards.
    emit layer_creation MB/s higher "$(calc "$mb / $sf_phase_s")" "$(calc "$mb / $bh_phase_s")" \
      "$layer_load" "\"fs\":\"$fs_kind\",\"data\":\"$data\",\"mb\":$mb,\"files\":$files,\"stagefarm_s\":$sf_phase_s,\"buildah_s\":$bh_phase_s"
    # The same as the difference between whole builds, layer step against tmpfs step.
    emit layer_creation_by_difference MB/s higher "$(calc "$mb / $sf_layer_s")" "$(calc "$mb / $bh_layer_s")" \
      "$layer_load" "\"stagefarm_s\":$sf_layer_s,\"buildah_s\":$bh_layer_s"
    # The whole cold build of the layer step (stagefarm: compressed to gzip at the end).
    emit layer_build_total s lower "$sf_layer_total" "$(calc "$T_END - $T_START")" "$layer_load" \
      "\"stagefarm_tmpfs_s\":$sf_tmpfs_total,\"buildah_tmpfs_s\":$bh_tmpfs_s"
  fi
  if wants export; then
    # The compressor alone, for zstd: `zstd -3 -T2` (stagefarm's level, both
    # cores) of the same layer tar, read from the page cache, written nowhere.
    layer_hex=$(grep -o 'layer sha256:[0-9a-f]*' "$big/build.log" | tail -n 1 | cut -d: -f2)
    tar -xf "$fs/big-uncompressed.tar" -C "$fs" "blobs/sha256/$layer_hex"
    cat "$fs/blobs/sha256/$layer_hex" >/dev/null
    run_timed "$work/runs/zstd-cli.log" sh -c "zstd -q -3 -T2 -c '$fs/blobs/sha256/$layer_hex' >/dev/null"
    zstd_cli_s=$(calc "$T_END - $T_START")
    remove_later "$fs/blobs"
    for compression in gzip zstd; do
      export_load=$(load)
      flags=()
      [ "$compression" = gzip ] || flags=(--dest-compress-format "$compression")
      run_timed "$dir/export-$compression.log" skopeo copy --quiet "${flags[@]}" \
        containers-storage:localhost/bench-big:latest "oci-archive:$fs/bh-big-$compression.tar"
      bh_s=$(calc "$T_END - $T_START")
      bh_size=$(stat -c %s "$fs/bh-big-$compression.tar")
      remove_later "$fs/bh-big-$compression.tar"
      sf_s=${sf_export_s[$compression]}
      # Cores busy while compressing: the CPU this export took beyond the uncompressed one's.
      sf_cores=$(calc "(${sf_export_cpu[$compression]} - ${sf_export_cpu[uncompressed]}) / ($sf_s - ${sf_export_s[uncompressed]})")
      tool=""
      [ "$compression" = gzip ] ||
        tool=",\"zstd_cli_s\":$zstd_cli_s,\"zstd_cli_mb_per_s\":$(calc "$mb / $zstd_cli_s")"
      emit "export_$compression" MB/s higher "$(calc "$mb / $sf_s")" "$(calc "$mb / $bh_s")" "$export_load" \
        "\"fs\":\"$fs_kind\",\"data\":\"$data\",\"stagefarm_s\":$sf_s$tool,\"buildah_s\":$bh_s,\"stagefarm_tar_bytes\":${sf_export_size[$compression]},\"buildah_tar_bytes\":$bh_size,\"stagefarm_uncompressed_export_s\":${sf_export_s[uncompressed]},\"stagefarm_cores\":$sf_cores,\"buildah_cpu_s\":$CPU"
    done
  fi
  bh_drop "$dir"
  remove_later "$fs/big-uncompressed.tar" "$fs/big-zstd.tar"
fi

# ---------------------------------------------------------------------------
# unpack: the gzip image (stagefarm's export) brought in cold and built FROM.

if wants unpack; then
  big_tar=$fs/big-gzip.tar
  if [ ! -f "$big_tar" ]; then
    dir=$work/runs/layer-gzip.stagefarm
    sf_fresh "$dir"
    sf_build "$dir" "$dir/build.log" -f "$work/files/layer.Dockerfile" \
      --output "type=oci,dest=$big_tar,compression=gzip" "$data_ctx"
  fi
  remove_later "$work/runs/layer-gzip.stagefarm/home"
  printf 'FROM bench-big\nRUN true\n' >"$work/files/from-big.Dockerfile"
  printf 'FROM busybox\nRUN true\n' >"$work/files/from-small.Dockerfile"
  unpack_load=$(load)
  # stagefarm: import (verifies every blob and diff id), then the build unpacks.
  dir=$work/runs/unpack.stagefarm
  sf_fresh "$dir"
  run_timed "$dir/import-big.log" env STAGEFARM_HOME="$dir/home" "$stagefarm" image import \
    "$big_tar" bench-big:latest
  sf_in=$(calc "$T_END - $T_START")
  sf_build "$dir" "$dir/build-big.log" -f "$work/files/from-big.Dockerfile" "$empty_ctx"
  sf_big=$(calc "$T_END - $T_START")
  # The snapshot alone: from the build's "unpacking layer" note to its
  # "unpacked layer" one (read, verify and inflate the stored blob, write the files).
  sf_unpack_s=$(calc "$(line_time "$dir/build-big.log" '] unpacked layer sha256:') - \
    $(line_time "$dir/build-big.log" '] unpacking layer sha256:')")
  sf_small=$(build_seconds stagefarm from-small "$work/files/from-small.Dockerfile")
  remove_later "${dir:?}/home" "$work/runs/from-small.stagefarm/home"
  # Buildah: skopeo copy into containers-storage (decompress, unpack), then the build.
  dir=$work/runs/unpack.buildah
  bh_fresh "$dir" nobase
  run_timed "$dir/import-big.log" skopeo copy --quiet "oci-archive:$big_tar" \
    containers-storage:localhost/bench-big:latest
  bh_in=$(calc "$T_END - $T_START")
  bh_build "$dir/build-big.log" -f "$work/files/from-big.Dockerfile" "$empty_ctx"
  bh_big=$(calc "$T_END - $T_START")
  bh_drop "$dir"
  bh_small=$(build_seconds buildah from-small "$work/files/from-small.Dockerfile")
  sf_s=$(calc "$sf_in + $sf_big - $sf_small")
  bh_s=$(calc "$bh_in + $bh_big - $bh_small")
  emit unpack MB/s higher "$(calc "$mb / $sf_s")" "$(calc "$mb / $bh_s")" "$unpack_load" \
    "\"stagefarm_import_s\":$sf_in,\"stagefarm_build_s\":$sf_big,\"stagefarm_small_build_s\":$sf_small,\"buildah_pull_s\":$bh_in,\"buildah_build_s\":$bh_big,\"buildah_small_build_s\":$bh_small"
  emit unpack_build_only MB/s higher "$(calc "$mb / ($sf_big - $sf_small)")" \
    "$(calc "$mb / ($bh_big - $bh_small)")" "$unpack_load" \
    "\"note\":\"the FROM build alone: stagefarm unpacks here, Buildah unpacked at the pull\""
  # The file system's own rate for the same files: GNU tar -x of them,
  # uncompressed, into a fresh directory beside the stores (no digests, no
  # decompression: the floor an unpacker on this disk works against).
  tar -cf "$fs/data.tar" -C "$data_ctx" data
  mkdir -p "$fs/tar-x"
  run_timed "$work/runs/unpack.tar-x.log" tar -xf "$fs/data.tar" -C "$fs/tar-x"
  tar_s=$(calc "$T_END - $T_START")
  remove_later "$fs/data.tar" "$fs/tar-x"
  emit unpack_snapshot MB/s higher "$(calc "$mb / $sf_unpack_s")" "$(calc "$mb / $bh_in")" \
    "$unpack_load" "\"fs\":\"$fs_kind\",\"data\":\"$data\",\"stagefarm_s\":$sf_unpack_s,\"buildah_pull_s\":$bh_in,\"tar_x_s\":$tar_s,\"tar_x_mb_per_s\":$(calc "$mb / $tar_s"),\"stagefarm_vs_tar_x\":$(calc "$tar_s / $sf_unpack_s"),\"note\":\"stagefarm: the gzip layer's snapshot unpack in the build; Buildah: skopeo copy into containers-storage, which unpacks it; tar_x: GNU tar -x of the same files uncompressed\""
  remove_later "$big_tar"
fi

# ---------------------------------------------------------------------------
# fidelity: cold build of each case.

# stage_context CASE_DIR DEST: the fidelity README's "Staging the context".
stage_context() {
  local case_dir=$1 dest=$2
  rm -rf "$dest" && mkdir -p "$dest"
  if [ -d "$case_dir/context" ]; then cp -R "$case_dir/context/." "$dest/"; fi
  chown -R -h 0:0 "$dest"
  find "$dest" -type d -exec chmod 0755 {} +
  find "$dest" -type f -perm /111 -exec chmod 0755 {} +
  find "$dest" -type f ! -perm /111 -exec chmod 0644 {} +
  chmod 0755 "$dest"
  if [ -f "$case_dir/prepare.sh" ]; then (cd "$dest" && sh "$case_dir/prepare.sh"); fi
}

# case_flags CASE_DIR: the case's --build-arg and --target flags, one a line.
case_flags() {
  local line
  if [ -f "$1/build-args" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in '' | '#'*) continue ;; esac
      printf '%s\n' --build-arg "$line"
    done <"$1/build-args"
  fi
  if [ -f "$1/target" ]; then printf '%s\n' --target "$(tr -d ' \t\r\n' <"$1/target")"; fi
}

if wants fidelity; then
  if [ -n "$cases" ]; then
    IFS=, read -r -a case_names <<<"$cases"
  else
    case_names=()
    for c in "$shared"/fidelity/*/Dockerfile; do case_names+=("$(basename "$(dirname "$c")")"); done
  fi
  sf_sum=0 bh_sum=0
  for name in "${case_names[@]}"; do
    case_dir=$shared/fidelity/$name
    ctx=$work/runs/fid-$name.context
    stage_context "$case_dir" "$ctx"
    mapfile -t flags < <(case_flags "$case_dir")
    bh_file=$case_dir/Dockerfile
    [ ! -f "$case_dir/equivalent.Dockerfile" ] || bh_file=$case_dir/equivalent.Dockerfile
    case_load=$(load)
    dir=$work/runs/fid-$name.stagefarm
    sf_fresh "$dir"
    sf_build "$dir" "$dir/build.log" -f "$case_dir/Dockerfile" "${flags[@]}" -t "fid-$name:latest" "$ctx"
    sf_s=$(calc "$T_END - $T_START")
    remove_later "${dir:?}/home"
    dir=$work/runs/fid-$name.buildah
    bh_fresh "$dir"
    bh_build "$dir/build.log" -f "$bh_file" "${flags[@]}" -t "localhost/fid-$name:latest" "$ctx"
    bh_s=$(calc "$T_END - $T_START")
    bh_drop "$dir"
    sf_sum=$(calc "$sf_sum + $sf_s")
    bh_sum=$(calc "$bh_sum + $bh_s")
    emit "cold_build_$name" s lower "$sf_s" "$bh_s" "$case_load" \
      "\"buildah_dockerfile\":\"$(basename "$bh_file")\""
  done
  emit cold_build_all_cases s lower "$sf_sum" "$bh_sum" "$(load)" "\"cases\":${#case_names[@]}"
fi

{
  printf '\n%-34s %10s %10s %7s  %-8s %5s\n' measurement stagefarm buildah ratio unit load
  printf '%s\n' "${summary[@]}"
} >&2
# What was moved aside, and the stores; on a mounted $fs they go with it.
for path in "${doomed[@]}"; do
  [ -n "$fs_mounted" ] && [[ $path == "$fs"/* ]] && continue
  rm -rf "$path"
done
[ -n "$fs_mounted" ] || rm -rf "$fs"

#!/usr/bin/env bash
# Builds the Dockerfile frontend's libFuzzer target with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer into build-fuzz/, then fuzzes it.
#
#   scripts/fuzz.sh [SECONDS=600]
#
# Seeds: fuzz/corpus/dockerfile (committed) plus ../shared/conformance. New
# inputs go to fuzz/corpus-work/ (ignored by git); copy a crash reproducer into
# fuzz/corpus/dockerfile once it is fixed so the replay test keeps it fixed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
stagefarm_install_packages "${STAGEFARM_PACKAGES[@]}" "${STAGEFARM_FUZZ_PACKAGES[@]}"

seconds="${1:-600}"
build="$STAGEFARM_ROOT/build-fuzz"
sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CC=clang CXX=clang++ cmake -S "$STAGEFARM_ROOT" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAGEFARM_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $sanitizers" \
  -DCMAKE_EXE_LINKER_FLAGS="$sanitizers" >/dev/null
cmake --build "$build" --target dockerfile_fuzzer -j "$(nproc)"

work="$STAGEFARM_ROOT/fuzz/corpus-work"
mkdir -p "$work"
seeds=("$STAGEFARM_ROOT/fuzz/corpus/dockerfile")
shared="${STAGEFARM_SHARED_DIR:-$STAGEFARM_ROOT/../shared}/conformance"
if [ -d "$shared" ]; then seeds+=("$shared"); fi

cd "$work"
exec "$build/fuzz/dockerfile_fuzzer" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "$work" "${seeds[@]}"

# Shared set-up for scripts/test.sh and scripts/demo.sh: installs the Debian
# packages stagefarm needs (only the missing ones; quiet when all are present)
# and builds the tree into build/ with every core. Source it; do not run it.

STAGEFARM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGEFARM_BUILD="${STAGEFARM_BUILD:-$STAGEFARM_ROOT/build}"

# Build tools and libraries, all from Debian 12.
STAGEFARM_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libzmq3-dev cppzmq-dev capnproto libcapnp-dev librocksdb-dev libabsl-dev
  libarchive-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev libisal-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  # The archives cmake/StaticDependencies.cmake links ZeroMQ, libarchive and
  # RocksDB's compressors with (most come with the packages above; listed so
  # that none is missing).
  libsodium-dev libpgm-dev libnorm-dev libkrb5-dev libbsd-dev libmd-dev libxml2-dev
  libicu-dev liblzma-dev nettle-dev libacl1-dev libbz2-dev liblz4-dev libsnappy-dev
  runc busybox-static python3 oci-image-tool
  # tests/fidelity: the reference builder, its exporter, OCI layouts, zstd layers.
  buildah skopeo umoci zstd
  # tests/registry: a registry on loopback, htpasswd for its basic auth.
  docker-registry apache2-utils
  # tests/ansible: the playbook's lint and a real deployment (the apt module
  # needs python3-apt on the target).
  ansible ansible-lint python3-apt
  # scripts/demo.sh and tests/examples: the debian:bookworm base image, the
  # Go service asked over HTTP.
  mmdebstrap curl
)

# What scripts/fuzz.sh adds: clang with libFuzzer and the sanitizer runtimes.
STAGEFARM_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

# Installs the given packages (default: STAGEFARM_PACKAGES) that are missing.
stagefarm_install_packages() {
  local wanted=("$@")
  if [ "${#wanted[@]}" -eq 0 ]; then wanted=("${STAGEFARM_PACKAGES[@]}"); fi
  local missing=()
  local pkg
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "setup: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

stagefarm_build() {
  cmake -S "$STAGEFARM_ROOT" -B "$STAGEFARM_BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build "$STAGEFARM_BUILD" -j "$(nproc)"
}

stagefarm_setup() {
  stagefarm_install_packages
  stagefarm_build
}

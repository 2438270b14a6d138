#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
# Usage: scripts/test.sh [extra ctest arguments, e.g. -R Parser]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
stagefarm_setup
cd "$STAGEFARM_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"

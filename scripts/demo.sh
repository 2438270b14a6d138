#!/usr/bin/env bash
# Installs what is missing, builds, and runs stagefarm's main job on the
# examples: today, parsing and planning every example Dockerfile.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
stagefarm_setup
stagefarm="$STAGEFARM_BUILD/bin/stagefarm"
for dir in "$STAGEFARM_ROOT"/examples/*/; do
  echo "== stagefarm plan $(basename "$dir")"
  "$stagefarm" plan "$dir"
done

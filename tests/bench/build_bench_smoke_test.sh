#!/usr/bin/env bash
# build_bench_smoke_test.sh STAGEFARM SHARED_DIR
#
# bench/build_bench.sh --quick end to end: every measurement is made with both
# builders and printed as a JSON line with every field. Not timed: figures
# come from runs by hand (docs/BENCHMARKS.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mktemp "${TMPDIR:-/tmp}/build_bench_smoke.XXXXXX")
trap 'rm -f "$out"' EXIT
"$here/../../bench/build_bench.sh" --quick --stagefarm "${1:?stagefarm binary}" \
  --shared "${2:?shared dir}" >"$out"
python3 - "$out" <<'PY'
import json, numbers, sys
want = {"step_overhead_run_true", "step_overhead_run_touch", "layer_creation",
        "layer_build_total", "layer_creation_by_difference", "export_gzip", "export_zstd", "unpack", "unpack_build_only",
        "cold_build_09-dockerignore", "cold_build_all_cases"}
seen = set()
for line in open(sys.argv[1]):
    m = json.loads(line)
    assert m["bench"] == "build", line
    assert m["unit"] in ("ms", "s", "MB/s") and m["better"] in ("lower", "higher"), line
    for field in ("stagefarm", "buildah", "ratio", "load"):
        assert isinstance(m[field], numbers.Number), f"{m['name']}: {field} is not a number"
    if m["name"].startswith("step_overhead"):
        assert m["runc_floor_ms"] > 0, line
    seen.add(m["name"])
missing = want - seen
assert not missing, f"measurements missing: {sorted(missing)}"
print(f"build_bench smoke: {len(seen)} measurements, every field present")
PY

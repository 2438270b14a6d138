#!/usr/bin/env python3
"""startup_bench.py --bin DIR [--runs N]

What starting a program costs: each of stagefarm's three programs run with
--version (which does nothing but start, print and exit), side by side in
the same run with Buildah's `buildah --version` (the reference builder, one
Go binary), `/bin/true` (the floor: a process that only starts) and a bare
`runc --version`. Every build command, worker and coordinator start pays
this, and on the virtual machines stagefarm runs on it is mostly page
faults: mapping and relocating shared objects.

Per program: the median of --runs runs (default 30) of the wall time, the
CPU time (user + system) and the minor page faults, from wait4()'s resource
usage; and the shared objects it needs (ldd). Prints one JSON line per
program, then the ratios of stagefarm's to Buildah's.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def measure(argv, runs):
    walls, cpus, faults = [], [], []
    for _ in range(runs):
        start = time.monotonic()
        pid = os.posix_spawn(argv[0], argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                           (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.monotonic() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(argv)} failed ({status})")
        cpus.append(usage.ru_utime + usage.ru_stime)
        faults.append(usage.ru_minflt)
    return {
        "wall_ms": round(statistics.median(walls) * 1e3, 2),
        "cpu_ms": round(statistics.median(cpus) * 1e3, 2),
        "page_faults": int(statistics.median(faults)),
    }


def shared_objects(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip() and "linux-vdso" not in line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="directory of the stagefarm binaries")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    programs = [(os.path.join(args.bin, name), name)
                for name in ("stagefarm", "stagefarm-worker", "stagefarm-coordinator")]
    for name in ("buildah", "runc", "true"):
        found = shutil.which(name)
        if found:
            programs.append((found, name))
    results = {}
    load = os.getloadavg()[0]
    for path, name in programs:
        argv = [path] if name == "true" else [path, "--version"]
        record = measure(argv, args.runs)
        record.update(program=name, shared_objects=shared_objects(path), runs=args.runs,
                      load=round(load, 2))
        results[name] = record
        print(json.dumps(record), flush=True)
    if "buildah" in results:
        reference = results["buildah"]
        for name in ("stagefarm", "stagefarm-worker", "stagefarm-coordinator"):
            ours = results[name]
            print(json.dumps({
                "ratio": f"{name} / buildah",
                "wall": round(ours["wall_ms"] / reference["wall_ms"], 2),
                "cpu": round(ours["cpu_ms"] / max(reference["cpu_ms"], 1e-3), 2),
                "page_faults": round(ours["page_faults"] / reference["page_faults"], 2),
            }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""registry_bench.py --bin DIR [--mb N] [--runs N]

Push and pull throughput of `stagefarm image push/pull` against `skopeo copy`
of the same image, both to and from Debian's docker-registry on loopback
(started here, a fresh storage dir per run so nothing is already there).

The image: the busybox base (scripts/lib/make-busybox-rootfs.sh) and one
layer of N MB of random bytes (incompressible: the figure is the transfer,
not gzip), built with `stagefarm build --output type=oci` so both tools move
the same gzip blobs. Prints one line per measurement and a summary table in
Markdown (min and median of the runs).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "registry"))
import registry_e2e as e2e  # noqa: E402


def timed(args, env=None):
    started = time.perf_counter()
    e2e.run(args, env=env)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="registry-bench-")
    try:
        _, rootfs, _ = e2e.make_base_layout(work)
        home = os.path.join(work, "home")
        sf = e2e.Stagefarm(os.path.abspath(args.bin), home)
        sf.run(["image", "import", "--rootfs", "--change", f"ENV PATH={e2e.BASE_PATH}", rootfs,
                "busybox"])
        context = e2e.write_context(work, "context", "FROM busybox\n"
                                    f"RUN dd if=/dev/urandom of=/random bs=1048576 count={args.mb}\n")
        sf.run(["build", "--workers", "0", "--progress", "plain", "-t", "bench/random:1",
                "--output", f"type=oci,dest={work}/layout/", context])
        layout = os.path.join(work, "layout")
        total = sum(os.path.getsize(os.path.join(root, f))
                    for root, _, files in os.walk(os.path.join(layout, "blobs")) for f in files)
        results = {"stagefarm push": [], "skopeo copy (push)": [], "stagefarm pull": [],
                   "skopeo copy (pull)": []}
        for run in range(args.runs):
            registry = e2e.Registry(work, f"registry-{run}")
            try:
                host = registry.host
                results["stagefarm push"].append(timed(
                    [sf.binary, "image", "push", "--insecure-registry", host, "bench/random:1",
                     f"{host}/sf:1"], env=sf.env))
                results["skopeo copy (push)"].append(timed(
                    ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1",
                     f"docker://{host}/sk:1"]))
                fresh = e2e.Stagefarm(os.path.abspath(args.bin), os.path.join(work, f"pull-{run}"))
                results["stagefarm pull"].append(timed(
                    [fresh.binary, "image", "pull", "--insecure-registry", host, f"{host}/sf:1"],
                    env=fresh.env))
                results["skopeo copy (pull)"].append(timed(
                    ["skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/sk:1",
                     f"oci:{work}/pulled-{run}:1"]))
            finally:
                registry.stop()
            for name, times in results.items():
                print(f"run {run}: {name}: {times[-1]:.2f} s", flush=True)
        print(f"\nimage: {total / 1e6:.1f} MB of blobs, {args.runs} runs\n")
        print("| operation | min s | median s | MB/s (median) |")
        print("|---|---|---|---|")
        for name, times in results.items():
            median = statistics.median(times)
            print(f"| {name} | {min(times):.2f} | {median:.2f} | {total / 1e6 / median:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""context_bench.py --bin DIR [--work DIR] [--files N] [--megabytes M] [--monorepo-files N]

Issue 7's context acceptance through the real client (`stagefarm build` on the
embedded cluster, one worker), with --metadata-file's "stagefarm.client"
figures:

  scan       a generated context of --files files (default 10,000) holding
             --megabytes MB (default 200) in 100 directories, built with
             `COPY . /ctx`: the first scan (every file read and hashed), a
             re-scan of the unchanged tree (the hash cache: files stat'ed, not
             read), each measured --repeats times after a sync, and the ratio
             of their medians; then one file changed: what the rebuild
             uploads (only that file) and how many files it reads again;
             beside them, `tar -cf - . | sha256sum` of the same tree (what a
             builder that sends and hashes everything reads)
  monorepo   --monorepo-files files (default 50,000; 1 KiB each) under
             services/svc-000 ... svc-499, built by a Dockerfile that copies
             services/svc-007 only: the files the build sends and the bytes
             uploaded, against the whole tree's

Prints one JSON line per measurement and exits non-zero when an acceptance
check fails (upload of anything but the changed file; a re-scan less than 10
times faster; the monorepo sending files outside the directory).
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "cluster"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "testing"))
import cluster_e2e  # noqa: E402
from e2e import run  # noqa: E402


def build(client, context, metadata):
    """`stagefarm build --workers 1` of `context` (embedded cluster) with
    --metadata-file; its "stagefarm.client" record, plus the wall time."""
    start = time.monotonic()
    run([client.stagefarm, "build", "--workers", "1", "--progress", "plain", "--metadata-file",
         metadata, context], env=client.env({"SOURCE_DATE_EPOCH": "1700000000"}))
    wall = time.monotonic() - start
    with open(metadata) as f:
        record = json.load(f)["stagefarm.client"]
    record["wall_seconds"] = round(wall, 3)
    return record


def write_tree(root, files, file_bytes, directories, prefix):
    per_dir = (files + directories - 1) // directories
    written = 0
    for d in range(directories):
        path = os.path.join(root, prefix.format(d))
        os.makedirs(path, exist_ok=True)
        for i in range(min(per_dir, files - written)):
            with open(os.path.join(path, f"file-{i:04d}"), "wb") as f:
                f.write(os.urandom(file_bytes))
            written += 1


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def emit(record):
    print(json.dumps(record), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", default="/var/tmp/stagefarm-context-bench")
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--monorepo-files", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="first scans and re-scans measured (default 3); medians compared")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    failures = []
    client = cluster_e2e.Client(args.work, args.bin, name="home")
    meta = os.path.join(args.work, "metadata.json")

    # --- scan: first scan, re-scan, one file changed
    context = os.path.join(args.work, "scan")
    file_bytes = args.megabytes * 1000 * 1000 // args.files
    write_tree(context, args.files, file_bytes, 100, "dir-{:03d}")
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY . /ctx\n")
    time.sleep(0.2)  # older than the hash cache's racy window
    os.sync()
    start = time.monotonic()
    run(["sh", "-c", "tar -cf - . | sha256sum"], cwd=context)
    tar_seconds = time.monotonic() - start
    # Three first scans (the real first build, then two with the hash cache
    # deleted: every file read and hashed again) and three re-scans; each
    # after a sync, so that neither is measured beside the writeback of what
    # the build before it stored. The ratio is of the medians.
    firsts = []
    for _ in range(args.repeats):
        shutil.rmtree(os.path.join(client.home, "context-hashes"), ignore_errors=True)
        os.sync()
        firsts.append(build(client, context, meta))
    rescans = []
    for _ in range(args.repeats):
        os.sync()
        rescans.append(build(client, context, meta))
    changed = os.path.join(context, "dir-042", "file-0007")
    with open(changed, "wb") as f:
        f.write(os.urandom(1234))
    os.sync()
    one = build(client, context, meta)
    first_seconds = median([r["context_scan_seconds"] for r in firsts])
    rescan_seconds = median([r["context_scan_seconds"] for r in rescans])
    ratio = first_seconds / max(rescan_seconds, 1e-9)
    emit({"name": "context/scan", "files": args.files, "megabytes": args.megabytes,
          "first_scan_seconds": [r["context_scan_seconds"] for r in firsts],
          "rescan_seconds": [r["context_scan_seconds"] for r in rescans],
          "first": firsts[0], "rescan": rescans[0], "one_changed": one,
          "first_over_rescan": round(ratio, 1),
          "tar_sha256sum_seconds": round(tar_seconds, 3),
          "load": os.getloadavg()[0]})
    if ratio < 10:
        failures.append(f"re-scan only {ratio:.1f} times faster than the first scan")
    if one["bytes_uploaded"] != 1234 or one["context_files_hashed"] != 1:
        failures.append(f"after one change: {one}")

    # --- monorepo: one subdirectory of many
    mono = os.path.join(args.work, "monorepo")
    write_tree(mono, args.monorepo_files, 1024, 500, "services/svc-{:03d}")
    with open(os.path.join(mono, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY services/svc-007/ /app/\n")
    time.sleep(0.2)
    in_dir = len(os.listdir(os.path.join(mono, "services", "svc-007")))
    sent = build(client, mono, meta)
    emit({"name": "context/monorepo", "files": args.monorepo_files, "files_in_directory": in_dir,
          "build": sent, "tree_bytes": args.monorepo_files * 1024,
          "load": os.getloadavg()[0]})
    if sent["context_files"] != in_dir or sent["bytes_uploaded"] > in_dir * 1024:
        failures.append(f"monorepo: sent {sent} for a directory of {in_dir} files")

    for failure in failures:
        print(f"context_bench: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""cluster_bench.py --bin DIR [--reps N] [--cached-reps N] [--keep DIR]

Issue 6's timing acceptance, measured side by side with Buildah in one run
(as root: Buildah's chroot isolation and the workers' runc need it):

  parallel   the fidelity case 12-parallel (four independent 2-second stages
             and a final one) built --no-cache by `stagefarm build
             --coordinator` on a CURVE cluster of two one-slot workers and of
             four, and by `buildah bud --jobs 1` and `--jobs 4`; overhead =
             wall - the sleeps that cannot overlap (stagefarm: 4.0 s on two
             workers, 2.0 s on four; Buildah: 8.0 s with --jobs 1, 2.0 s
             with --jobs 4); which workers ran the stages; where the time
             went, from the events' times ("phases": client spawn to the
             first stage start, each stage's seconds and its start to first
             step, the gap before the final stage, the final stage, its end
             to the process exit)
  cached     a fully cached rebuild of a two-stage Dockerfile: against a
             running cluster (--coordinator), with the embedded cluster the
             command starts (--workers 2), in process (--workers 0), and
             `buildah bud --layers`; no stage may start (checked on the
             --progress=json events)

The cluster, the client (its own STAGEFARM_HOME with busybox imported) and the
event reader are tests/cluster/cluster_e2e.py's. Buildah uses vfs storage
under the work dir and the same busybox rootfs, imported as
localhost/busybox as tests/fidelity/run_fidelity.sh does, and builds with its
flags (--isolation chroot --pull=never --format docker --layers).

Before each measurement the script waits up to --max-wait seconds for the
1-minute load average to fall below --quiet-load, and records the load it
started at. Prints one JSON line per measurement on stdout, then a summary.
"""
import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "cluster"))

from cluster_e2e import (BASE_PATH, Build, Client, Cluster, Failure, check,  # noqa: E402
                         write_context)

CACHED_DOCKERFILE = "\n".join([
    "FROM busybox AS build",
    "RUN mkdir -p /out && echo hello > /out/a",
    "FROM busybox",
    "COPY --from=build /out/a /a",
    "RUN cat /a",
    ""])


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def load():
    return round(os.getloadavg()[0], 2)


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.records = []

    def wait_quiet(self):
        """Waits until the load is below --quiet-load or --max-wait passed; the load then."""
        deadline = time.time() + self.args.max_wait
        while load() >= self.args.quiet_load and time.time() < deadline:
            time.sleep(2)
        return load()

    def emit(self, record):
        self.records.append(record)
        print(json.dumps(record), flush=True)


def summarize(values):
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered),
            "p90": ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)], "max": ordered[-1]}


# --- stagefarm ---------------------------------------------------------------

def timed_build(client, flags, context, extra=(), env=None):
    """Runs `stagefarm build --progress=json`; (wall seconds, Build), the wall
    time from before the process is spawned to its exit."""
    start_wall = time.time()
    start = time.monotonic()
    build = Build(client.start_build(list(flags), context, extra, env))
    code = build.finish()
    seconds = time.monotonic() - start
    check(code == 0, f"stagefarm build {context} failed ({code}):\n{build.describe()}")
    build.spawned = start_wall
    build.seconds_wall = seconds
    return seconds, build


def phases(build, final_stage=""):
    """Where the wall time of a build went, from its events (seconds)."""
    events = build.events
    starts = [parse_time(e["time"]) for e in events if e["event"] == "start"]
    dones = {e["stage_name"]: e for e in events if e["event"] == "done"}
    first_event = min(parse_time(e["time"]) for e in events) if events else None
    out = {}
    if first_event is not None:
        out["spawn_to_first_event"] = round(first_event - build.spawned, 3)
    if starts:
        out["spawn_to_first_start"] = round(min(starts) - build.spawned, 3)
    final = dones.get(final_stage)
    others = [parse_time(e["time"]) for name, e in dones.items() if name != final_stage]
    final_start = [parse_time(e["time"]) for e in events
                   if e["event"] == "start" and e["stage_name"] == final_stage]
    if final is not None and others and final_start:
        out["last_stage_done_to_final_start"] = round(min(final_start) - max(others), 3)
        out["final_stage_seconds"] = round(final["seconds"], 3)
        out["final_done_to_exit"] = round(build.spawned + build.seconds_wall
                                          - parse_time(final["time"]), 3)
    out["stage_seconds"] = {name: round(e["seconds"], 3) for name, e in sorted(dones.items())}
    # From a stage's start to its first step: the base made ready on the worker.
    out["start_to_first_step"] = {}
    for name in sorted(dones):
        start = [parse_time(e["time"]) for e in build.of("start", name)]
        steps = [parse_time(e["time"]) for e in build.of("step", name)]
        if start and steps:
            out["start_to_first_step"][name] = round(min(steps) - min(start), 3)
    return out


def bench_parallel_stagefarm(bench, client, context):
    for workers, bound in [(2, 4.0), (4, 2.0)]:
        cluster = Cluster(os.path.join(bench.work, f"parallel-cluster{workers}"), bench.args.bin,
                          workers=workers)
        try:
            walls, used_all, detail = [], [], []
            started_load = bench.wait_quiet()
            for _ in range(bench.args.reps):
                seconds, build = timed_build(client, cluster.client_flags(), context,
                                             ["--no-cache"])
                used = sorted({e["worker"] for e in build.of("start")})
                check(len(used) == workers, f"{workers} workers: stages ran on {used}")
                check(not build.of("cached"), "a --no-cache build reported cached stages")
                walls.append(seconds)
                used_all.append(used)
                detail.append(phases(build))
            stats = summarize(walls)
            bench.emit({"name": f"parallel/stagefarm/{workers}-workers", "unit": "s",
                        "runs": [round(w, 3) for w in walls],
                        "min": round(stats["min"], 3), "median": round(stats["median"], 3),
                        "sleeps": bound,
                        "overhead_min": round(stats["min"] - bound, 3),
                        "overhead_median": round(stats["median"] - bound, 3),
                        "workers_used": used_all[0], "phases": detail,
                        "load": started_load, "load_after": load()})
        finally:
            cluster.stop()


def check_fully_cached(label, build):
    """A cluster starts no stage of a cached build; the in-process engine
    (--workers 0) reports a start for each stage, then every step cached."""
    check(build.of("cached"), f"{label}: a rebuild reported nothing cached:\n{build.describe()}")
    if label == "in-process":
        check(len(build.of("step")) == len(build.of("cached")),
              f"{label}: a rebuild ran steps:\n{build.describe()}")
    else:
        check(not build.of("start"), f"{label}: a rebuild ran stages:\n{build.describe()}")


def bench_cached_stagefarm(bench, label, client, flags, context, env=None):
    first_seconds, first = timed_build(client, flags, context, ["-t", "bench-cached"], env)
    warm_seconds, warm = timed_build(client, flags, context, ["-t", "bench-cached"], env)
    check_fully_cached(label, warm)
    started_load = bench.wait_quiet()
    walls, digests = [], {warm.digest}
    for _ in range(bench.args.cached_reps):
        seconds, build = timed_build(client, flags, context, ["-t", "bench-cached"], env)
        check_fully_cached(label, build)
        digests.add(build.digest)
        walls.append(seconds * 1000)
    stats = summarize(walls)
    bench.emit({"name": f"cached/stagefarm/{label}", "unit": "ms",
                "runs": [round(w, 1) for w in walls],
                **{k: round(v, 1) for k, v in stats.items()},
                "first_build_ms": round(first_seconds * 1000, 1),
                "warmup_ms": round(warm_seconds * 1000, 1),
                "same_image_as_first_build": warm.digest == first.digest,
                "distinct_images_of_rebuilds": len(digests),
                "load": started_load, "load_after": load()})


# --- Buildah -----------------------------------------------------------------

class Buildah:
    """Buildah with vfs storage under WORK and busybox imported, as run_fidelity.sh sets it up."""

    def __init__(self, work, rootfs):
        self.dir = os.path.join(work, "buildah")
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "storage.conf")
        with open(conf, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.dir}/graph"\n'
                    f'runroot = "{self.dir}/run"\n')
        self.env = dict(os.environ, CONTAINERS_STORAGE_CONF=conf)
        container = self.run(["from", "scratch"]).stdout.strip()
        self.run(["add", "--quiet", container, rootfs, "/"])
        self.run(["config", "--env", f"PATH={BASE_PATH}", container])
        self.run(["commit", "--quiet", "--format", "docker", container, "localhost/busybox:latest"])
        self.run(["tag", "localhost/busybox:latest", "docker.io/library/busybox:latest"])
        self.run(["rm", container])

    def run(self, args):
        result = subprocess.run(["buildah"] + args, capture_output=True, text=True, env=self.env)
        if result.returncode != 0:
            raise Failure(f"buildah {' '.join(args)}: exit {result.returncode}\n"
                          f"{result.stderr[-3000:]}")
        return result

    def build(self, context, tag, extra=()):
        """Wall seconds of one `buildah bud` with run_fidelity.sh's flags."""
        start = time.monotonic()
        self.run(["bud", "--isolation", "chroot", "--pull=never", "--format", "docker",
                  "--layers", *extra, "-t", tag, context])
        return time.monotonic() - start


def bench_parallel_buildah(bench, buildah, context):
    for jobs, bound in [(1, 8.0), (4, 2.0)]:
        walls = []
        started_load = bench.wait_quiet()
        for _ in range(bench.args.reps):
            walls.append(buildah.build(context, "localhost/bench-parallel:latest",
                                       ["--no-cache", "--jobs", str(jobs)]))
        stats = summarize(walls)
        bench.emit({"name": f"parallel/buildah/jobs-{jobs}", "unit": "s",
                    "runs": [round(w, 3) for w in walls],
                    "min": round(stats["min"], 3), "median": round(stats["median"], 3),
                    "sleeps": bound,
                    "overhead_min": round(stats["min"] - bound, 3),
                    "overhead_median": round(stats["median"] - bound, 3),
                    "load": started_load, "load_after": load()})


def bench_cached_buildah(bench, buildah, context):
    first = buildah.build(context, "localhost/bench-cached:latest")
    warm = buildah.build(context, "localhost/bench-cached:latest")
    started_load = bench.wait_quiet()
    walls = [buildah.build(context, "localhost/bench-cached:latest") * 1000
             for _ in range(bench.args.cached_reps)]
    stats = summarize(walls)
    bench.emit({"name": "cached/buildah/layers", "unit": "ms",
                "runs": [round(w, 1) for w in walls],
                **{k: round(v, 1) for k, v in stats.items()},
                "first_build_ms": round(first * 1000, 1), "warmup_ms": round(warm * 1000, 1),
                "load": started_load, "load_after": load()})


# --- the run -----------------------------------------------------------------

def summary(records):
    by = {r["name"]: r for r in records}
    lines = ["", "parallel (12-parallel, --no-cache): min / median wall, overhead vs the sleeps"]
    for name in ["parallel/stagefarm/2-workers", "parallel/stagefarm/4-workers",
                 "parallel/buildah/jobs-1", "parallel/buildah/jobs-4"]:
        r = by.get(name)
        if r:
            lines.append(f"  {name:32} {r['min']:7.2f} / {r['median']:7.2f} s   overhead "
                         f"{r['overhead_min']:+.2f} / {r['overhead_median']:+.2f} s "
                         f"(sleeps {r['sleeps']:.1f} s)  load {r['load']}"
                         + (f"  workers {','.join(r['workers_used'])}"
                            if "workers_used" in r else ""))
    lines.append("cached rebuild: min / median / p90 wall")
    targets = {"cached/stagefarm/running-cluster": 100, "cached/stagefarm/embedded-cluster": 500}
    for name in ["cached/stagefarm/running-cluster", "cached/stagefarm/embedded-cluster",
                 "cached/stagefarm/in-process", "cached/buildah/layers"]:
        r = by.get(name)
        if r:
            target = targets.get(name)
            lines.append(f"  {name:34} {r['min']:7.0f} / {r['median']:7.0f} / {r['p90']:7.0f} ms"
                         + (f"  (target {target} ms: p90 {'met' if r['p90'] <= target else 'NOT met'})"
                            if target else "") + f"  load {r['load']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="directory of the stagefarm binaries")
    parser.add_argument("--reps", type=int, default=3, help="builds of 12-parallel per setup")
    parser.add_argument("--cached-reps", type=int, default=10, help="timed cached rebuilds")
    parser.add_argument("--only", choices=["parallel", "cached"], help="run one part")
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=45,
                        help="seconds to wait for the load to fall before a measurement")
    parser.add_argument("--keep", help="work here and keep it (logs, storage)")
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    cases = os.path.join(
        os.environ.get("STAGEFARM_SHARED_DIR", os.path.join(SOURCE_ROOT, "..", "shared")),
        "fidelity")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        work = os.path.abspath(args.keep)
    else:
        work = tempfile.mkdtemp(prefix="cluster-bench.")
    bench = Bench(args, work)
    print(f"# cluster_bench {datetime.datetime.utcnow():%Y-%m-%d %H:%M:%S} UTC, load {load()}, "
          f"work {work}", file=sys.stderr)
    try:
        client = Client(work, args.bin)
        buildah = Buildah(work, os.path.join(work, "busybox-rootfs.tar"))
        if args.only in (None, "parallel"):
            with open(os.path.join(cases, "12-parallel", "Dockerfile")) as f:
                parallel = write_context(os.path.join(work, "contexts"), "12-parallel", f.read())
            bench_parallel_stagefarm(bench, client, parallel)
            bench_parallel_buildah(bench, buildah, parallel)
        if args.only in (None, "cached"):
            context = write_context(os.path.join(work, "contexts"), "cached", CACHED_DOCKERFILE)
            cluster = Cluster(os.path.join(work, "cached-cluster"), args.bin, workers=2)
            try:
                bench_cached_stagefarm(bench, "running-cluster", client, cluster.client_flags(),
                                       context)
            finally:
                cluster.stop()
            embedded = Client(work, args.bin, "embedded-home")
            bench_cached_stagefarm(bench, "embedded-cluster", embedded, ["--workers=2"], context)
            in_process = Client(work, args.bin, "in-process-home")
            bench_cached_stagefarm(bench, "in-process", in_process, ["--workers=0"], context)
            bench_cached_buildah(bench, buildah, context)
    except Failure as failure:
        print(f"cluster_bench: FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(bench.records))
    return 0


if __name__ == "__main__":
    sys.exit(main())

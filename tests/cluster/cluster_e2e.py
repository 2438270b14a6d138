#!/usr/bin/env python3
"""cluster_e2e.py SCENARIO --bin DIR [--keep DIR]

Issue 6's acceptance on a real cluster: stagefarm-coordinator and three
stagefarm-worker processes on loopback, each with its own data dir, CURVE on
every socket (one key per node and one for the client, all in one allow-list),
and `stagefarm build --coordinator` as the client. Base images are made from
Debian's busybox-static (scripts/lib/make-busybox-rootfs.sh) and imported.

Scenarios (one ctest test each):
  fidelity          every case of $STAGEFARM_SHARED_DIR/fidelity built on the
                    cluster and on a one-worker embedded cluster, with
                    SOURCE_DATE_EPOCH set: the image digests are equal
  parallel          the fidelity case 12-parallel on two one-slot workers and
                    on four: every worker used, the sleeps overlap; the wall
                    times are printed (bench/cluster_bench.py records them)
  handoff           a stage writes 200 MB, its consumer copies one small file
                    from it on another worker: under 1 MB fetched
  kill-worker       kill -9 of the worker running a stage: the build completes
  kill-holder       kill -9 of the only holder of an artifact before its
                    consumer fetched it: the producer runs again elsewhere
  restart           the coordinator restarted between two builds: the second
                    is fully cached
  shared            two concurrent builds sharing a stage run it once
  cached            a rebuild runs no stage (its wall time is printed)
  build-context     --build-context on the embedded cluster (then --workers 0
                    and a CURVE cluster of three workers):
                    COPY --from and mounts from a local directory (its own
                    .dockerignore applied), FROM a docker-image:// context and
                    FROM a directory, a stage replaced by a context; editing a
                    file of the directory re-runs only the stage that reads it
  embedded-orphan   `stagefarm build --workers 1` killed (SIGKILL) during a
                    RUN: its coordinator, worker and the step's container end
  interrupt         Ctrl-C (SIGINT) to `stagefarm build` during a RUN, with
                    --workers 0 and 1: it exits non-zero saying "cancelled",
                    and the step's container is gone
Exit 0 when the scenario passed; what failed otherwise, with the logs' tails.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "testing"))
from e2e import (BASE_PATH, SOURCE_ROOT, Failure, check, free_port, tail,  # noqa: E402,F401
                 write_context)


class Cluster:
    """A coordinator and workers as separate processes, CURVE on."""

    def __init__(self, work, bin_dir, workers=3, slots=1, lease="3s", heartbeat="500ms"):
        self.work = work
        self.bin = bin_dir
        self.stagefarm = os.path.join(bin_dir, "stagefarm")
        self.keys = os.path.join(work, "keys")
        self.authorized = os.path.join(work, "authorized")
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.blob = f"tcp://127.0.0.1:{free_port()}"
        self.lease = lease
        self.heartbeat = heartbeat
        self.coordinator = None
        self.workers = {}  # id -> Popen
        self.slots = slots
        os.makedirs(self.authorized, exist_ok=True)
        names = ["coordinator", "client"] + [f"w{i}" for i in range(1, 9)]
        for name in names:
            if not os.path.exists(os.path.join(self.keys, f"{name}.key")):
                subprocess.run([self.stagefarm, "keys", "generate", self.keys, "--name", name],
                               check=True, capture_output=True)
            shutil.copy(os.path.join(self.keys, f"{name}.pub"), self.authorized)
        self.start_coordinator()
        for i in range(1, workers + 1):
            self.start_worker(f"w{i}")
        self.wait_workers(workers)

    def log(self, name):
        return os.path.join(self.work, f"{name}.log")

    def start_coordinator(self):
        with open(self.log("coordinator"), "a") as out:
            self.coordinator = subprocess.Popen(
                [os.path.join(self.bin, "stagefarm-coordinator"), f"--listen={self.control}",
                 f"--blob-listen={self.blob}",
                 f"--data-dir={os.path.join(self.work, 'coordinator')}",
                 f"--curve-secret-key={os.path.join(self.keys, 'coordinator.key')}",
                 f"--authorized-keys={self.authorized}", f"--lease-timeout={self.lease}",
                 f"--heartbeat-interval={self.heartbeat}", "--no-worker-grace=20s"],
                stdout=out, stderr=subprocess.STDOUT)

    def start_worker(self, worker_id):
        with open(self.log(worker_id), "a") as out:
            self.workers[worker_id] = subprocess.Popen(
                [os.path.join(self.bin, "stagefarm-worker"), f"--coordinator={self.control}",
                 "--listen=tcp://127.0.0.1:0",
                 f"--data-dir={os.path.join(self.work, worker_id)}", f"--worker-id={worker_id}",
                 f"--slots={self.slots}",
                 f"--curve-secret-key={os.path.join(self.keys, worker_id + '.key')}",
                 f"--coordinator-public-key={os.path.join(self.keys, 'coordinator.pub')}",
                 f"--authorized-keys={self.authorized}"],
                stdout=out, stderr=subprocess.STDOUT)

    def client_flags(self):
        return [f"--coordinator={self.control}",
                f"--key={os.path.join(self.keys, 'client.key')}",
                f"--coordinator-public-key={os.path.join(self.keys, 'coordinator.pub')}"]

    def status(self):
        result = subprocess.run([self.stagefarm, "cluster", "status", "--format=json"]
                                + self.client_flags(), capture_output=True, text=True)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def wait_workers(self, count, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.status()
            if status is not None and len(status) >= count:
                return
            time.sleep(0.1)
        raise Failure(f"{count} workers did not join within {timeout}s; coordinator log:\n"
                      + tail(self.log("coordinator")))

    def kill_worker(self, worker_id):
        self.workers[worker_id].send_signal(signal.SIGKILL)
        self.workers[worker_id].wait()

    def stop_coordinator(self):
        self.coordinator.send_signal(signal.SIGTERM)
        self.coordinator.wait(timeout=20)

    def stop(self):
        for process in list(self.workers.values()) + [self.coordinator]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in list(self.workers.values()) + [self.coordinator]:
            if process is None:
                continue
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self):
        return "\n".join(f"--- {name}.log\n{tail(self.log(name))}"
                         for name in ["coordinator"] + sorted(self.workers))


class Client:
    """`stagefarm build` with its own STAGEFARM_HOME holding busybox."""

    def __init__(self, work, bin_dir, name="client"):
        self.stagefarm = os.path.join(bin_dir, "stagefarm")
        self.home = os.path.join(work, name)
        os.makedirs(self.home, exist_ok=True)
        rootfs = os.path.join(work, "busybox-rootfs.tar")
        subprocess.run([os.path.join(SOURCE_ROOT, "scripts/lib/make-busybox-rootfs.sh"), rootfs],
                       check=True, capture_output=True)
        self.run(["image", "import", "--rootfs", "--change", f"ENV PATH={BASE_PATH}", rootfs,
                  "busybox"], check=True)

    def env(self, extra=None):
        env = dict(os.environ, STAGEFARM_HOME=self.home)
        env.update(extra or {})
        return env

    def run(self, args, check=False, env=None):
        result = subprocess.run([self.stagefarm] + args, capture_output=True, text=True,
                                env=self.env(env))
        if check and result.returncode != 0:
            raise Failure(f"stagefarm {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
        return result

    def start_build(self, cluster_flags, context, extra=(), env=None):
        return subprocess.Popen([self.stagefarm, "build", "--progress=json"] + cluster_flags
                                + list(extra) + [context], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(env))


class Build:
    """A running `stagefarm build --progress=json`: its events as they come."""

    def __init__(self, process):
        self.process = process
        self.events = []
        self.other = []
        self.lock = threading.Lock()
        self.started = time.time()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                with self.lock:
                    self.other.append(line)
                continue
            with self.lock:
                self.events.append(event)

    def wait_event(self, predicate, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for event in self.events:
                    if predicate(event):
                        return event
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.02)
        return None

    def finish(self, timeout=180):
        # stderr is the reader thread's; only stdout (the digest) is read here.
        stdout = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        self.seconds = time.time() - self.started
        self.digest = stdout.strip()
        return self.process.returncode

    def of(self, event_name, stage_name=None):
        return [e for e in self.events if e.get("event") == event_name
                and (stage_name is None or e.get("stage_name") == stage_name)]

    def describe(self):
        return "\n".join([json.dumps(e) for e in self.events[-30:]] + self.other[-20:])


def build_ok(client, cluster, context, extra=(), env=None):
    build = Build(client.start_build(cluster.client_flags(), context, extra, env))
    code = build.finish()
    check(code == 0, f"build of {context} failed ({code}):\n{build.describe()}\n{cluster.logs()}")
    return build


# --- scenarios ---------------------------------------------------------------

def scenario_fidelity(work, args):
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        cases = args.cases or os.path.join(
            os.environ.get("STAGEFARM_SHARED_DIR", os.path.join(SOURCE_ROOT, "..", "shared")),
            "fidelity")
        digests = {}
        for label, extra in [("cluster", " ".join(cluster.client_flags())), ("single", "--workers=1")]:
            wrapper = os.path.join(work, f"stagefarm-{label}")
            with open(wrapper, "w") as f:
                f.write("#!/bin/bash\n"
                        f'if [ "$1" = build ]; then shift; exec {args.bin}/stagefarm build {extra} "$@"; fi\n'
                        f'exec {args.bin}/stagefarm "$@"\n')
            os.chmod(wrapper, 0o755)
            keep = os.path.join(work, f"fidelity-{label}")
            result = subprocess.run(
                ["bash", os.path.join(SOURCE_ROOT, "tests/fidelity/run_fidelity.sh"),
                 "--skip-buildah", "--keep", keep, "--stagefarm", wrapper, cases],
                capture_output=True, text=True,
                env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
            print(result.stdout)
            check(result.returncode == 0, f"fidelity on {label}:\n{result.stdout}\n{result.stderr}\n"
                  + cluster.logs())
            for case in sorted(os.listdir(os.path.join(keep, "cases"))):
                index = os.path.join(keep, "cases", case, "stagefarm", "image", "index.json")
                with open(index) as f:
                    digests.setdefault(case, {})[label] = json.load(f)["manifests"][0]["digest"]
        for case, by in sorted(digests.items()):
            print(f"{case}: cluster {by.get('cluster')} single {by.get('single')}")
            check(by.get("cluster") == by.get("single"),
                  f"{case}: the cluster's image {by.get('cluster')} differs from one worker's "
                  f"{by.get('single')}")
    finally:
        cluster.stop()


def scenario_parallel(work, args):
    cases = args.cases or os.path.join(
        os.environ.get("STAGEFARM_SHARED_DIR", os.path.join(SOURCE_ROOT, "..", "shared")),
        "fidelity")
    client = Client(work, args.bin)
    context = os.path.join(cases, "12-parallel")
    for workers, bound in [(2, 4.0), (4, 2.0)]:
        cluster = Cluster(os.path.join(work, f"cluster{workers}"), args.bin, workers=workers)
        try:
            build = build_ok(client, cluster, context, ["--no-cache"])
            used = {e["worker"] for e in build.of("start")}
            check(len(used) == workers, f"{workers} workers: stages ran on {sorted(used)}")
            spans = {}
            for event in build.events:
                if event.get("stage_name", "").startswith("s") and event["event"] in ("start", "done"):
                    spans.setdefault(event["stage_name"], {})[event["event"]] = event["time"]
            print(f"parallel: {workers} one-slot workers: {build.seconds:.2f}s wall "
                  f"(sleeps {bound:.1f}s, overhead {build.seconds - bound:.2f}s) on {sorted(used)}")
        finally:
            cluster.stop()


def scenario_handoff(work, args):
    client = Client(work, args.bin)
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        context = write_context(work, "handoff", "\n".join([
            "FROM busybox AS big",
            "RUN dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null && echo small > /small",
            # The consumer builds on this one, whose 5 MB the scheduler
            # prefers to keep where they are: it runs on another worker
            # than the 200 MB stage and fetches only the artifact.
            "FROM busybox AS other",
            "RUN sleep 2 && dd if=/dev/zero of=/other bs=1M count=5 2>/dev/null",
            "FROM other",
            "COPY --from=big /small /small",
            ""]))
        build = build_ok(client, cluster, context)
        done = {e["stage_name"]: e for e in build.of("done")}
        final = [e for e in build.of("done") if e["stage_name"] == ""]
        check(final, f"no done event for the final stage:\n{build.describe()}")
        check(done["big"]["worker"] != final[0]["worker"],
              f"the consumer ran where the 200 MB stage did ({final[0]['worker']}): "
              "the hand-off was not exercised")
        fetched = final[0]["bytes_fetched"]
        print(f"handoff: the final stage on {final[0]['worker']} fetched {fetched} bytes "
              f"from the 200 MB stage on {done['big']['worker']}")
        check(fetched < 1_000_000, f"the consumer fetched {fetched} bytes (limit 1 MB)")
    finally:
        cluster.stop()


def scenario_kill_worker(work, args):
    client = Client(work, args.bin)
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        context = write_context(work, "kill", "\n".join([
            "FROM busybox AS slow",
            "RUN sleep 3 && echo slow > /slow",
            "FROM busybox",
            "COPY --from=slow /slow /slow",
            ""]))
        build = Build(client.start_build(cluster.client_flags(), context))
        started = build.wait_event(lambda e: e.get("event") == "start" and e.get("stage_name") == "slow")
        check(started is not None, f"the stage never started:\n{build.describe()}")
        victim = started["worker"]
        cluster.kill_worker(victim)
        code = build.finish()
        check(code == 0, f"the build failed after {victim} was killed:\n{build.describe()}\n"
              + cluster.logs())
        reruns = [e for e in build.of("start", "slow") if e["worker"] != victim]
        check(reruns, f"the stage did not run on another worker:\n{build.describe()}")
        print(f"kill-worker: {victim} killed mid-stage; the stage ran again on "
              f"{reruns[0]['worker']}; build done in {build.seconds:.1f}s")
    finally:
        cluster.stop()


def scenario_kill_holder(work, args):
    client = Client(work, args.bin)
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        context = write_context(work, "holder", "\n".join([
            "FROM busybox AS small",
            "RUN echo a > /a",
            "FROM busybox AS slow",
            "RUN sleep 6 && echo b > /b",
            "FROM slow",
            "COPY --from=small /a /a",
            ""]))
        build = Build(client.start_build(cluster.client_flags(), context))
        made = build.wait_event(lambda e: e.get("event") == "done" and e.get("stage_name") == "small")
        check(made is not None, f"the producer never finished:\n{build.describe()}")
        slow = build.wait_event(lambda e: e.get("event") == "start" and e.get("stage_name") == "slow")
        holder = made["worker"]
        check(slow is not None and slow["worker"] != holder,
              f"the producer and the slow stage shared {holder}")
        cluster.kill_worker(holder)
        code = build.finish()
        check(code == 0, f"the build failed after the holder {holder} was killed:\n"
              f"{build.describe()}\n{cluster.logs()}")
        again = [e for e in build.of("start", "small") if e["worker"] != holder]
        check(again, f"the producer did not run again elsewhere:\n{build.describe()}")
        print(f"kill-holder: {holder} (the only holder of small's artifact) killed; small ran "
              f"again on {again[0]['worker']}; build done in {build.seconds:.1f}s")
    finally:
        cluster.stop()


def scenario_restart(work, args):
    client = Client(work, args.bin)
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        context = write_context(work, "restart", "\n".join([
            "FROM busybox AS a", "RUN echo a > /a",
            "FROM busybox AS b", "RUN echo b > /b",
            "FROM busybox", "COPY --from=a /a /a", "COPY --from=b /b /b", ""]))
        first = build_ok(client, cluster, context)
        check(first.of("start"), "the first build ran nothing")
        cluster.stop_coordinator()
        cluster.start_coordinator()
        cluster.wait_workers(3)
        second = build_ok(client, cluster, context)
        check(not second.of("start"), f"the second build ran stages:\n{second.describe()}")
        check(second.of("cached"), f"the second build reported no cached stage:\n{second.describe()}")
        check(second.digest == first.digest, f"{second.digest} != {first.digest}")
        print(f"restart: after a coordinator restart the rebuild ran no stage "
              f"({second.seconds:.2f}s), same image {second.digest}")
    finally:
        cluster.stop()


def scenario_shared(work, args):
    # Two clients (two machines of a CI fleet, say), each with its own store.
    client = Client(work, args.bin)
    other_client = Client(work, args.bin, "other-client")
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        shared = ["FROM busybox AS shared", "RUN sleep 2 && echo s > /s"]
        one = write_context(work, "one", "\n".join(shared + ["FROM busybox", "COPY --from=shared /s /one", ""]))
        two = write_context(work, "two", "\n".join(shared + ["FROM busybox", "COPY --from=shared /s /two", ""]))
        builds = [Build(client.start_build(cluster.client_flags(), one)),
                  Build(other_client.start_build(cluster.client_flags(), two))]
        for build in builds:
            check(build.finish() == 0, f"a build failed:\n{build.describe()}\n{cluster.logs()}")
        runs = sum(len(build.of("start", "shared")) for build in builds)
        check(runs == 1, f"the shared stage ran {runs} times:\n"
              + "\n".join(build.describe() for build in builds))
        print("shared: two concurrent builds, the shared stage ran once")
    finally:
        cluster.stop()


def scenario_cached(work, args):
    client = Client(work, args.bin)
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        context = write_context(work, "cached", "\n".join([
            "FROM busybox AS a", "RUN echo a > /a",
            "FROM busybox", "COPY --from=a /a /a", "RUN echo done", ""]))
        first = build_ok(client, cluster, context)
        times = []
        for _ in range(3):
            again = build_ok(client, cluster, context)
            check(not again.of("start"), f"the rebuild ran stages:\n{again.describe()}")
            check(again.digest == first.digest, "the rebuild made another image")
            times.append(again.seconds)
        print(f"cached: rebuild against a running cluster {min(times) * 1000:.0f} ms "
              f"(best of 3; all {[round(t * 1000) for t in times]} ms)")
    finally:
        cluster.stop()


def processes_with(text):
    """The pids of processes whose command line contains `text`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry))
    return pids


def live_descendants(pids):
    """The processes below `pids` (children, grandchildren, ...), zombies
    left out: {pid: command name}."""
    children = {}
    names = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        names[int(entry)] = stat[stat.index("(") + 1:stat.rindex(")")]
    found = {}
    pending = list(pids)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found[child] = names[child]
                pending.append(child)
    return found


def alive(pids):
    """Those of `pids` that still run (not gone, not zombies)."""
    living = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[0] != "Z":
            living.append(pid)
    return living


def scenario_embedded_orphan(work, args):
    """`stagefarm build --workers 1` killed with SIGKILL in the middle of a
    RUN: the embedded cluster's daemons, and the step's sandbox, go too."""
    client = Client(work, args.bin)
    context = write_context(work, "orphan", "FROM busybox\nRUN sleep 120\n")
    build = Build(client.start_build(["--workers", "1"], context))
    daemons_of = f"--data-dir={client.home}/cluster"
    started = build.wait_event(lambda e: e.get("event") == "step" or e.get("event") == "start",
                               timeout=60)
    daemons = processes_with(daemons_of)
    try:
        check(started is not None, f"the build did not start its stage:\n{build.describe()}")
        check(len(daemons) == 2, f"expected a coordinator and a worker, found pids {daemons}")
        # Until the step's process runs: runc's children, below the worker.
        deadline = time.time() + 60
        step = {}
        while time.time() < deadline and "sleep" not in step.values():
            time.sleep(0.05)
            step = live_descendants(daemons)
        check("sleep" in step.values(), f"the step never ran:\n{build.describe()}")
        build.process.send_signal(signal.SIGKILL)
        killed = time.time()
        build.process.wait(timeout=10)
        deadline = time.time() + 20
        while time.time() < deadline and alive(daemons + list(step)):
            time.sleep(0.1)
        logs = "\n".join(f"--- {name}:\n{tail(os.path.join(client.home, 'cluster', name))}"
                         for name in sorted(os.listdir(os.path.join(client.home, "cluster")))
                         if name.endswith(".log"))
        check(not alive(daemons), f"daemons outlived the client: {alive(daemons)}\n{logs}")
        check(not alive(list(step)),
              f"the step outlived the client: {[step[p] for p in alive(list(step))]}\n{logs}")
        print(f"embedded-orphan: the daemons and the step ({', '.join(sorted(step.values()))}) "
              f"ended {time.time() - killed:.1f} s after the client")
    finally:
        for pid in alive(daemons):
            os.kill(pid, signal.SIGKILL)


def scenario_interrupt(work, args):
    """Ctrl-C (SIGINT) to `stagefarm build` during a RUN, in process
    (--workers 0) and on the embedded cluster (--workers 1): the build ends
    non-zero, saying it was cancelled, and the step's container is gone."""
    client = Client(work, args.bin)
    context = write_context(work, "interrupt", "FROM busybox\nRUN sleep 120\n")
    for flags in (["--workers", "0"], ["--workers", "1"]):
        process = subprocess.Popen([client.stagefarm, "build", "--progress=plain"] + flags
                                   + [context], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=client.env())
        try:
            deadline = time.time() + 60
            below = {}
            while time.time() < deadline and "sleep" not in below.values():
                time.sleep(0.05)
                below = live_descendants([process.pid])
            check("sleep" in below.values(), f"{flags}: the step never ran")
            process.send_signal(signal.SIGINT)
            interrupted = time.time()
            _, stderr = process.communicate(timeout=30)
            check(process.returncode != 0, f"{flags}: exit 0 after Ctrl-C")
            check("cancelled" in stderr, f"{flags}: no word of the cancel:\n{tail_of(stderr)}")
            deadline = time.time() + 10
            while time.time() < deadline and alive(list(below)):
                time.sleep(0.1)
            check(not alive(list(below)),
                  f"{flags}: left running: {[below[p] for p in alive(list(below))]}")
            print(f"interrupt {' '.join(flags)}: exit {process.returncode} "
                  f"{time.time() - interrupted:.1f} s after Ctrl-C, the step gone")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def tail_of(text, lines=20):
    return "\n".join(text.splitlines()[-lines:])


def read(path):
    with open(path) as f:
        return f.read()


def scenario_build_context(work, args):
    client = Client(work, args.bin)
    src = os.path.join(work, "src")
    os.makedirs(src)
    for name, text in [("greeting.txt", "hello\n"), ("ignored.txt", "never sent\n"),
                       (".dockerignore", "ignored.txt\n")]:
        with open(os.path.join(src, name), "w") as f:
            f.write(text)
    rootfs = os.path.join(work, "rootfs")
    os.makedirs(rootfs)
    with open(os.path.join(rootfs, "hello.txt"), "w") as f:
        f.write("from a directory\n")
    # `base` is a docker-image:// context (FROM NAME swaps the image); `src`
    # and `rootfs` are directories; `replaced` names a stage, which the
    # context replaces (its RUN would fail).
    context = write_context(work, "build-context", "\n".join([
        "FROM base AS tools", "RUN echo tools > /tools.txt",
        "FROM busybox AS lib", "COPY --from=src . /lib/",
        "FROM busybox AS other", "RUN echo other > /other.txt",
        "FROM rootfs AS fromdir",
        "FROM busybox AS replaced", "RUN exit 1",
        "FROM base",
        "COPY --from=lib /lib /out/lib",
        "COPY --from=tools /tools.txt /out/tools.txt",
        "COPY --from=other /other.txt /out/other.txt",
        "COPY --from=fromdir /hello.txt /out/hello.txt",
        "COPY --from=replaced /bin/busybox /out/busybox",
        "RUN --mount=type=bind,from=src,target=/m cat /m/greeting.txt > /out/mounted.txt",
        ""]))
    flags = ["--build-context", f"src={src}", "--build-context", "base=docker-image://busybox",
             "--build-context", f"rootfs={rootfs}",
             "--build-context", "replaced=docker-image://busybox:latest",
             "--build-context", f"unused={rootfs}"]

    def build(out, extra=(), cluster_flags=()):
        b = Build(client.start_build(list(cluster_flags), context,
                                     flags + ["--output", f"type=local,dest={out}"] + list(extra)))
        code = b.finish(timeout=600)
        check(code == 0, f"build failed ({code}):\n{b.describe()}")
        return b

    def check_output(out, greeting):
        for name, want in [("lib/greeting.txt", greeting), ("tools.txt", "tools\n"),
                           ("other.txt", "other\n"), ("hello.txt", "from a directory\n"),
                           ("mounted.txt", greeting)]:
            path = os.path.join(out, "out", name)
            check(os.path.exists(path), f"{path} is missing")
            check(read(path) == want, f"{path}: {read(path)!r}, not {want!r}")
        check(not os.path.exists(os.path.join(out, "out/lib/ignored.txt")),
              "src/.dockerignore was not applied")
        check(os.path.getsize(os.path.join(out, "out/busybox")) > 100000,
              "the replaced stage is not the busybox image")

    metadata = os.path.join(work, "metadata.json")
    first = build(os.path.join(work, "out1"), ["--metadata-file", metadata])
    check_output(os.path.join(work, "out1"), "hello\n")
    # Sent: src's greeting.txt and .dockerignore (not ignored.txt) and
    # rootfs's hello.txt; nothing of the main context or of `unused`.
    sent = json.loads(read(metadata))["stagefarm.client"]["context_files"]
    check(sent == 3, f"{sent} context files sent, not 3")
    # The build succeeding says as much (its RUN exits 1); no step of it was shown either.
    check(not [e for e in first.events if e.get("stage_name") == "replaced"
               and "exit 1" in str(e.get("text", ""))],
          f"the replaced stage ran its own instructions:\n{first.describe()}")

    with open(os.path.join(src, "greeting.txt"), "w") as f:
        f.write("hello again\n")
    second = build(os.path.join(work, "out2"))
    check_output(os.path.join(work, "out2"), "hello again\n")
    check(second.of("start", "lib"), f"the stage reading src did not run:\n{second.describe()}")
    for stage in ["tools", "other", "fromdir"]:
        check(not second.of("start", stage),
              f"stage {stage} ran again though it reads nothing of src:\n{second.describe()}")

    build(os.path.join(work, "out3"), ["--workers", "0"])
    check_output(os.path.join(work, "out3"), "hello again\n")

    # And on a distributed cluster: a CURVE coordinator and three workers.
    cluster = Cluster(os.path.join(work, "cluster"), args.bin)
    try:
        build(os.path.join(work, "out4"), cluster_flags=cluster.client_flags())
        check_output(os.path.join(work, "out4"), "hello again\n")
    finally:
        cluster.stop()

    bad = client.run(["build", "--build-context", f"src={os.path.join(work, 'nope')}", context])
    check(bad.returncode != 0 and f"--build-context src={os.path.join(work, 'nope')}" in bad.stderr,
          f"a missing directory: exit {bad.returncode}, {bad.stderr!r}")
    print("build-context: named directories and images on the embedded cluster, in process and "
          "on a CURVE cluster; an edit re-ran only the stage reading it")


SCENARIOS = {
    "fidelity": scenario_fidelity,
    "parallel": scenario_parallel,
    "handoff": scenario_handoff,
    "kill-worker": scenario_kill_worker,
    "kill-holder": scenario_kill_holder,
    "restart": scenario_restart,
    "shared": scenario_shared,
    "cached": scenario_cached,
    "build-context": scenario_build_context,
    "embedded-orphan": scenario_embedded_orphan,
    "interrupt": scenario_interrupt,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--bin", required=True, help="directory of the stagefarm binaries")
    parser.add_argument("--keep", help="work here and keep it")
    parser.add_argument("--cases", help="fidelity cases directory")
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        work = os.path.abspath(args.keep)
    else:
        work = tempfile.mkdtemp(prefix=f"cluster-{args.scenario}.")
    try:
        SCENARIOS[args.scenario](work, args)
    except Failure as failure:
        print(f"cluster_e2e {args.scenario}: FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"cluster_e2e {args.scenario}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

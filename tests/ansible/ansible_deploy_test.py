#!/usr/bin/env python3
"""ansible_deploy_test.py --bin DIR [--keep DIR]

Issue 8's acceptance: the real playbook (ansible/site.yml) deploys a
coordinator and two workers onto this machine (inventory hosts with
ansible_connection=local, each with its own directories and ports on
127.0.0.1, stagefarm_service_manager=none so that start-stop-daemon runs the
daemons), and then:

  1. a multi-stage build through that cluster, CURVE on, with a client key
     the inventory authorises, gives the same image digest as the embedded
     cluster (`stagefarm build --workers 2`), both with SOURCE_DATE_EPOCH set
     and the same busybox base imported;
  2. a second run of the playbook changes nothing (changed=0 on every host);
  3. with a worker removed from the inventory, a third run shuts it out: the
     coordinator no longer lists it and refuses its key.

The binaries come from --bin (the build's bin/), copied by the playbook into
per-host directories under a temp dir. Every daemon the playbook started is
stopped at the end, also on failure. Needs root (the workers run runc).
Exit 0 when everything held; what failed otherwise, with the logs' tails.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "testing"))
from e2e import BASE_PATH, SOURCE_ROOT, Failure, check, free_port, run, tail  # noqa: E402

PLAYBOOK_DIR = os.path.join(SOURCE_ROOT, "ansible")
EPOCH = "1700000000"
HOSTS = ["coordinator", "w1", "w2"]

DOCKERFILE = """\
FROM busybox AS base
RUN echo base > /base
FROM busybox AS left
RUN echo left > /left
FROM busybox AS right
RUN echo right > /right
FROM base
COPY --from=left /left /left
COPY --from=right /right /right
RUN cat /base /left /right > /all
"""


class Stopped(Exception):
    pass


class Deployment:
    """The inventory, the playbook runs and the nodes' directories."""

    def __init__(self, work, bin_dir):
        self.work = work
        self.bin = bin_dir
        self.stagefarm = os.path.join(bin_dir, "stagefarm")
        self.ports = {"control": free_port(), "blob": free_port(), "w1": free_port(),
                      "w2": free_port()}
        self.control = f"tcp://127.0.0.1:{self.ports['control']}"
        # The client: a key of its own, authorised through the inventory.
        self.client_keys = os.path.join(work, "client-keys")
        run([self.stagefarm, "keys", "generate", self.client_keys, "--name", "client"])
        with open(os.path.join(self.client_keys, "client.pub")) as f:
            self.client_public_key = f.read().strip()
        # Ansible's own files stay in the temp dir; no ansible.cfg of the machine applies.
        self.ansible_home = os.path.join(work, "ansible-home")
        os.makedirs(self.ansible_home)
        self.ansible_cfg = os.path.join(work, "ansible.cfg")
        with open(self.ansible_cfg, "w") as f:
            f.write("[defaults]\n[connection]\npipelining = True\n")

    def node(self, host):
        return os.path.join(self.work, "nodes", host)

    def config_dir(self, host):
        return os.path.join(self.node(host), "etc")

    def run_dir(self, host):
        return os.path.join(self.node(host), "run")

    def log(self, host):
        daemon = "coordinator" if host == "coordinator" else "worker"
        return os.path.join(self.node(host), "log", f"stagefarm-{daemon}.log")

    def inventory(self, workers):
        def host_vars(host):
            node = self.node(host)
            return {
                "ansible_connection": "local",
                "ansible_python_interpreter": "/usr/bin/python3",
                "stagefarm_bin_dir": os.path.join(node, "bin"),
                "stagefarm_config_dir": self.config_dir(host),
                "stagefarm_run_dir": self.run_dir(host),
                "stagefarm_log_dir": os.path.join(node, "log"),
            }
        coordinator = host_vars("coordinator")
        coordinator.update({
            "stagefarm_coordinator_port": self.ports["control"],
            "stagefarm_coordinator_blob_port": self.ports["blob"],
            "stagefarm_coordinator_data_dir": os.path.join(self.node("coordinator"), "data"),
            "stagefarm_coordinator_no_worker_grace": "20s",
        })
        worker_hosts = {}
        for host in workers:
            worker_hosts[host] = host_vars(host)
            worker_hosts[host].update({
                "stagefarm_worker_port": self.ports[host],
                "stagefarm_worker_data_dir": os.path.join(self.node(host), "data"),
                "stagefarm_worker_slots": 1,
                "stagefarm_worker_labels": {"test": host},
                "stagefarm_worker_store_size_cap": "2G",
            })
        return {"all": {
            "vars": {
                "stagefarm_service_manager": "none",
                "stagefarm_user": "root",
                "stagefarm_group": "root",
                "stagefarm_local_bin_dir": self.bin,
                "stagefarm_listen_address": "127.0.0.1",
                "stagefarm_advertise_host": "127.0.0.1",
                "stagefarm_lease_timeout": "3s",
                "stagefarm_heartbeat_interval": "500ms",
                "stagefarm_stop_timeout": 20,
                "stagefarm_client_public_keys": {"test": self.client_public_key},
            },
            "children": {
                "stagefarm_coordinator": {"hosts": {"coordinator": coordinator}},
                "stagefarm_workers": {"hosts": worker_hosts},
            },
        }}

    def playbook(self, label, workers):
        """Runs site.yml; returns {host: changed count} from the recap."""
        inventory = os.path.join(self.work, f"inventory-{label}.yml")
        with open(inventory, "w") as f:
            json.dump(self.inventory(workers), f, indent=1)
        env = dict(os.environ, ANSIBLE_CONFIG=self.ansible_cfg, ANSIBLE_HOME=self.ansible_home,
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.ansible_home, "tmp"),
                   ANSIBLE_REMOTE_TEMP=os.path.join(self.ansible_home, "remote-tmp"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_STDOUT_CALLBACK="default")
        started = time.time()
        result = subprocess.run(["ansible-playbook", "-i", inventory, "site.yml"], cwd=PLAYBOOK_DIR,
                                env=env, capture_output=True, text=True)
        seconds = time.time() - started
        output = os.path.join(self.work, f"playbook-{label}.log")
        with open(output, "w") as f:
            f.write(result.stdout + result.stderr)
        check(result.returncode == 0,
              f"playbook run '{label}' failed ({result.returncode}):\n"
              + "\n".join(result.stdout.splitlines()[-60:]) + result.stderr + self.logs())
        recap = {}
        for line in result.stdout.split("PLAY RECAP")[-1].splitlines():
            m = re.match(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                         line)
            if m:
                recap[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3))}
        check(set(recap) == set(["coordinator"] + workers),
              f"playbook run '{label}': recap names {sorted(recap)}:\n{result.stdout[-3000:]}")
        print(f"playbook run '{label}': {seconds:.1f}s, "
              + ", ".join(f"{h} ok={r['ok']} changed={r['changed']}" for h, r in sorted(recap.items())))
        return recap

    def status(self, key, coordinator_public_key):
        return subprocess.run([self.stagefarm, "cluster", "status", "--format=json",
                               f"--coordinator={self.control}", f"--key={key}",
                               f"--coordinator-public-key={coordinator_public_key}"],
                              capture_output=True, text=True)

    def coordinator_pub(self):
        return os.path.join(self.config_dir("coordinator"), "keys", "coordinator.pub")

    def client_flags(self):
        return [f"--coordinator={self.control}",
                f"--key={os.path.join(self.client_keys, 'client.key')}",
                f"--coordinator-public-key={self.coordinator_pub()}"]

    def workers(self):
        result = self.status(os.path.join(self.client_keys, "client.key"), self.coordinator_pub())
        check(result.returncode == 0, f"cluster status with the client key failed:\n{result.stderr}")
        return {w["worker"]: w for w in json.loads(result.stdout)}

    def stop_all(self):
        """Stops every daemon a playbook run started (by their pidfiles)."""
        for host in HOSTS:
            for daemon in ("worker", "coordinator"):
                pidfile = os.path.join(self.run_dir(host), f"stagefarm-{daemon}.pid")
                if os.path.exists(pidfile):
                    subprocess.run(["start-stop-daemon", "--stop", "--oknodo", "--remove-pidfile",
                                    "--pidfile", pidfile, "--retry", "TERM/20/KILL/5"],
                                   capture_output=True)

    def logs(self):
        return "\n".join(f"--- {host}: {self.log(host)}\n{tail(self.log(host))}" for host in HOSTS)


def build(stagefarm, home, context, flags):
    """`stagefarm build` with STAGEFARM_HOME=home and SOURCE_DATE_EPOCH; returns
    (digest, workers that ran stages, seconds)."""
    env = dict(os.environ, STAGEFARM_HOME=home, SOURCE_DATE_EPOCH=EPOCH)
    started = time.time()
    result = run([stagefarm, "build", "--progress=json"] + flags + [context], env=env,
                 check_ok=False)
    seconds = time.time() - started
    check(result.returncode == 0,
          f"stagefarm build {' '.join(flags)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    workers = set()
    for line in result.stderr.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "start" and event.get("worker"):
            workers.add(event["worker"])
    return result.stdout.strip(), workers, seconds


def import_busybox(stagefarm, home, rootfs):
    os.makedirs(home, exist_ok=True)
    run([stagefarm, "image", "import", "--rootfs", "--change", f"ENV PATH={BASE_PATH}", rootfs,
         "busybox"], env=dict(os.environ, STAGEFARM_HOME=home))


def scenario(work, bin_dir):
    deployment = Deployment(work, bin_dir)
    try:
        # 1. Deploy, and build through the deployed cluster and the embedded one.
        deployment.playbook("deploy", ["w1", "w2"])
        workers = deployment.workers()
        check(sorted(workers) == ["w1", "w2"], f"the coordinator lists {sorted(workers)}")
        for name, worker in workers.items():
            check(worker["labels"] == [f"test={name}"] and worker["slots"] == 1
                  and worker["store_cap_bytes"] == 2 << 30,
                  f"{name} did not get its flagfile's labels, slots and store cap: {worker}")
        for host in ["w1", "w2"]:
            key = os.path.join(deployment.config_dir(host), "keys", f"{host}.key")
            mode = os.stat(key).st_mode & 0o777
            check(mode == 0o600, f"{key} has mode {oct(mode)}")

        rootfs = os.path.join(work, "busybox-rootfs.tar")
        run([os.path.join(SOURCE_ROOT, "scripts/lib/make-busybox-rootfs.sh"), rootfs])
        context = os.path.join(work, "context")
        os.makedirs(context)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        stagefarm = os.path.join(bin_dir, "stagefarm")
        cluster_home = os.path.join(work, "client-home")
        import_busybox(stagefarm, cluster_home, rootfs)
        deployed, used, seconds = build(stagefarm, cluster_home, context, deployment.client_flags())
        print(f"deployed cluster: {deployed} in {seconds:.1f}s, stages ran on {sorted(used)}")
        check(used and used <= {"w1", "w2"}, f"the stages ran on {sorted(used)}")
        embedded_home = os.path.join(work, "embedded-home")
        import_busybox(stagefarm, embedded_home, rootfs)
        embedded, _, seconds = build(stagefarm, embedded_home, context, ["--workers=2"])
        print(f"embedded cluster: {embedded} in {seconds:.1f}s")
        check(deployed.startswith("sha256:") and deployed == embedded,
              f"the deployed cluster made {deployed!r}, the embedded one {embedded!r}")

        # 2. Nothing to change.
        recap = deployment.playbook("again", ["w1", "w2"])
        changed = {host: r["changed"] for host, r in recap.items() if r["changed"] != 0}
        check(not changed, f"the second run changed something: {changed}; see "
              f"{os.path.join(work, 'playbook-again.log')}")

        # 3. w2 leaves the inventory: shut out.
        deployment.playbook("remove-w2", ["w1"])
        workers = deployment.workers()
        check(sorted(workers) == ["w1"], f"after w2's removal the coordinator lists {sorted(workers)}")
        w2_keys = os.path.join(deployment.config_dir("w2"), "keys")
        refused = deployment.status(os.path.join(w2_keys, "w2.key"),
                                    os.path.join(deployment.config_dir("w2"), "coordinator.pub"))
        check(refused.returncode != 0,
              f"w2's key still gets the cluster status after its removal:\n{refused.stdout}")
        print(f"removed w2: the coordinator lists {sorted(workers)}; w2's key is refused "
              f"(exit {refused.returncode}: {refused.stderr.strip()})")
        time.sleep(2)
        workers = deployment.workers()
        check("w2" not in workers, f"w2 joined again: {sorted(workers)}")
    finally:
        deployment.stop_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="directory of the stagefarm binaries")
    parser.add_argument("--keep", help="work here and keep it")
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        work = os.path.abspath(args.keep)
    else:
        work = tempfile.mkdtemp(prefix="ansible-deploy.")

    def stop(signum, frame):
        raise Stopped(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    started = time.time()
    try:
        scenario(work, bin_dir)
    except (Failure, Stopped) as failure:
        print(f"ansible_deploy_test: FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"ansible_deploy_test: passed in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

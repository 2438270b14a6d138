"""What the end-to-end scripts share (tests/cluster, tests/registry,
tests/ansible, bench/*.py): failures, free loopback ports, running commands,
the tails of logs, build contexts. Import it after putting tests/testing on
sys.path."""
import os
import socket
import subprocess

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The PATH base images get (`stagefarm image import --change ENV PATH=...`).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, check_ok=True, env=None, text=True, cwd=None):
    """Runs `args`; Failure with its output when it exits non-zero (unless not check_ok)."""
    result = subprocess.run(args, capture_output=True, text=text, env=env, cwd=cwd)
    if check_ok and result.returncode != 0:
        raise Failure(f"{' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def tail(path, lines=20):
    """The last `lines` lines of the file at `path`, or "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def write_context(work, name, dockerfile):
    """A build context WORK/NAME holding only a Dockerfile with this text."""
    context = os.path.join(work, name)
    os.makedirs(context, exist_ok=True)
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    return context

#!/usr/bin/env python3
"""registry_e2e.py SCENARIO --bin DIR [--keep DIR] [--cache DIR]

`stagefarm image pull`, `image push` and `build --push` against Debian's
docker-registry (distribution 2.8), started here on 127.0.0.1 on a free port
with a temporary storage dir and config, and stopped here. The base image is
made from Debian's busybox-static (scripts/lib/make-busybox-rootfs.sh), turned
into an OCI layout with umoci and put in the registry with `skopeo copy`, so
what stagefarm pulls was written by another tool.

Scenarios (one ctest test each):
  plain    no auth: pull (tag, digest, platform from an index), a multi-stage
           build FROM the registry image in a fresh store with --push,
           `skopeo inspect` shows the digest the build printed, the pushed
           image round-trips through `skopeo copy` and `umoci unpack`; a push
           to another repository mounts the blobs; a push of uncompressed
           layers goes up in PATCH chunks and has the digest an OCI export
           of the same image has
  basic    htpasswd basic auth, credentials from $DOCKER_CONFIG/config.json;
           without them the error names the registry and the file
  bearer   the registry's token auth: a token server written here (JWT
           signed with a self-signed key via openssl) that wants basic
           credentials
  flaky    a proxy in front of the registry answers 503 to the first two
           requests: pull and push still work
  corrupt  a proxy flips a byte of the layer blob: the pull fails naming the
           digest, nothing is tagged and the layer is not kept
  cluster  a build on the embedded cluster (two workers) FROM the registry
           image: the client pulls it, the cluster builds, --push pushes
Exit 0 when the scenario passed; what failed otherwise, with the logs' tails.
"""
import argparse
import base64
import hashlib
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "testing"))
from e2e import (BASE_PATH, SOURCE_ROOT, Failure, check, free_port, run, tail,  # noqa: E402
                 write_context)


class Registry:
    """docker-registry serving a temp dir on 127.0.0.1:PORT."""

    def __init__(self, work, name, auth_yaml=""):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.dir = os.path.join(work, name)
        os.makedirs(os.path.join(self.dir, "storage"))
        self.config = os.path.join(self.dir, "config.yml")
        self.log_path = os.path.join(self.dir, "registry.log")
        with open(self.config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {self.dir}/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
{auth_yaml}""")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(["docker-registry", "serve", self.config],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise Failure(f"docker-registry exited {self.process.returncode}\n"
                              f"{tail(self.log_path)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.1)
        raise Failure(f"docker-registry did not listen on {self.host}\n{tail(self.log_path)}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Proxy:
    """An HTTP proxy in front of a registry (Host passed through, so the
    registry's Location URLs name the proxy). `fail_first` requests get 503;
    a GET of the blob `corrupt` gets one byte flipped."""

    def __init__(self, upstream_port, fail_first=0, corrupt=None):
        self.upstream_port = upstream_port
        self.fail_first = fail_first
        self.corrupt = corrupt
        self.requests = 0
        self.failed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.failed < proxy.fail_first
                    if fail:
                        proxy.failed += 1
                if fail:
                    message = b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(message)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port,
                                                      timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "content-length")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if (proxy.corrupt and self.command == "GET"
                        and self.path.endswith("/blobs/" + proxy.corrupt) and data):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A bearer-token realm for the registry's `auth: token`: checks basic
    credentials, then issues an RS256 JWT (signed by openssl with a key whose
    self-signed certificate is the registry's rootcertbundle) granting what
    the scopes ask for."""

    ISSUER = "stagefarm-test-issuer"
    SERVICE = "stagefarm-test-registry"

    def __init__(self, work, username, password):
        self.dir = os.path.join(work, "token")
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "key.pem")
        self.cert = os.path.join(self.dir, "cert.pem")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
             "-out", self.cert, "-days", "2", "-subj", "/CN=stagefarm-test-token"])
        der = run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                  text=False).stdout
        self.x5c = base64.b64encode(der).decode()
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.issued = 0
        self.refused = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.headers.get("Authorization") != server.expected:
                    server.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                body = json.dumps({"token": server.token(query.get("scope", []))}).encode()
                server.issued += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scopes):
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": "tester", "aud": self.SERVICE, "exp": now + 600,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing_input.encode(), capture_output=True,
                                   check=True).stdout
        return signing_input + "." + b64url(signature)

    def auth_yaml(self):
        return f"""auth:
  token:
    realm: {self.realm}
    service: {self.SERVICE}
    issuer: {self.ISSUER}
    rootcertbundle: {self.cert}
"""

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Stagefarm:
    def __init__(self, bin_dir, home, docker_config=None):
        self.binary = os.path.join(bin_dir, "stagefarm")
        self.home = home
        os.makedirs(home, exist_ok=True)
        # Builds made twice must give the same image (config times included).
        self.env = dict(os.environ, STAGEFARM_HOME=home, SOURCE_DATE_EPOCH="1700000000")
        self.env["DOCKER_CONFIG"] = docker_config or os.path.join(home, "no-docker-config")

    def run(self, args, check_ok=True):
        return run([self.binary] + args, check_ok=check_ok, env=self.env)

    def json(self, args):
        return json.loads(self.run(args + ["--format", "json"]).stdout)


CACHE_DIR = None  # --cache: where the busybox root filesystem tar is kept between scenarios


def busybox_rootfs(work):
    """The busybox root filesystem tar (make-busybox-rootfs.sh), from the
    cache when it has one for the installed busybox-static."""
    version = run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"]).stdout.strip()
    name = f"busybox-rootfs-{version.replace(':', '_')}.tar"
    if CACHE_DIR and os.path.exists(os.path.join(CACHE_DIR, name)):
        return os.path.join(CACHE_DIR, name)
    made = os.path.join(work, name)
    run([os.path.join(SOURCE_ROOT, "scripts/lib/make-busybox-rootfs.sh"), made])
    if not CACHE_DIR:
        return made
    os.makedirs(CACHE_DIR, exist_ok=True)
    partial = os.path.join(CACHE_DIR, f"{name}.{os.getpid()}")
    shutil.copyfile(made, partial)
    os.replace(partial, os.path.join(CACHE_DIR, name))
    return made


def make_base_layout(work):
    """An OCI layout at work/base with `busybox` (this host's platform) and
    `multi`, an index of it and a copy claiming linux/arm64."""
    rootfs_tar = busybox_rootfs(work)
    layout = os.path.join(work, "base")
    bundle = os.path.join(work, "bundle")
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:busybox"])
    run(["umoci", "unpack", "--image", f"{layout}:busybox", bundle])
    run(["tar", "-xf", rootfs_tar, "-C", os.path.join(bundle, "rootfs")])
    run(["umoci", "repack", "--image", f"{layout}:busybox", bundle])
    run(["umoci", "config", "--image", f"{layout}:busybox", "--config.env", f"PATH={BASE_PATH}",
         "--config.cmd", "sh"])
    run(["umoci", "gc", "--layout", layout])

    def blob_path(digest):
        return os.path.join(layout, "blobs", "sha256", digest.split(":")[1])

    def put_blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(blob_path(digest), "wb") as f:
            f.write(data)
        return {"digest": digest, "size": len(data)}

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    amd = next(m for m in index["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "busybox")
    with open(blob_path(amd["digest"]), "rb") as f:
        manifest = json.load(f)
    with open(blob_path(manifest["config"]["digest"]), "rb") as f:
        config = json.load(f)
    config["architecture"] = "arm64"
    arm_config = put_blob(json.dumps(config).encode())
    arm_manifest = dict(manifest, config=dict(manifest["config"], **arm_config))
    arm = put_blob(json.dumps(arm_manifest).encode())
    inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": amd["digest"], "size": amd["size"],
                  "platform": {"os": "linux", "architecture": "amd64"}},
                 {"mediaType": "application/vnd.oci.image.manifest.v1+json", **arm,
                  "platform": {"os": "linux", "architecture": "arm64"}}]}
    inner_blob = put_blob(json.dumps(inner).encode())
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                               **inner_blob,
                               "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    return layout, rootfs_tar, arm["digest"]


def skopeo_push(layout, tag, target, creds=None):
    args = ["skopeo", "copy", "--all", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    run(args + [f"oci:{layout}:{tag}", f"docker://{target}"])


def skopeo_digest(ref, creds=None):
    args = ["skopeo", "inspect", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    return json.loads(run(args + [f"docker://{ref}"]).stdout)["Digest"]


def scenario_plain(work, bin_dir):
    layout, rootfs_tar, arm_digest = make_base_layout(work)
    registry = Registry(work, "registry")
    try:
        host = registry.host
        skopeo_push(layout, "busybox", f"{host}/library/busybox:1")
        skopeo_push(layout, "multi", f"{host}/library/busybox:multi")
        insecure = ["--insecure-registry", host]

        client = Stagefarm(bin_dir, os.path.join(work, "client"))
        pulled = client.json(["image", "pull"] + insecure + [f"{host}/library/busybox:1"])
        check(pulled["digest"] == skopeo_digest(f"{host}/library/busybox:1"),
              f"pulled digest {pulled['digest']} is not the registry's")
        check(pulled["layers_fetched"] == 1, f"first pull: {pulled}")
        again = client.json(["image", "pull"] + insecure + [f"{host}/library/busybox:1"])
        check(again["layers_fetched"] == 0 and again["layers_present"] == 1,
              f"second pull fetched layers again: {again}")
        by_digest = client.json(["image", "pull"] + insecure +
                                [f"{host}/library/busybox@{pulled['digest']}"])
        check(by_digest["digest"] == pulled["digest"], f"pull by digest: {by_digest}")
        listed = client.run(["image", "ls"]).stdout
        check(f"{host}/library/busybox:1" in listed, f"image ls after pull:\n{listed}")

        multi = client.json(["image", "pull"] + insecure + [f"{host}/library/busybox:multi"])
        check(multi["platform"] == "linux/amd64" and multi["digest"] == pulled["digest"],
              f"index pulled for this host: {multi}")
        arm = client.json(["image", "pull", "--platform", "linux/arm64"] + insecure +
                          [f"{host}/library/busybox:multi"])
        check(arm["platform"] == "linux/arm64" and arm["digest"] == arm_digest,
              f"index pulled for linux/arm64: {arm}")
        index_digest = skopeo_digest(f"{host}/library/busybox:multi")
        client.json(["image", "pull"] + insecure + [f"{host}/library/busybox@{index_digest}"])
        inspected = client.run(["image", "inspect", f"{host}/library/busybox@{index_digest}"])
        check('"architecture":"amd64"' in inspected.stdout,
              f"a pull by an index digest resolves to the host's image:\n{inspected.stdout}")

        # A build in a fresh store: FROM pulls, --push pushes.
        builder = Stagefarm(bin_dir, os.path.join(work, "builder"))
        context = write_context(work, "context", "\n".join([
            f"FROM {host}/library/busybox:1 AS build",
            "RUN echo built > /built.txt",
            f"FROM {host}/library/busybox:1",
            "COPY --from=build /built.txt /built.txt",
            'CMD ["cat", "/built.txt"]', ""]))
        out = f"{host}/out:1"
        built = builder.run(["build", "--workers", "0", "--progress", "plain", "--push",
                             "-t", out] + insecure + [context])
        digest = built.stdout.strip().splitlines()[-1]
        check(f"pulling {host}/library/busybox:1" in built.stderr,
              f"the build did not pull its base:\n{built.stderr}")
        check(f"pushed {out}@{digest}" in built.stderr, f"no push line:\n{built.stderr}")
        check(skopeo_digest(out) == digest,
              f"skopeo sees {skopeo_digest(out)}, the build printed {digest}")
        oci_dir = os.path.join(work, "roundtrip")
        run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{out}", f"oci:{oci_dir}:out"])
        unpacked = os.path.join(work, "unpacked")
        run(["umoci", "unpack", "--image", f"{oci_dir}:out", unpacked])
        with open(os.path.join(unpacked, "rootfs", "built.txt")) as f:
            check(f.read() == "built\n", "the pushed image's /built.txt")

        # Another repository on the same registry: every blob is mounted.
        copied = builder.json(["image", "push"] + insecure + [out, f"{host}/copy:1"])
        check(copied["digest"] == digest, f"push to another repo changed the digest: {copied}")
        check(copied["blobs_uploaded"] == 0 and copied["blobs_mounted"] >= 2,
              f"cross-repository push did not mount: {copied}")
        present = builder.json(["image", "push"] + insecure + [out, f"{host}/copy:2"])
        check(present["blobs_uploaded"] == 0 and present["blobs_mounted"] == 0,
              f"a push of blobs the repository has: {present}")

        # Uncompressed layers (a rootfs import and a build with no output)
        # compress on push as --output type=oci does, and go up in chunks.
        local = Stagefarm(bin_dir, os.path.join(work, "local"))
        local.run(["image", "import", "--rootfs", "--change", f"ENV PATH={BASE_PATH}",
                   rootfs_tar, "busybox"])
        context2 = write_context(work, "context2", "FROM busybox\nRUN echo two > /two\n")
        local.run(["build", "--workers", "0", "--progress", "plain", "-t", "local/two:1",
                   context2])
        chunked = local.json(["image", "push", "--upload-chunk-size", "65536"] + insecure +
                             ["local/two:1", f"{host}/two:1"])
        check(chunked["blobs_uploaded"] == 3, f"chunked push: {chunked}")
        exported = local.run(["build", "--workers", "0", "--progress", "plain", "--output",
                              f"type=oci,dest={work}/two.tar", context2]).stdout.strip()
        check(chunked["digest"] == exported.splitlines()[-1],
              f"pushed {chunked['digest']}, the OCI export has {exported}")
        check(skopeo_digest(f"{host}/two:1") == chunked["digest"], "skopeo on the chunked push")
        image_export = local.run(["image", "export", "--output",
                                  f"type=oci,dest={work}/two-export/", "local/two:1"])
        check(image_export.stdout.strip() == chunked["digest"],
              f"image export gives {image_export.stdout.strip()}, the push {chunked['digest']}")
        run(["umoci", "unpack", "--image", f"{work}/two-export:1", f"{work}/two-unpacked"])
        # --compression-level: the push and an export at that level are one
        # image, which the default zstd level is not.
        zstd19 = local.json(["image", "push", "--compression", "zstd", "--compression-level",
                             "19"] + insecure + ["local/two:1", f"{host}/two:zstd19"])
        export19 = local.run(["image", "export", "--output",
                              f"type=oci,dest={work}/two-zstd19/,compression=zstd,"
                              "compression-level=19", "local/two:1"]).stdout.strip()
        export3 = local.run(["image", "export", "--output",
                             f"type=oci,dest={work}/two-zstd/,compression=zstd",
                             "local/two:1"]).stdout.strip()
        check(zstd19["digest"] == export19 != export3,
              f"zstd level 19: pushed {zstd19['digest']}, exported {export19}; default {export3}")
        check(skopeo_digest(f"{host}/two:zstd19") == zstd19["digest"], "skopeo on the zstd push")
        check(os.path.exists(f"{work}/two-unpacked/rootfs/two"), "the exported image's /two")
        log = open(registry.log_path).read()
        check('"PATCH /v2/two/blobs/uploads/' in log, "no PATCH in the registry's log")
    finally:
        registry.stop()


def docker_config(work, host, user, password):
    directory = os.path.join(work, "docker-config")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        json.dump({"auths": {host: {"auth": auth}}}, f)
    return directory


def auth_roundtrip(work, bin_dir, registry, layout, creds_ok, creds_bad):
    host = registry.host
    insecure = ["--insecure-registry", host]
    skopeo_push(layout, "busybox", f"{host}/library/busybox:1", creds=creds_ok)
    anonymous = Stagefarm(bin_dir, os.path.join(work, "anonymous"))
    refused = anonymous.run(["image", "pull"] + insecure + [f"{host}/library/busybox:1"],
                            check_ok=False)
    check(refused.returncode == 1, f"anonymous pull: exit {refused.returncode}")
    expected = (f"pull {host}/library/busybox:1: ")
    check(expected in refused.stderr and "401 Unauthorized" in refused.stderr and
          f"no credentials for {host} in" in refused.stderr,
          f"anonymous pull error:\n{refused.stderr}")

    user, password = creds_bad.split(":")
    wrong = Stagefarm(bin_dir, os.path.join(work, "wrong"),
                      docker_config(os.path.join(work, "wrong"), host, user, password))
    bad = wrong.run(["image", "pull"] + insecure + [f"{host}/library/busybox:1"], check_ok=False)
    check(bad.returncode == 1 and "401" in bad.stderr and "refused" in bad.stderr,
          f"pull with a wrong password:\n{bad.stderr}")

    user, password = creds_ok.split(":")
    client = Stagefarm(bin_dir, os.path.join(work, "client"),
                       docker_config(work, host, user, password))
    pulled = client.json(["image", "pull"] + insecure + [f"{host}/library/busybox:1"])
    check(pulled["digest"] == skopeo_digest(f"{host}/library/busybox:1", creds_ok),
          f"authenticated pull: {pulled}")
    pushed = client.json(["image", "push"] + insecure +
                         [f"{host}/library/busybox:1", f"{host}/mine:1"])
    check(pushed["digest"] == pulled["digest"] and pushed["blobs_mounted"] >= 1,
          f"authenticated push: {pushed}")
    check(skopeo_digest(f"{host}/mine:1", creds_ok) == pushed["digest"], "skopeo on mine:1")


def scenario_basic(work, bin_dir):
    layout, _, _ = make_base_layout(work)
    htpasswd = os.path.join(work, "htpasswd")
    with open(htpasswd, "w") as f:
        f.write(run(["htpasswd", "-Bbn", "alice", "wonderland"]).stdout)
    registry = Registry(work, "registry", f"""auth:
  htpasswd:
    realm: stagefarm-test
    path: {htpasswd}
""")
    try:
        auth_roundtrip(work, bin_dir, registry, layout, "alice:wonderland", "alice:nope")
    finally:
        registry.stop()


def scenario_bearer(work, bin_dir):
    layout, _, _ = make_base_layout(work)
    tokens = TokenServer(work, "bob", "builder")
    registry = Registry(work, "registry", tokens.auth_yaml())
    try:
        auth_roundtrip(work, bin_dir, registry, layout, "bob:builder", "bob:nope")
        check(tokens.issued >= 2 and tokens.refused >= 1,
              f"token server: {tokens.issued} issued, {tokens.refused} refused")
    finally:
        registry.stop()
        tokens.stop()


def scenario_flaky(work, bin_dir):
    layout, _, _ = make_base_layout(work)
    registry = Registry(work, "registry")
    proxy = None
    try:
        skopeo_push(layout, "busybox", f"{registry.host}/library/busybox:1")
        proxy = Proxy(registry.port, fail_first=2)
        client = Stagefarm(bin_dir, os.path.join(work, "client"))
        insecure = ["--insecure-registry", proxy.host]
        pulled = client.json(["image", "pull"] + insecure + [f"{proxy.host}/library/busybox:1"])
        check(proxy.failed == 2, f"the proxy failed {proxy.failed} requests")
        check(pulled["digest"] == skopeo_digest(f"{registry.host}/library/busybox:1"),
              f"pull through the flaky proxy: {pulled}")
        proxy.failed = 0
        pushed = client.json(["image", "push"] + insecure +
                             [f"{proxy.host}/library/busybox:1", f"{proxy.host}/again:1"])
        check(proxy.failed == 2 and pushed["digest"] == pulled["digest"],
              f"push through the flaky proxy: {pushed}")
        check(skopeo_digest(f"{registry.host}/again:1") == pulled["digest"], "skopeo on again:1")
    finally:
        if proxy:
            proxy.stop()
        registry.stop()


def scenario_corrupt(work, bin_dir):
    layout, _, _ = make_base_layout(work)
    registry = Registry(work, "registry")
    proxy = None
    try:
        skopeo_push(layout, "busybox", f"{registry.host}/library/busybox:1")
        raw = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              f"docker://{registry.host}/library/busybox:1"]).stdout)
        layer = raw["layers"][0]["digest"]
        proxy = Proxy(registry.port, corrupt=layer)
        client = Stagefarm(bin_dir, os.path.join(work, "client"))
        failed = client.run(["image", "pull", "--insecure-registry", proxy.host,
                             f"{proxy.host}/library/busybox:1"], check_ok=False)
        check(failed.returncode == 1, f"a corrupt blob was accepted:\n{failed.stderr}")
        check(f"pull {proxy.host}/library/busybox:1: layer {layer}: content has digest" in
              failed.stderr, f"the error does not name the layer:\n{failed.stderr}")
        listed = client.json(["image", "ls"])
        check(listed == [], f"a failed pull left images: {listed}")
        # The corrupt layer was not stored: a pull from the registry itself
        # fetches it.
        good = client.json(["image", "pull", "--insecure-registry", registry.host,
                            f"{registry.host}/library/busybox:1"])
        check(good["layers_fetched"] == 1, f"the corrupt layer was kept: {good}")
    finally:
        if proxy:
            proxy.stop()
        registry.stop()


def scenario_cluster(work, bin_dir):
    layout, _, _ = make_base_layout(work)
    registry = Registry(work, "registry")
    try:
        host = registry.host
        skopeo_push(layout, "busybox", f"{host}/library/busybox:1")
        client = Stagefarm(bin_dir, os.path.join(work, "client"))
        context = write_context(work, "context", "\n".join([
            f"FROM {host}/library/busybox:1 AS a", "RUN echo a > /a",
            f"FROM {host}/library/busybox:1", "COPY --from=a /a /a", ""]))
        out = f"{host}/cluster:1"
        built = client.run(["build", "--workers", "2", "--progress", "plain", "--push", "-t", out,
                            "--insecure-registry", host, context])
        digest = built.stdout.strip().splitlines()[-1]
        check(f"pulling {host}/library/busybox:1" in built.stderr,
              f"the client did not pull the base:\n{built.stderr}")
        check(skopeo_digest(out) == digest, f"skopeo sees another digest than {digest}")
    finally:
        registry.stop()


SCENARIOS = {"plain": scenario_plain, "cluster": scenario_cluster, "basic": scenario_basic, "bearer": scenario_bearer,
             "flaky": scenario_flaky, "corrupt": scenario_corrupt}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--bin", required=True)
    parser.add_argument("--keep", help="work in this directory and keep it")
    parser.add_argument("--cache", help="keep the busybox root filesystem here between runs")
    args = parser.parse_args()
    global CACHE_DIR
    CACHE_DIR = args.cache
    work = args.keep or tempfile.mkdtemp(prefix=f"registry-e2e-{args.scenario}-")
    os.makedirs(work, exist_ok=True)
    started = time.time()
    try:
        SCENARIOS[args.scenario](work, os.path.abspath(args.bin))
    except Failure as failure:
        print(f"FAIL {args.scenario}: {failure}", file=sys.stderr)
        for root, _, files in os.walk(work):
            for name in files:
                if name == "registry.log":
                    print(f"--- {os.path.join(root, name)}\n{tail(os.path.join(root, name))}",
                          file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"PASS {args.scenario} in {time.time() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# run-oci-image.sh [--host-network] [--env K=V]... [--name ID] LAYOUT:TAG [ARG...]
#
# Runs an image of an OCI layout (what `stagefarm build --output
# type=oci,dest=DIR/` writes) with runc, as a container engine would: umoci
# unpacks it into a temporary bundle, the image's config gives the process
# (ENTRYPOINT and CMD, or ARG... in place of CMD, USER, ENV, WORKDIR), and the
# bundle is removed when the container exits. Output goes to this script's
# stdout (no terminal). Exits with the container's exit code.
#
#   --host-network  share this machine's network (a server listening in the
#                   container is reachable on 127.0.0.1); default: its own
#   --env K=V       add to the process's environment
#   --name ID       the runc container id (default stagefarm-run-PID), for
#                   `runc kill ID` from another shell
set -euo pipefail

host_network=0
name="stagefarm-run-$$"
envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --host-network) host_network=1; shift ;;
    --env) envs+=("$2"); shift 2 ;;
    --name) name=$2; shift 2 ;;
    -*) echo "run-oci-image: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
image=${1:?usage: run-oci-image.sh [--host-network] [--env K=V]... [--name ID] LAYOUT:TAG [ARG...]}
shift

bundle=$(mktemp -d "${TMPDIR:-/tmp}/stagefarm-bundle.XXXXXX")
trap 'runc delete --force "$name" >/dev/null 2>&1 || true; rm -rf "$bundle"' EXIT
rmdir "$bundle"
umoci --log error unpack --image "$image" "$bundle" >/dev/null
python3 - "$image" "$bundle/config.json" "$host_network" "${#envs[@]}" "${envs[@]}" "$@" <<'PY'
import json, os, sys
image, path, host_network, n_env = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
envs, args = sys.argv[5:5 + n_env], sys.argv[5 + n_env:]
config = json.load(open(path))
process = config["process"]
# umoci's runtime config asks for a terminal; the output goes to a pipe.
process["terminal"] = False
process["env"] += envs
if args:
    # The image's ENTRYPOINT stays and CMD is replaced, as `docker run IMAGE
    # ARG...` does: the entrypoint is in the image's config.
    layout, tag = image.rsplit(":", 1)
    def blob(digest):
        return json.load(open(os.path.join(layout, "blobs", *digest.split(":"))))
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest = next(m for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    image_config = blob(blob(manifest["digest"])["config"]["digest"]).get("config", {})
    process["args"] = (image_config.get("Entrypoint") or []) + args
if host_network:
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
json.dump(config, open(path, "w"))
PY
status=0
runc run --bundle "$bundle" "$name" || status=$?
exit "$status"

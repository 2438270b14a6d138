#!/usr/bin/env python3
"""image_listing.py: the canonical listing of a container image, and diffs of two.

  image_listing.py show IMAGE
  image_listing.py diff A B [--allow FILE] [--case NAME]

IMAGE (and A, B) is one of
  - an OCI image layout directory (index.json, blobs/), or a tar of one;
  - a docker archive (`docker save`, `skopeo copy ... docker-archive:`), as a
    tar or unpacked into a directory;
  - a listing this tool (or ../shared/tools/imgtree.py) printed before: a text
    file whose first line is "# imgtree canonical listing v1".
Write PATH:REF to pick one image of several (OCI: the manifest annotated
org.opencontainers.image.ref.name=REF; docker archive: a RepoTag).

The listing is the format of ../shared/fidelity/README.md ("The listing
format"): the layers flattened in order, then one line per path and one per
config field. Manifests may use OCI or Docker schema2 media types; layers may
be plain, gzip or zstd tars (told apart by their first bytes; zstd needs the
`zstd` program).

`diff` prints a unified diff of the two listings and exits 1 when they differ,
0 when they are the same, 2 when an image or the allow file cannot be read.
--allow FILE names differences that are known and explained, in paragraphs
separated by blank lines ('#' starts a comment line):

    case 11-run-*
    - "/srcassets" d *
    + "/srcassets/*
    reason Buildah 1.28 leaves the directory it made for a mount target;
      BuildKit removes it (indented lines continue the reason).

A "- GLOB" line allows a listing line of A that is not in B, a "+ GLOB" line
one of B that is not in A (fnmatch on the whole listing line). "case GLOB"
lines limit a paragraph to the --case names they match; a paragraph without
one applies to every case. Every paragraph needs a reason. The allowed lines
are reported with their reasons; only the rest make a difference.
"""

import argparse
import difflib
import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

LISTING_HEADER = "# imgtree canonical listing v1"

INDEX_MEDIA_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


class ListingError(Exception):
    """An image, listing or allow file that cannot be read; the message says which."""


# ---------------------------------------------------------------------------
# The flattened file tree.

class Inode:
    """What a path names. Hard links are several tree entries sharing one Inode."""

    __slots__ = ("kind", "mode", "uid", "gid", "size", "digest", "target", "device", "xattrs")

    def __init__(self, kind, mode, uid, gid, size=0, digest=None, target=None, device=None,
                 xattrs=None):
        self.kind = kind  # one of f d l c b p
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.digest = digest
        self.target = target
        self.device = device
        self.xattrs = xattrs or {}


class Entry:
    """A name in the tree: its inode and, for a directory, its children by name."""

    __slots__ = ("inode", "children")

    def __init__(self, inode):
        self.inode = inode
        self.children = {} if inode.kind == "d" else None


def implicit_directory():
    """A parent directory that a layer implies without listing it."""
    return Inode("d", 0o755, 0, 0)


def path_parts(name):
    """Splits a tar member name into components ('.' and empty ones dropped)."""
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return parts


class Tree:
    """The union of the layers applied so far."""

    def __init__(self):
        self.root = Entry(implicit_directory())

    def find(self, parts):
        entry = self.root
        for part in parts:
            if entry.children is None or part not in entry.children:
                return None
            entry = entry.children[part]
        return entry

    def _parent(self, parts):
        """The directory that holds parts[-1], made (and any non-directory replaced) if needed."""
        entry = self.root
        for part in parts[:-1]:
            child = entry.children.get(part)
            if child is None or child.children is None:
                child = Entry(implicit_directory())
                entry.children[part] = child
            entry = child
        return entry

    def whiteout(self, parts):
        parent = self.find(parts[:-1])
        if parent is not None and parent.children is not None:
            parent.children.pop(parts[-1], None)

    def make_opaque(self, parts):
        entry = self.find(parts)
        if entry is not None and entry.children is not None:
            entry.children.clear()

    def put(self, parts, inode):
        if not parts:
            if inode.kind == "d":
                self.root.inode = inode
            return
        parent = self._parent(parts)
        old = parent.children.get(parts[-1])
        if inode.kind == "d" and old is not None and old.children is not None:
            old.inode = inode  # a directory over a directory merges
        else:
            parent.children[parts[-1]] = Entry(inode)

    def walk(self):
        """Yields (path, inode) in listing order: by path components, bytewise; '/' left out."""
        def visit(prefix, entry):
            for name in sorted(entry.children, key=name_bytes):
                child = entry.children[name]
                path = prefix + "/" + name
                yield path, child.inode
                if child.children is not None:
                    yield from visit(path, child)
        yield from visit("", self.root)


def name_bytes(name):
    return name.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Layers.

def tar_xattrs(member):
    xattrs = {}
    for key, value in (member.pax_headers or {}).items():
        for prefix in ("SCHILY.xattr.", "LIBARCHIVE.xattr."):
            if key.startswith(prefix):
                xattrs[key[len(prefix):]] = value
    return xattrs


def file_digest(stream):
    sha = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        sha.update(chunk)
        size += len(chunk)
    return size, "sha256:" + sha.hexdigest()


def apply_layer(tree, stream, label):
    """Applies one layer tar: its whiteouts to the lower layers, then its entries."""
    whiteouts, opaque_dirs, entries = [], [], []
    try:
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8",
                          errors="surrogateescape") as tar:
            for member in tar:
                parts = path_parts(member.name)
                base = parts[-1] if parts else ""
                if base == ".wh..wh..opq":
                    opaque_dirs.append(parts[:-1])
                    continue
                if base.startswith(".wh..wh."):
                    continue  # AUFS bookkeeping, not content
                if base.startswith(".wh."):
                    whiteouts.append(parts[:-1] + [base[len(".wh."):]])
                    continue
                mode, xattrs = member.mode & 0o7777, tar_xattrs(member)
                if member.islnk():
                    entries.append((parts, path_parts(member.linkname)))
                    continue
                if member.isreg():
                    size, digest = file_digest(tar.extractfile(member))
                    inode = Inode("f", mode, member.uid, member.gid, size, digest, xattrs=xattrs)
                elif member.isdir():
                    inode = Inode("d", mode, member.uid, member.gid, xattrs=xattrs)
                elif member.issym():
                    inode = Inode("l", 0o777, member.uid, member.gid, target=member.linkname,
                                  xattrs=xattrs)
                elif member.ischr() or member.isblk():
                    inode = Inode("c" if member.ischr() else "b", mode, member.uid, member.gid,
                                  device=(member.devmajor, member.devminor), xattrs=xattrs)
                elif member.isfifo():
                    inode = Inode("p", mode, member.uid, member.gid, xattrs=xattrs)
                else:
                    raise ListingError("%s: %s: unsupported tar entry type %r"
                                       % (label, member.name, member.type))
                entries.append((parts, inode))
    except tarfile.TarError as error:
        raise ListingError("%s: not a readable tar: %s" % (label, error))
    for parts in opaque_dirs:
        tree.make_opaque(parts)
    for parts in whiteouts:
        tree.whiteout(parts)
    for parts, what in entries:
        if isinstance(what, Inode):
            tree.put(parts, what)
            continue
        target = tree.find(what)
        if target is None or target.children is not None:
            raise ListingError("%s: hard link /%s -> /%s: no such file in this or a lower layer"
                               % (label, "/".join(parts), "/".join(what)))
        tree.put(parts, target.inode)


def open_layer(blob, label):
    """Returns (stream of tar bytes, close) for a blob file object that may be compressed."""
    head = blob.read(4)
    blob.seek(0)
    if head[:2] == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=blob, mode="rb")
        return stream, stream.close
    if head != ZSTD_MAGIC:
        return blob, lambda: None
    zstd = shutil.which("zstd")
    if zstd is None:
        raise ListingError("%s is zstd-compressed and the zstd program is not installed" % label)
    if isinstance(getattr(blob, "raw", None), io.FileIO):
        source = blob  # a file on disk: zstd reads it directly, from its start
        os.lseek(blob.fileno(), 0, os.SEEK_SET)
    else:  # a member of a tar: zstd needs a real file as its input
        source = tempfile.TemporaryFile()
        shutil.copyfileobj(blob, source, 1 << 20)
        source.seek(0)
    process = subprocess.Popen([zstd, "-dcq"], stdin=source, stdout=subprocess.PIPE)

    def close():
        process.stdout.close()
        if process.wait() != 0:
            raise ListingError("%s: zstd -d failed (exit %d)" % (label, process.returncode))
    return process.stdout, close


# ---------------------------------------------------------------------------
# Where the image's files are: a directory or a tar.

class DirectoryFiles:
    def __init__(self, root):
        self.root = root

    def has(self, name):
        return os.path.isfile(os.path.join(self.root, name))

    def open(self, name):
        path = os.path.join(self.root, name)
        if not os.path.isfile(path):
            raise ListingError("%s: missing" % path)
        return open(path, "rb")

    def close(self):
        pass


class TarFiles:
    def __init__(self, path):
        self.path = path
        self.tar = tarfile.open(path, "r:*")
        self.members = {os.path.normpath(m.name.lstrip("/")): m for m in self.tar.getmembers()}

    def _member(self, name):
        key = os.path.normpath(name.lstrip("/"))
        for _ in range(16):  # docker save links duplicate layers to one file
            member = self.members.get(key)
            if member is None or not (member.issym() or member.islnk()):
                return member
            if member.issym():
                key = os.path.normpath(os.path.join(os.path.dirname(key), member.linkname))
            else:
                key = os.path.normpath(member.linkname.lstrip("/"))
        return None

    def has(self, name):
        member = self._member(name)
        return member is not None and member.isreg()

    def open(self, name):
        member = self._member(name)
        if member is None or not member.isreg():
            raise ListingError("%s: no file %s in the tar" % (self.path, name))
        return self.tar.extractfile(member)

    def close(self):
        self.tar.close()


def read_json(files, name):
    with files.open(name) as f:
        try:
            return json.load(f)
        except ValueError as error:
            raise ListingError("%s: not JSON: %s" % (name, error))


def blob_path(digest):
    algorithm, _, encoded = digest.partition(":")
    return "blobs/%s/%s" % (algorithm, encoded)


def oci_image(files, ref, label):
    """Returns (config, [layer file names]) of the image an OCI layout's index.json names."""
    index = read_json(files, "index.json")
    manifests = index.get("manifests") or []
    if ref is not None:
        manifests = [m for m in manifests if (m.get("annotations") or {}).get(
            "org.opencontainers.image.ref.name") == ref]
        if not manifests:
            raise ListingError("%s: no manifest with ref.name %r" % (label, ref))
    if len(manifests) != 1:
        raise ListingError("%s: index.json lists %d manifests; pick one with %s:REF"
                           % (label, len(manifests), label))
    descriptor = manifests[0]
    for _ in range(8):
        manifest = read_json(files, blob_path(descriptor["digest"]))
        media_type = manifest.get("mediaType") or descriptor.get("mediaType")
        if media_type not in INDEX_MEDIA_TYPES and "layers" in manifest:
            config = read_json(files, blob_path(manifest["config"]["digest"]))
            return config, [blob_path(layer["digest"]) for layer in manifest["layers"]]
        descriptor = linux_amd64(manifest.get("manifests") or [], label)
    raise ListingError("%s: image indexes nested too deep" % label)


def linux_amd64(descriptors, label):
    for descriptor in descriptors:
        platform = descriptor.get("platform") or {}
        if platform.get("os", "linux") == "linux" and platform.get("architecture",
                                                                    "amd64") == "amd64":
            return descriptor
    raise ListingError("%s: an image index with no linux/amd64 manifest" % label)


def docker_archive_image(files, ref, label):
    """Returns (config, [layer file names]) of an image in a docker archive's manifest.json."""
    images = read_json(files, "manifest.json")
    if ref is not None:
        images = [i for i in images if any(tag == ref or tag.endswith("/" + ref)
                                           for tag in i.get("RepoTags") or [])]
    if len(images) != 1:
        raise ListingError("%s: %d images match; pick one with %s:REPO:TAG"
                           % (label, len(images), label))
    return read_json(files, images[0]["Config"]), list(images[0].get("Layers") or [])


def split_spec(spec):
    """'PATH' or 'PATH:REF' -> (PATH, REF or None); PATH must exist."""
    if os.path.exists(spec):
        return spec, None
    path, sep, ref = spec.partition(":")
    if sep and os.path.exists(path):
        return path, ref
    raise ListingError("%s: no such file or directory" % spec)


def image_tree(path, ref):
    """Returns (Tree, config JSON) of the image at path."""
    try:
        files = DirectoryFiles(path) if os.path.isdir(path) else TarFiles(path)
    except tarfile.TarError as error:
        raise ListingError("%s: neither a directory nor a tar: %s" % (path, error))
    try:
        if files.has("manifest.json"):
            config, layers = docker_archive_image(files, ref, path)
        elif files.has("index.json"):
            config, layers = oci_image(files, ref, path)
        else:
            raise ListingError("%s: neither an OCI layout (index.json) nor a docker archive "
                               "(manifest.json)" % path)
        tree = Tree()
        for number, name in enumerate(layers):
            label = "%s: layer %d (%s)" % (path, number, name)
            with files.open(name) as blob:
                stream, close = open_layer(blob, label)
                try:
                    apply_layer(tree, stream, label)
                finally:
                    close()
        return tree, config
    except tarfile.TarError as error:
        raise ListingError("%s: %s" % (path, error))
    finally:
        files.close()


# ---------------------------------------------------------------------------
# The listing.

def quote(name):
    out = ['"']
    for char in name:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append("\\x%02x" % code)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append("\\x%02x" % (code - 0xDC00))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def file_lines(tree):
    entries = list(tree.walk())
    first_name = {}
    for path, inode in entries:
        if inode.kind != "d":
            first_name.setdefault(id(inode), path)
    lines = []
    for path, inode in entries:
        owner = "%04o %d:%d" % (inode.mode, inode.uid, inode.gid)
        first = first_name.get(id(inode), path)
        if first != path:
            line = "%s h %s -> %s" % (quote(path), owner, quote(first))
        elif inode.kind == "f":
            line = "%s f %s %d %s" % (quote(path), owner, inode.size, inode.digest)
        elif inode.kind == "d":
            line = "%s d %s" % (quote(path), owner)
        elif inode.kind == "l":
            line = "%s l %s -> %s" % (quote(path), owner, quote(inode.target))
        elif inode.kind in "cb":
            line = "%s %s %s %d,%d" % (quote(path), inode.kind, owner, *inode.device)
        else:
            line = "%s p %s" % (quote(path), owner)
        if inode.xattrs:
            line += " xattrs=" + to_json(dict(inode.xattrs))
        lines.append(line)
    return lines


def to_json(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def config_lines(image_config):
    config = image_config.get("config") or {}

    def command(key):  # Cmd, Entrypoint, Shell: null when missing or empty
        value = config.get(key)
        if isinstance(value, str):
            value = [value]
        return value or None

    healthcheck = {k: v for k, v in (config.get("Healthcheck") or {}).items()
                   if v not in (0, None, "", [])}
    fields = [
        ("architecture", image_config.get("architecture") or ""),
        ("os", image_config.get("os") or ""),
        ("Env", list(config.get("Env") or [])),
        ("Cmd", command("Cmd")),
        ("Entrypoint", command("Entrypoint")),
        ("WorkingDir", config.get("WorkingDir") or ""),
        ("User", config.get("User") or ""),
        ("ExposedPorts", sorted(config.get("ExposedPorts") or {})),
        ("Volumes", sorted(config.get("Volumes") or {})),
        ("Labels", {k: v for k, v in (config.get("Labels") or {}).items()
                    if not k.startswith("io.buildah.")}),
        ("StopSignal", config.get("StopSignal") or ""),
        ("Healthcheck", healthcheck or None),
        ("OnBuild", list(config.get("OnBuild") or [])),
        ("Shell", command("Shell")),
    ]
    return ["%s %s" % (key, to_json(value)) for key, value in fields]


def saved_listing(path):
    """The lines of a listing file, without its notes (lines after the first starting '#')."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    return lines[:1] + [line for line in lines[1:] if not line.startswith("#")]


def is_saved_listing(path):
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(len(LISTING_HEADER)) == LISTING_HEADER.encode()


def listing(spec):
    """The listing of IMAGE spec, as lines."""
    path, ref = split_spec(spec)
    if ref is None and is_saved_listing(path):
        return saved_listing(path)
    tree, config = image_tree(path, ref)
    return [LISTING_HEADER, "[files]"] + file_lines(tree) + ["[config]"] + config_lines(config)


# ---------------------------------------------------------------------------
# Allowed differences.

class Allowance:
    def __init__(self, where):
        self.where = where  # "FILE:LINE" of the paragraph, for messages
        self.cases = []
        self.removed = []  # globs of lines only in A
        self.added = []    # globs of lines only in B
        self.reason = []

    def applies_to(self, case):
        return not self.cases or (case is not None and any(
            fnmatch.fnmatchcase(case, glob) for glob in self.cases))


def read_allowances(path):
    """Parses an allow file (see the module doc); raises ListingError on a malformed paragraph."""
    allowances, current, in_reason = [], None, False
    with open(path, encoding="utf-8") as f:
        numbered = list(enumerate(f.read().splitlines(), 1)) + [(0, "")]
    for number, line in numbered:
        where = "%s:%d" % (path, number)
        if line.startswith("#"):
            continue
        if not line.strip():
            if current is not None:
                if not current.reason:
                    raise ListingError("%s: the difference allowed here has no reason"
                                       % current.where)
                if not current.removed and not current.added:
                    raise ListingError("%s: no '- GLOB' or '+ GLOB' line" % current.where)
                allowances.append(current)
            current, in_reason = None, False
            continue
        if current is None:
            current = Allowance(where)
        if in_reason and line[0] in " \t":
            current.reason.append(line.strip())
            continue
        if line.startswith("case "):
            current.cases.append(line[5:].strip())
        elif line.startswith("- "):
            current.removed.append(line[2:])
        elif line.startswith("+ "):
            current.added.append(line[2:])
        elif line.startswith("reason "):
            current.reason.append(line[7:].strip())
            in_reason = True
            continue
        else:
            raise ListingError("%s: expected 'case', '- ', '+ ' or 'reason': %r" % (where, line))
        in_reason = False
    return allowances


def drop_allowed(lines, others, globs_of, allowances, sign, report):
    """Lines that are not in others and match no allowance; the allowed ones go to report."""
    other_set = set(others)
    kept = []
    for line in lines:
        allowance = None
        if line not in other_set:
            allowance = next((a for a in allowances if any(
                fnmatch.fnmatchcase(line, glob) for glob in globs_of(a))), None)
        if allowance is None:
            kept.append(line)
        else:
            report.append("%s%s\n    allowed: %s" % (sign, line, " ".join(allowance.reason)))
    return kept


def diff(args):
    allowances = []
    if args.allow:
        allowances = [a for a in read_allowances(args.allow) if a.applies_to(args.case)]
    a, b = listing(args.a), listing(args.b)
    report = []
    a_kept = drop_allowed(a, b, lambda x: x.removed, allowances, "-", report)
    b_kept = drop_allowed(b, a, lambda x: x.added, allowances, "+", report)
    if report:
        print("allowed differences (%s):" % args.allow)
        for line in report:
            print("  " + line)
    if a_kept == b_kept:
        return EXIT_SAME
    for line in difflib.unified_diff(a_kept, b_kept, fromfile=args.a, tofile=args.b, lineterm=""):
        print(line)
    return EXIT_DIFFERENT


def main(argv):
    parser = argparse.ArgumentParser(
        description="Canonical listing of a container image (see the module doc).")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the listing of IMAGE")
    show.add_argument("image")
    compare = commands.add_parser("diff", help="unified diff of two listings; exit 1 if they "
                                  "differ")
    compare.add_argument("a")
    compare.add_argument("b")
    compare.add_argument("--allow", metavar="FILE", help="differences allowed, with reasons")
    compare.add_argument("--case", metavar="NAME", help="the case whose allowances apply")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            for line in listing(args.image):
                print(line)
            return EXIT_SAME
        return diff(args)
    except (ListingError, OSError, EOFError, KeyError, TypeError, ValueError) as error:
        print("image_listing: %s" % error, file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8", errors="surrogateescape")
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Tests of image_listing.py on small images written here (no builder needed)."""

import contextlib
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
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_listing  # noqa: E402


def member(name, kind="f", data=b"", mode=0o644, uid=0, gid=0, target=""):
    """A (TarInfo, data) pair for layer_tar."""
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid = mode, uid, gid
    info.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
                 "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE}[kind]
    info.linkname = target
    info.size = len(data) if kind == "f" else 0
    return info, data


def layer_tar(*members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_layout(path, layers, config, docker_media_types=False):
    """Writes an OCI image layout at path holding one image of the given layer blobs."""
    os.makedirs(os.path.join(path, "blobs", "sha256"))

    def blob(data):
        with open(os.path.join(path, "blobs", "sha256", sha(data)[7:]), "wb") as f:
            f.write(data)
        return {"digest": sha(data), "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": ("application/vnd.docker.distribution.manifest.v2+json"
                      if docker_media_types else "application/vnd.oci.image.manifest.v1+json"),
        "config": blob(json.dumps(config).encode()),
        "layers": [blob(layer) for layer in layers],
    }
    descriptor = blob(json.dumps(manifest).encode())
    descriptor["mediaType"] = manifest["mediaType"]
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": "test"}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


def write_docker_archive(path, layers, config):
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("config.json", json.dumps(config).encode())
        names = []
        for number, layer in enumerate(layers):
            names.append("%d/layer.tar" % number)
            add(names[-1], layer)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["x/test:latest"],
                                          "Layers": names}]).encode())


BASE_CONFIG = {"architecture": "amd64", "os": "linux",
               "config": {"Env": ["PATH=/bin"]}}


class ImageListingTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def listing(self, layers, config=None, **layout_flags):
        path = os.path.join(self.dir, "image%d" % len(os.listdir(self.dir)))
        write_oci_layout(path, layers, config or BASE_CONFIG, **layout_flags)
        return image_listing.listing(path)

    def files(self, layers):
        lines = self.listing(layers)
        return lines[lines.index("[files]") + 1:lines.index("[config]")]

    def test_Whiteout_HidesLowerLayerOnly(self):
        lower = layer_tar(member("a", data=b"1"), member("b", data=b"2"))
        upper = layer_tar(member(".wh.a"), member(".wh.b"), member("b", data=b"new"))
        self.assertEqual(self.files([lower, upper]),
                         ['"/b" f 0644 0:0 3 %s' % sha(b"new")])

    def test_OpaqueDirectory_DropsLowerContentKeepsItsOwn(self):
        lower = layer_tar(member("d", "d", mode=0o755), member("d/old", data=b"o"))
        upper = layer_tar(member("d", "d", mode=0o700), member("d/.wh..wh..opq"),
                          member("d/new", data=b"n"))
        self.assertEqual(self.files([lower, upper]),
                         ['"/d" d 0700 0:0', '"/d/new" f 0644 0:0 1 %s' % sha(b"n")])

    def test_FileOverDirectory_ReplacesItAndDirectoryOverDirectory_Merges(self):
        lower = layer_tar(member("x", "d"), member("x/in", data=b"i"), member("y", "d"),
                          member("y/in", data=b"i"))
        upper = layer_tar(member("x", data=b"file"), member("y", "d", mode=0o1777, uid=5))
        self.assertEqual(self.files([lower, upper]), [
            '"/x" f 0644 0:0 4 %s' % sha(b"file"), '"/y" d 1777 5:0',
            '"/y/in" f 0644 0:0 1 %s' % sha(b"i")])

    def test_HardLinks_NameTheFirstPathInListingOrder(self):
        layer = layer_tar(member("z", data=b"d", mode=0o600), member("a", "h", target="z"),
                          member("sub/b", "h", target="z"))
        self.assertEqual(self.files([layer]), [
            '"/a" f 0600 0:0 1 %s' % sha(b"d"), '"/sub" d 0755 0:0',
            '"/sub/b" h 0600 0:0 -> "/a"', '"/z" h 0600 0:0 -> "/a"'])

    def test_HardLinkWithoutTarget_IsAnError(self):
        with self.assertRaisesRegex(image_listing.ListingError, "no such file"):
            self.files([layer_tar(member("a", "h", target="missing"))])

    def test_Names_AreQuotedAndSortedByComponentBytes(self):
        layer = layer_tar(member("a b", "d"), member("a b/q\"\\\n\t\x01", data=b""),
                          member("a-c", data=b""), member("é", "l", target="x y"),
                          member("bad\udcff", "p"))
        self.assertEqual(self.files([layer]), [
            '"/a b" d 0644 0:0', '"/a b/q\\"\\\\\\n\\t\\x01" f 0644 0:0 0 %s' % sha(b""),
            '"/a-c" f 0644 0:0 0 %s' % sha(b""), '"/bad\\xff" p 0644 0:0',
            '"/é" l 0777 0:0 -> "x y"'])

    def test_CompressedLayers_ListLikeUncompressedOnes(self):
        layer = layer_tar(member("d", "d", mode=0o755), member("d/f", data=b"content"))
        plain = self.files([layer])
        self.assertEqual(self.files([gzip.compress(layer)]), plain)
        if shutil.which("zstd"):
            zstd = subprocess.run(["zstd", "-q", "-c"], input=layer, stdout=subprocess.PIPE,
                                  check=True).stdout
            self.assertEqual(self.files([zstd]), plain)

    def test_DockerArchiveAndDockerMediaTypes_ListLikeOci(self):
        layers = [layer_tar(member("f", data=b"1")), layer_tar(member(".wh.f"),
                                                               member("g", data=b"2"))]
        oci = self.listing(layers)
        self.assertEqual(self.listing(layers, docker_media_types=True), oci)
        archive = os.path.join(self.dir, "docker.tar")
        write_docker_archive(archive, layers, BASE_CONFIG)
        self.assertEqual(image_listing.listing(archive), oci)
        self.assertEqual(image_listing.listing(archive + ":x/test:latest"), oci)

    def test_Config_IsNormalised(self):
        config = {"architecture": "amd64", "os": "linux", "config": {
            "Cmd": [], "Entrypoint": None, "Labels": {"io.buildah.version": "1", "b": "2",
                                                      "a": "1"},
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/v": {}},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 0, "Retries": 3},
            "Shell": ["/bin/sh", "-c"]}}
        lines = self.listing([layer_tar()], config)
        self.assertEqual(lines[lines.index("[config]") + 1:], [
            'architecture "amd64"', 'os "linux"', "Env []", "Cmd null", "Entrypoint null",
            'WorkingDir ""', 'User ""', 'ExposedPorts ["53/udp", "80/tcp"]', 'Volumes ["/v"]',
            'Labels {"a": "1", "b": "2"}', 'StopSignal ""',
            'Healthcheck {"Retries": 3, "Test": ["CMD", "true"]}', "OnBuild []",
            'Shell ["/bin/sh", "-c"]'])

    def test_SavedListing_DropsNotes(self):
        path = os.path.join(self.dir, "saved.txt")
        with open(path, "w") as f:
            f.write(image_listing.LISTING_HEADER + "\n# a note\n[files]\n[config]\n")
        self.assertEqual(image_listing.listing(path),
                         [image_listing.LISTING_HEADER, "[files]", "[config]"])


class DiffTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def diff(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = image_listing.main(["diff"] + list(args))
        return code, out.getvalue()

    def listings(self):
        header = image_listing.LISTING_HEADER + "\n[files]\n"
        a = self.write("a.txt", header + '"/keep" d 0755 0:0\n"/stub" d 0755 0:0\n[config]\n')
        b = self.write("b.txt", header + '"/keep" d 0755 0:0\n[config]\n')
        return a, b

    def test_SameListings_ExitZero(self):
        a, _ = self.listings()
        self.assertEqual(self.diff(a, a), (0, ""))

    def test_Difference_IsAUnifiedDiffAndExitOne(self):
        code, out = self.diff(*self.listings())
        self.assertEqual(code, 1)
        self.assertIn('\n-"/stub" d 0755 0:0\n', out)

    def test_AllowedDifference_IsReportedWithItsReasonAndPasses(self):
        allow = self.write("allow", '# c\ncase 11-*\n- "/stub" d *\nreason Stubs\n  stay.\n')
        code, out = self.diff(*self.listings(), "--allow", allow, "--case", "11-run-mounts")
        self.assertEqual(code, 0, out)
        self.assertIn("allowed: Stubs stay.", out)

    def test_AllowanceOfAnotherCaseOrSide_DoesNotApply(self):
        other_case = self.write("allow1", 'case 12-*\n- "/stub" d *\nreason r\n')
        other_side = self.write("allow2", '+ "/stub" d *\nreason r\n')
        self.assertEqual(self.diff(*self.listings(), "--allow", other_case, "--case", "11-x")[0],
                         1)
        self.assertEqual(self.diff(*self.listings(), "--allow", other_side)[0], 1)

    def test_AllowanceWithoutReason_IsAnError(self):
        allow = self.write("allow", '- "/stub" d *\n')
        code, out = self.diff(*self.listings(), "--allow", allow)
        self.assertEqual(code, 2)
        self.assertIn("no reason", out)


if __name__ == "__main__":
    unittest.main()

// Applying an OCI image layer (the image spec's "image-layer" changeset: a tar,
// uncompressed or gzip- or zstd-compressed) to a directory, the way
// containerd's archive.Apply and BuildKit do: each layer of an image is
// unpacked once into its own snapshot and reused.
//
// Every entry is hostile until checked. Names are cleaned ("./a", "/a" and
// "a/b/../a" are all "a"); a name or hardlink target whose ".." climbs above
// the root is refused. Everything else is resolved through fs::RootDir, so a
// symlink met on the way (one from a lower layer or one this layer made
// earlier, "evil -> /" included) is followed only inside the root: an entry
// "evil/etc/passwd" lands at <root>/etc/passwd, never on the host.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fs/root.h"

namespace stagefarm::oci {

// The layer's bytes: each call gives the next piece, valid until the next
// call; an empty piece is the end. An error ends the apply with that error.
// cas::BlobReader::Next has this contract. ApplyLayer may make some of the
// calls from a thread of its own, one at a time, never after it returns.
using LayerReader = std::function<absl::StatusOr<absl::string_view>()>;

struct ApplyOptions {
  // Give entries the tar's uid/gid (needs CAP_CHOWN). When false, entries
  // belong to the caller and setuid/setgid bits are kept as the tar says.
  bool preserve_ownership = true;

  // When set, every entry gets this owner (uid, gid) instead of the tar's:
  // ADD --chown of a local archive.
  std::optional<std::pair<uint32_t, uint32_t>> owner;

  // What a whiteout does. kRemove applies the layer onto the layers below it,
  // already in the root: see ApplyLayer. kOverlay unpacks the layer alone into
  // a directory of its own that will be an overlayfs lower dir (a snapshot):
  // ".wh.NAME" becomes an overlay whiteout, a char device 0/0 named NAME
  // (replacing anything this layer wrote there), and ".wh..wh..opq" sets
  // trusted.overlay.opaque=y on its directory (made 0755 if missing), so
  // overlayfs hides the lower layers' entries as the tar means; so does a
  // directory entry written over this layer's whiteout of the same name. Needs
  // CAP_MKNOD and CAP_SYS_ADMIN (trusted.* xattrs).
  enum class Whiteouts { kRemove, kOverlay };
  Whiteouts whiteouts = Whiteouts::kRemove;
};

struct ApplyStats {
  uint64_t entries = 0;    // tar entries read, whiteouts and skipped ones included
  uint64_t bytes = 0;      // bytes of regular-file content (holes of sparse files included)
  uint64_t whiteouts = 0;  // ".wh.<name>" and ".wh..wh..opq" markers applied
};

// Reads the layer from `read` and applies it to `root`. A gzip or zstd layer
// (recognised by its magic number, see layer_decompress.h) is decompressed
// beyond its first MiB on a thread of its own, a few MiB ahead of the
// writing; any other stream (an uncompressed tar, or bzip2 and xz for ADD's
// local archives) is libarchive's to read, on the caller's thread. The
// entries:
//  - Regular files (streamed in blocks; sparse files keep their holes),
//    directories, symlinks (target stored verbatim, never followed), char and
//    block devices and FIFOs are created with the tar's owner
//    (ApplyOptions::preserve_ownership), mode including setuid/setgid/sticky
//    (set after the owner, which would clear them), xattrs (security.capability
//    included, set after the owner, which would clear it) and mtime; a
//    directory's mtime is set after everything in the layer is written.
//  - An entry replaces what is at its path unless both are directories (then
//    the directory stays, with the entry's metadata): a file over a directory
//    removes the directory's whole tree.
//  - A hardlink's target is cleaned like a name and must already exist in the
//    root, not as a directory; the link is made to the target itself (a
//    symlink target is not followed). The link carries the target's metadata.
//  - ".wh.<name>" removes <name> (a tree, recursively) from its directory;
//    nothing happens if it is absent. ".wh..wh..opq" removes everything in its
//    directory that this layer has not written (entries before the marker are
//    kept, entries after it are written after the clearing). Other
//    ".wh..wh." names are AUFS metadata and are skipped, as Docker does.
//  - An entry naming the root itself ("./") is skipped, as containerd does.
//  - Missing parent directories are made with mode 0755, owned by the caller.
// Errors, naming the entry as written in the tar:
//  - InvalidArgument for a name or hardlink target escaping the root, a
//    whiteout of "." or "..", an unsupported entry type (socket);
//  - NotFound for a hardlink whose target does not exist;
//  - FailedPrecondition when a parent is not a directory, a dangling symlink
//    included (containerd would make the directory it points at);
//  - DataLoss for a stream libarchive cannot read (truncated, corrupt,
//    not a tar) or a gzip or zstd layer that is corrupt, truncated or
//    followed by garbage (such a layer is read to its end, past the tar's);
//  - the reader's own error, as it is;
//  - the errno's code for a failing system call.
// On error the root holds what was applied so far: unpack into a fresh
// directory and discard it on failure.
absl::StatusOr<ApplyStats> ApplyLayer(const fs::RootDir& root, const LayerReader& read,
                                      const ApplyOptions& options);

}  // namespace stagefarm::oci

// Making an OCI image layer (the image spec's "image-layer" changeset) from
// what a build step changed: the reverse of layer_unpack.h.
//
// Two sources of changes, one tar format:
//  - An overlayfs upper directory (the step ran on an overlay mount): every
//    entry in it is written, as Docker's overlay2 driver does, including the
//    directories overlayfs copied up to hold a changed child; a whiteout
//    (char device 0/0) becomes a ".wh.NAME" entry and a directory with
//    trusted.overlay.opaque=y is followed by its ".wh..wh..opq" marker.
//  - A lower tree and a full copy of it the step ran in (the fallback when
//    overlayfs is unavailable): an entry is written when it is new or its
//    type, mode, owner, size, link count, mtime, xattrs, symlink target,
//    device number or content differ (the link count, so that a new name for
//    an unchanged file carries the file along, as an overlayfs copy-up would); a directory is also
//    written when anything below it is, as overlayfs would have copied it up; a name gone from the
//    copy becomes a ".wh.NAME" entry. The copy path never writes opaque markers (deleting every
//    child one by one has the same effect when applied).
//
// The tar, in either case:
//  - pax (libarchive's restricted pax: ustar headers, pax records only where
//    ustar cannot say it, xattrs as SCHILY.xattr records only), no user or group
//    names, mtimes in whole seconds, no atime/ctime, no padding after the end
//    marker beyond 512-byte records; names are root-relative without "./", a
//    directory's with a trailing "/"; no entry for the root itself;
//  - in containerd's changes order: a depth-first walk with each directory's
//    names sorted by bytes, so a parent comes before its children (a
//    whiteout sits where the name it deletes would sort; an opaque marker
//    right after its directory);
//  - owners, modes with setuid/setgid/sticky, xattrs except trusted.overlay.*
//    and security.selinux (sorted by name), symlinks, char and block devices,
//    fifos; a file with several names in the layer is written once, later
//    names as hardlink entries to the first; sockets are skipped (Docker
//    does too);
//  - whiteouts and opaque markers are empty regular files with mode 0, owner
//    0:0, and their directory's mtime, so the same change gives the same bytes
//    whichever path found it.
// With DiffOptions::source_date_epoch set, every mtime later than the epoch
// is written as the epoch (BuildKit's rewrite-timestamp), for reproducible
// layers.
//
// The tar streams through in blocks: memory stays bounded whatever the size
// of the files; only the list of changed paths is held.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest/digest.h"
#include "common/oci/media_types.h"

namespace stagefarm::oci {

// Where layer bytes go, piece by piece in order. An error stops the layer
// and is returned by the function writing it. cas::BlobWriter::Write fits.
using ByteSink = std::function<absl::Status(absl::string_view)>;

// Whether a root-relative path exists (as anything) in the tree below the
// step. Used to drop whiteouts that hide nothing.
using LowerExists = std::function<absl::StatusOr<bool>(absl::string_view path)>;

struct DiffOptions {
  // Seconds since the Unix epoch; mtimes later than it are clamped to it.
  std::optional<int64_t> source_date_epoch;
  LayerCompression compression = LayerCompression::kGzip;
  // For an uncompressed layer: the tar's digest from the sink that received
  // it, called once when the tar is complete, instead of hashing the same
  // bytes here a second time (a cas::BlobWriter computes it and commits under
  // it: CommitAsWritten). Its error is returned as it is. Unused when
  // compressing.
  std::function<absl::StatusOr<digest::Digest>()> tar_digest;
};

// What was written: the uncompressed tar's digest is the layer's diff id (the
// image config's rootfs.diff_ids), the compressed one the manifest's layer
// descriptor.
struct LayerDigests {
  uint64_t entries = 0;  // tar entries, whiteouts and opaque markers included
  digest::Digest diff_id;
  uint64_t tar_size = 0;
  digest::Digest blob_digest;
  uint64_t blob_size = 0;
  LayerCompression compression = LayerCompression::kGzip;
};

// Whether the overlayfs upper directory holds nothing: the step changed
// nothing and adds no layer. NotFound when `upper_dir` does not exist.
absl::StatusOr<bool> UpperIsEmpty(const std::filesystem::path& upper_dir);

// Writes the layer for an overlayfs upper directory (see above): the
// uncompressed tar into `tar_sink`, the compressed one into `blob_sink`.
// The overlay must have been mounted with redirect_dir=off and metacopy=off:
// FailedPrecondition naming the entry when the upper dir holds a redirected
// directory or a metadata-only copy-up (either is only part of the change).
// A whiteout whose name `lower_exists` says is absent below is dropped. The
// upper directory must not change meanwhile. Errors name the path and the
// failing call; a sink's error is returned as it is. On error the sinks hold
// a partial stream: discard it (an uncommitted BlobWriter does). No changes
// give a tar without entries, which is no layer: check UpperIsEmpty first.
absl::StatusOr<LayerDigests> WriteLayerFromUpper(const std::filesystem::path& upper_dir,
                                                 const LowerExists& lower_exists,
                                                 const ByteSink& tar_sink,
                                                 const ByteSink& blob_sink,
                                                 const DiffOptions& options);

// Whether `copy_dir` is the same tree as `lower_dir` (by the comparison
// above): the step changed nothing and adds no layer. Reads the content of
// files whose metadata is the same.
absl::StatusOr<bool> CopyUnchanged(const std::filesystem::path& lower_dir,
                                   const std::filesystem::path& copy_dir);

// Writes the layer for the changes from `lower_dir` to `copy_dir` (see
// above), as WriteLayerFromUpper does. Neither tree may change meanwhile.
// Check CopyUnchanged first.
absl::StatusOr<LayerDigests> WriteLayerFromCopy(const std::filesystem::path& lower_dir,
                                                const std::filesystem::path& copy_dir,
                                                const ByteSink& tar_sink, const ByteSink& blob_sink,
                                                const DiffOptions& options);

}  // namespace stagefarm::oci

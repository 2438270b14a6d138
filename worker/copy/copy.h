// COPY done by the worker itself: sources from a directory (the build context
// or another stage's root filesystem) copied into a root filesystem, every
// path on both sides resolved strictly inside its root (fs::RootDir), with
// BuildKit's COPY semantics (dockerfile2llb's copy with AllowWildcard,
// AllowEmptyWildcard, CopyDirContentsOnly, FollowSymlinks and CreateDestPath):
//
//  - a source is a path or a glob (Go's filepath.Match per element) relative
//    to the source root; a glob that matches nothing copies nothing, a plain
//    path that does not exist is NotFound naming it;
//  - a directory source copies its contents, not itself, into the destination;
//    a symlink named as a source is followed (inside the source root);
//    symlinks inside a copied directory are copied as symlinks;
//  - the destination is a directory when it ends with "/", when several files
//    are copied, or when it already is one; otherwise a single file source
//    becomes the destination path itself;
//  - missing parents of the destination are made (mode 0755, owned by the
//    --chown owner, else root);
//  - modes, times, xattrs, hardlinks between copied files, symlinks, device
//    nodes and fifos are kept; --chmod sets the permission bits of every
//    copied entry; --chown sets the owner of every copied entry, and without
//    it context files become 0:0 (the client sends them so) while files from
//    a stage or image keep theirs;
//  - --exclude patterns (.dockerignore syntax) drop matching source paths;
//  - for ADD, local tar archives are unpacked (CopyOptions::unpack_archives).
#ifndef STAGEFARM_WORKER_COPY_COPY_H_
#define STAGEFARM_WORKER_COPY_COPY_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/fs/root.h"

namespace stagefarm::worker {

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Resolves a --chown value ("uid", "uid:gid", "user", "user:group", numeric
// or names) against `root`'s /etc/passwd and /etc/group, as BuildKit does: a
// user alone takes the user's primary group from /etc/passwd, a numeric uid
// alone takes the same number as gid. InvalidArgument naming the value when a
// name is unknown or a number is out of range.
absl::StatusOr<Owner> ResolveChown(const fs::RootDir& root, absl::string_view spec);

struct CopyOptions {
  // --chown, resolved.
  std::optional<Owner> owner;
  // Without --chown: true for context sources (entries become 0:0), false
  // for a stage or image (entries keep their owner).
  bool reset_owner = false;
  // --chmod: permission bits (07777) for every copied entry.
  std::optional<mode_t> mode;
  // --exclude patterns, matched against source-root-relative paths.
  std::vector<std::string> excludes;
  // ADD: a source file that is a tar archive (plain, gzip, bzip2, xz or
  // zstd, recognised by content, not name) is unpacked into the destination
  // directory, keeping the archive's owners unless --chown is given.
  bool unpack_archives = false;
  // --parents: each source keeps its path (below a "/./" pivot when the
  // source has one) under the destination, which is always a directory:
  // `COPY --parents a/b/c.txt /d/` makes /d/a/b/c.txt. Parents made on the
  // way are 0755, owned as --chown says (else root).
  bool parents = false;
};

struct CopyStats {
  size_t entries = 0;
  uint64_t bytes = 0;
};

// Copies `sources` from `source` into `destination` at `dest` (an absolute
// path inside the destination root, WORKDIR already applied; a trailing "/"
// is significant). Errors name the source or destination path and the
// offending value; on an error part of the copy may have been made.
absl::StatusOr<CopyStats> CopyInto(const fs::RootDir& source,
                                   absl::Span<const std::string> sources,
                                   const fs::RootDir& destination, absl::string_view dest,
                                   const CopyOptions& options);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_COPY_COPY_H_

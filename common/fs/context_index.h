// The build-context manifest: every path a build may read from its context
// directory, with the metadata and content digest that decide what a COPY or
// ADD of it produces, and nothing that does not (no mtime, no atime, no inode
// numbers, no directory sizes). The client walks the context once to make it;
// the coordinator selects from it what each instruction reads and folds that
// selection into the instruction's cache key.
//
// Paths are byte strings relative to the context root, slash-separated, clean
// (no ".", "..", empty or trailing elements), without a leading "./" or "/".
// The root itself is not an entry. Entries are sorted by path, bytewise.
//
// What is in the index is what BuildKit's context transfer sends: the walk
// honours the build's ignore file exactly as tonistiigi/fsutil's filtered walk
// does (an excluded directory is skipped whole unless some `!` pattern may
// re-include something below it; a directory is listed when it is included or
// when anything below it is), never follows a symlink, and records each
// symlink as an entry carrying its target text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/digest/digest.h"
#include "common/fs/hash_cache.h"

namespace stagefarm::fs {

enum class EntryType : uint8_t { kFile, kDirectory, kSymlink };

// "file", "dir", "symlink": the names used in messages and in SelectionDigest.
absl::string_view EntryTypeName(EntryType type);

struct ContextEntry {
  std::string path;
  EntryType type = EntryType::kFile;
  // Permission bits plus setuid, setgid and sticky (st_mode & 07777).
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Bytes of content for a file, of target text for a symlink; 0 for a
  // directory (whose st_size depends on the filesystem, not the content).
  uint64_t size = 0;
  // SHA-256 of the content: set for files, and only for files.
  std::optional<digest::Digest> content;
  // The symlink's target exactly as stored; empty unless a symlink.
  std::string link_target;
  // Modification time in nanoseconds since the epoch: what a COPY from the
  // context writes (as BuildKit's context transfer keeps it). Never part of
  // SelectionDigest, so it changes no cache key.
  int64_t mtime_ns = 0;

  friend bool operator==(const ContextEntry&, const ContextEntry&) = default;
};

// Something in the context directory that a build cannot copy and that the
// index therefore leaves out (sockets, FIFOs, device nodes), with why.
struct SkippedEntry {
  std::string path;
  std::string reason;  // e.g. "FIFO: only files, directories and symlinks are indexed"

  friend bool operator==(const SkippedEntry&, const SkippedEntry&) = default;
};

class ContextIndex {
 public:
  // Walks `context_dir` once and indexes what is not excluded by the build's
  // ignore file (found by dockerfile::LoadBuildIgnoreFile(context_dir,
  // dockerfile): `<dockerfile>.dockerignore`, else `<context_dir>/.dockerignore`;
  // only the latter with an empty `dockerfile`, for a named context).
  // Files are hashed as they are read, through a fixed buffer, whatever their
  // size. Each name is opened relative to its parent directory's descriptor
  // with O_NOFOLLOW, so nothing outside the root is ever read, even if the tree
  // changes during the walk; the depth of the tree is bounded by the number of
  // open descriptors allowed (one per level).
  // Errors name the path: the ignore file's own errors as LoadBuildIgnoreFile
  // reports them; NotFound / FailedPrecondition when `context_dir` is missing or
  // not a directory; the errno of any included entry that cannot be read
  // ("ctx/secret.key: open: Permission denied"). An excluded entry that cannot
  // be read is no error, as in BuildKit.
  // With `hashes`, a file whose stamp it remembers is not read (see
  // hash_cache.h), and every file's digest is recorded in it; saving it is
  // the caller's.
  static absl::StatusOr<ContextIndex> Build(const std::filesystem::path& context_dir,
                                            const std::filesystem::path& dockerfile,
                                            HashCache* hashes = nullptr);

  // An index from entries made elsewhere (a manifest received from a client).
  // Sorts them, then checks them as Build's output would be: InvalidArgument,
  // naming the path, for an unclean or absolute path, a duplicate path, a
  // parent that is missing or not a directory, a file without a content digest or a
  // non-file with one, a symlink without a target or a non-symlink with one, or
  // a mode above 07777.
  static absl::StatusOr<ContextIndex> FromEntries(std::vector<ContextEntry> entries);

  const std::vector<ContextEntry>& entries() const { return entries_; }
  // What the walk left out and why (empty for FromEntries), sorted by path.
  const std::vector<SkippedEntry>& skipped() const { return skipped_; }

  // The entry at `path` (a clean relative path), or null.
  const ContextEntry* Find(absl::string_view path) const;

  // The entries that a COPY or ADD with these source paths reads from the
  // context, sorted by path without duplicates; the pointers are into this
  // index and live as long as it does. Each source follows BuildKit's
  // Dockerfile COPY semantics:
  //  - It is joined to "/" and cleaned, so a leading "/" or "./" means the
  //    root and ".." cannot climb above it ("../../etc/passwd" is
  //    "etc/passwd" in the context).
  //  - Symlinks on the way are followed inside the context (an absolute target
  //    is relative to the root; ".." stops at the root), and so is a source
  //    that is itself a symlink. The links followed are selected too: their
  //    targets decide what is read.
  //  - A source naming a directory selects it and everything below it; symlinks
  //    below it are selected as links, not followed. "." selects everything.
  //  - A source containing `*`, `?` or `[` (not escaped by `\`) is a pattern:
  //    the elements before the first one with a wildcard must resolve to a
  //    directory, and then every path below it that matches the whole pattern
  //    (Go's filepath.Match; `*` does not cross "/") is selected with, for a
  //    directory, everything below it.
  // Errors, each naming the source as written:
  //  - InvalidArgument "no source files were specified" for an empty list;
  //  - NotFound `source "app.jar": "/app.jar": not found` for a path that does
  //    not resolve to an entry (BuildKit's wording; a path missing from the
  //    context and one excluded by the ignore file look the same here), or for
  //    a pattern whose directory part does not exist;
  //  - InvalidArgument for a malformed pattern or a symlink loop.
  // A pattern that matches nothing inside an existing directory selects
  // nothing and is not an error: BuildKit passes AllowEmptyWildcard for
  // Dockerfile COPY and ADD (the classic builder failed with "COPY failed: no
  // source files were specified" instead).
  absl::StatusOr<std::vector<const ContextEntry*>> Select(
      absl::Span<const std::string> sources) const;

  // The part of this index a build reading only `sources` needs: what each
  // of them selects (Select, one source at a time) and every directory above
  // that. Select gives the same answer on the part as on the whole for each
  // of these sources. A source that fails to select contributes nothing: the
  // build reports it, with its location, when it computes cache keys.
  ContextIndex Restrict(absl::Span<const std::string> sources) const;

 private:
  std::vector<ContextEntry> entries_;
  std::vector<SkippedEntry> skipped_;
};

// One digest over `selection` (as Select returns it: sorted, no duplicates),
// stable across machines, runs and walk orders. It covers, per entry in order:
// path, type, mode, uid, gid, and the content digest (files) or link target
// (symlinks); never mtime or size (the content digest covers the bytes).
// Layout, each item written with Sha256::UpdateLengthPrefixed, integers as
// decimal text:
//   "stagefarm-context-selection/v2", <entry count>,
//   then per entry: path, EntryTypeName, mode (octal),
//                   content digest string | link target | "" (directory).
// Owners are left out on purpose: the reference's client sends every context
// file as uid/gid 0, so two checkouts owned by different users share cache.
// Changing the layout means changing the version string (v1 hashed uid/gid).
digest::Digest SelectionDigest(absl::Span<const ContextEntry* const> selection);

}  // namespace stagefarm::fs

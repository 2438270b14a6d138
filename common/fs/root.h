// A directory that paths are resolved strictly inside: a snapshot being
// unpacked, a root filesystem a COPY writes into. Every lookup goes through
// openat2(2) with RESOLVE_IN_ROOT, so the kernel treats the directory as "/"
// for the whole walk: an absolute path, an absolute symlink target or a ".."
// at the top never leaves it, and symlinks inside the tree are followed only
// within it (they are clamped, as a chroot would clamp them). Magic links
// (/proc/self/fd/N and friends) are refused.
//
// Paths are root-relative byte strings; a leading "/" means the root. Error
// messages name the path as given, relative to the root, and the root itself:
//   `root "/data/snapshots/x": "etc/passwd": open: Not a directory`
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::fs {

// Owns a file descriptor and closes it when it goes.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  void Reset();
  int fd_ = -1;
};

// Writes all of `bytes` to `fd`, again after a short write or EINTR (a full
// disk's ENOSPC comes with the write after a short one). Returns 0, or the
// errno of the write that failed, for the caller's own message.
int WriteFully(int fd, absl::string_view bytes);

class RootDir {
 public:
  // The directory a path's final component lives in, opened inside the root,
  // and that component. Creating, replacing or removing the entry with *at()
  // calls on `dir` never follows a symlink that `name` may be.
  struct Parent {
    UniqueFd dir;      // O_PATH | O_DIRECTORY
    std::string name;  // one element: never empty, ".", ".." or containing "/"
  };

  // Opens `dir` (following symlinks on the way to it: the caller chose it).
  // NotFound / FailedPrecondition when it is missing or not a directory.
  static absl::StatusOr<RootDir> Open(const std::filesystem::path& dir);

  // The root as opened, for messages.
  const std::filesystem::path& path() const { return path_; }
  // An O_PATH | O_DIRECTORY descriptor of the root; owned by this object.
  int fd() const { return fd_.get(); }

  // open(2) of `path` resolved inside the root with `flags` (O_CLOEXEC is
  // added) and, with O_CREAT, `mode`. Symlinks are followed within the root,
  // including a final one unless `flags` has O_NOFOLLOW. Errors carry the
  // errno's code (NotFound for ENOENT, ...) and name the path.
  absl::StatusOr<UniqueFd> OpenAt(absl::string_view path, int flags, mode_t mode = 0) const;

  // Makes `path` and any missing directory above it (each with `mode`, less
  // the umask), like `mkdir -p` run inside the root, and returns it opened
  // O_PATH | O_DIRECTORY. An existing directory, or a symlink resolving (inside
  // the root) to one, is used as it is. FailedPrecondition naming the path when
  // an element exists and is not a directory (a dangling symlink included).
  absl::StatusOr<UniqueFd> MkdirAll(absl::string_view path, mode_t mode) const;

  // Splits `path` into its parent and final element, and opens the parent
  // inside the root. InvalidArgument when the final element is empty, "." or
  // ".." (the path names the root or cannot be an entry of a directory);
  // NotFound when the parent does not exist.
  absl::StatusOr<Parent> OpenParent(absl::string_view path) const;
  // Same, but makes missing parents first as MkdirAll(parent, mode) does.
  absl::StatusOr<Parent> MkdirParents(absl::string_view path, mode_t mode) const;

  // lstat(2) of `path`: the parent is resolved inside the root, the final
  // element is not followed. NotFound when it does not exist. The root itself
  // ("" or "/") is stat'ed as the root.
  absl::StatusOr<struct stat> Lstat(absl::string_view path) const;

  // Removes `path` and, if it is a directory, everything below it, without
  // following symlinks anywhere (a symlink is removed, not its target). OK when
  // it does not exist. InvalidArgument for the root itself.
  absl::Status RemoveAll(absl::string_view path) const;

 private:
  RootDir(std::filesystem::path path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  // An error for `path` from `op` failing with `error_number`.
  absl::Status PathError(absl::string_view path, absl::string_view op, int error_number) const;

  // `path` cut before its final element: the directory (nullopt when there
  // is no "/": the root) and the element, checked as Parent::name.
  struct ParentPath {
    std::optional<absl::string_view> dir;
    absl::string_view name;
  };
  absl::StatusOr<ParentPath> SplitParent(absl::string_view path) const;

  std::filesystem::path path_;
  UniqueFd fd_;
};

// The names in the directory open at `dir_fd` ("." and ".." left out),
// sorted by bytes. The directory is read through a descriptor of its own, so
// `dir_fd` stays usable. Errors name `display`: `"display": readdir`.
absl::StatusOr<std::vector<std::string>> ListDirectory(int dir_fd, absl::string_view display);

// Removes `name` in the directory `dir_fd` and, if it is a directory, its
// whole tree, never following a symlink. OK when `name` does not exist.
// `display_path` is how errors name `name` (its root-relative path); names
// below it are appended to it. Recursion depth is the tree's depth, one open
// descriptor per level.
absl::Status RemoveAllAt(int dir_fd, absl::string_view name, absl::string_view display_path);

}  // namespace stagefarm::fs

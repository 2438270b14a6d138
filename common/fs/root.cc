#include "common/fs/root.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::fs {
namespace {

using dockerfile::go::Quote;

// RESOLVE_IN_ROOT makes openat2 fail with EAGAIN when a rename elsewhere on
// the filesystem raced with a ".." in the walk; retrying is the documented
// remedy. A bound keeps a hostile concurrent renamer from spinning us forever.
constexpr int kMaxResolveAttempts = 64;

// openat2(2) relative to `root_fd`, clamped to it. glibc 2.36 has no wrapper.
int OpenInRoot(int root_fd, const std::string& path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // The kernel rejects a non-zero mode unless a file may be created.
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const char* name = path.empty() ? "." : path.c_str();
  for (int attempt = 0; attempt < kMaxResolveAttempts; ++attempt) {
    const long fd = syscall(SYS_openat2, root_fd, name, &how, sizeof(how));
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EAGAIN) return -1;
  }
  return -1;
}

// `path` without trailing slashes; "" stays "", "/" stays "/".
absl::string_view TrimTrailingSlashes(absl::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

// Whether `path` names the root itself lexically: "", "/", ".", "./", "//.".
bool IsRootPath(absl::string_view path) {
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    const absl::string_view element = path.substr(start, end - start);
    if (!element.empty() && element != ".") return false;
    start = end + 1;
  }
  return true;
}

struct CloseDir {
  void operator()(DIR* dir) const { closedir(dir); }
};

}  // namespace

void UniqueFd::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

int WriteFully(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return errno;
    bytes.remove_prefix(static_cast<size_t>(written));
  }
  return 0;
}

absl::StatusOr<RootDir> RootDir::Open(const std::filesystem::path& dir) {
  const int fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int error_number = errno;
    const std::string message = absl::StrCat("root ", Quote(dir.string()), ": open");
    if (error_number == ENOTDIR) {
      return absl::FailedPreconditionError(absl::StrCat(message, ": not a directory"));
    }
    return absl::ErrnoToStatus(error_number, message);
  }
  return RootDir(dir, UniqueFd(fd));
}

absl::Status RootDir::PathError(absl::string_view path, absl::string_view op,
                                int error_number) const {
  return absl::ErrnoToStatus(
      error_number, absl::StrCat("root ", Quote(path_.string()), ": ", Quote(path), ": ", op));
}

absl::StatusOr<UniqueFd> RootDir::OpenAt(absl::string_view path, int flags, mode_t mode) const {
  const int fd = OpenInRoot(fd_.get(), std::string(path), flags, mode);
  if (fd < 0) return PathError(path, "open", errno);
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> RootDir::MkdirAll(absl::string_view path, mode_t mode) const {
  constexpr int kDirFlags = O_PATH | O_DIRECTORY;
  // The common case first: the directory is already there.
  int fd = OpenInRoot(fd_.get(), std::string(path), kDirFlags, 0);
  if (fd >= 0) return UniqueFd(fd);
  if (errno != ENOENT) {
    if (errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat("root ", Quote(path_.string()), ": ", Quote(path),
                       ": mkdir: an element exists and is not a directory"));
    }
    return PathError(path, "open", errno);
  }
  // Walk down one element at a time. Each prefix is resolved from the root
  // (not from the previous element's descriptor), so that a symlink met on
  // the way is clamped to the root and not to the directory it sits in.
  UniqueFd current(OpenInRoot(fd_.get(), "/", kDirFlags, 0));
  if (!current.valid()) return PathError("/", "open", errno);
  std::string prefix;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    const std::string element(path.substr(start, end - start));
    start = end + 1;
    if (element.empty() || element == ".") continue;
    absl::StrAppend(&prefix, "/", element);
    fd = OpenInRoot(fd_.get(), prefix, kDirFlags, 0);
    if (fd < 0 && errno == ENOENT) {
      // EEXIST here is a name that appeared meanwhile or a dangling symlink;
      // the open below tells which.
      if (mkdirat(current.get(), element.c_str(), mode) != 0 && errno != EEXIST) {
        return PathError(prefix.substr(1), "mkdir", errno);
      }
      fd = OpenInRoot(fd_.get(), prefix, kDirFlags, 0);
    }
    if (fd < 0) {
      if (errno == ENOTDIR || errno == ENOENT) {
        return absl::FailedPreconditionError(
            absl::StrCat("root ", Quote(path_.string()), ": ", Quote(prefix.substr(1)),
                         ": mkdir: exists and is not a directory"));
      }
      return PathError(prefix.substr(1), "open", errno);
    }
    current = UniqueFd(fd);
  }
  return current;
}

absl::StatusOr<RootDir::ParentPath> RootDir::SplitParent(absl::string_view path) const {
  const absl::string_view trimmed = TrimTrailingSlashes(path);
  const size_t slash = trimmed.rfind('/');
  const absl::string_view name =
      slash == absl::string_view::npos ? trimmed : trimmed.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("root ", Quote(path_.string()), ": ",
                                                   Quote(path), ": does not name an entry"));
  }
  if (slash == absl::string_view::npos) return ParentPath{std::nullopt, name};
  return ParentPath{trimmed.substr(0, slash), name};
}

absl::StatusOr<RootDir::Parent> RootDir::OpenParent(absl::string_view path) const {
  absl::StatusOr<ParentPath> split = SplitParent(path);
  if (!split.ok()) return split.status();
  // "dir/" rather than "dir": the parent must be a directory.
  absl::StatusOr<UniqueFd> dir =
      OpenAt(split->dir ? absl::StrCat(*split->dir, "/") : ".", O_PATH | O_DIRECTORY);
  if (!dir.ok()) return dir.status();
  return Parent{*std::move(dir), std::string(split->name)};
}

absl::StatusOr<RootDir::Parent> RootDir::MkdirParents(absl::string_view path, mode_t mode) const {
  absl::StatusOr<ParentPath> split = SplitParent(path);
  if (!split.ok()) return split.status();
  // MkdirAll's descriptor is the parent, opened as OpenParent would: not
  // opened a second time (once per file when a context is laid out). With
  // no "/", MkdirAll("") opens the root.
  absl::StatusOr<UniqueFd> made = MkdirAll(split->dir.value_or(""), mode);
  if (!made.ok()) return made.status();
  return Parent{*std::move(made), std::string(split->name)};
}

absl::StatusOr<struct stat> RootDir::Lstat(absl::string_view path) const {
  struct stat st {};
  if (IsRootPath(path)) {
    if (fstat(fd_.get(), &st) != 0) return PathError(path, "stat", errno);
    return st;
  }
  absl::StatusOr<Parent> parent = OpenParent(path);
  if (!parent.ok()) return parent.status();
  if (fstatat(parent->dir.get(), parent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(path, "lstat", errno);
  }
  return st;
}

absl::Status RootDir::RemoveAll(absl::string_view path) const {
  absl::StatusOr<Parent> parent = OpenParent(path);
  if (!parent.ok()) {
    // A missing parent means nothing to remove.
    return absl::IsNotFound(parent.status()) ? absl::OkStatus() : parent.status();
  }
  return RemoveAllAt(parent->dir.get(), parent->name, path);
}

absl::StatusOr<std::vector<std::string>> ListDirectory(int dir_fd, absl::string_view display) {
  auto error = [&](absl::string_view op) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat(Quote(display.empty() ? "/" : display), ": ", op));
  };
  // The stream gets its own descriptor: closedir closes it.
  const int stream_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (stream_fd < 0) return error("open");
  std::unique_ptr<DIR, CloseDir> stream(fdopendir(stream_fd));
  if (stream == nullptr) {
    const absl::Status status = error("opendir");
    close(stream_fd);
    return status;
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* child = readdir(stream.get())) {
    const absl::string_view name(child->d_name);
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return error("readdir");
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status RemoveAllAt(int dir_fd, absl::string_view name, absl::string_view display_path) {
  const std::string name_str(name);
  auto error = [&](absl::string_view op) {
    return absl::ErrnoToStatus(errno, absl::StrCat(Quote(display_path), ": ", op));
  };
  if (unlinkat(dir_fd, name_str.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR) return error("remove");
  UniqueFd dir(openat(dir_fd, name_str.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) return errno == ENOENT ? absl::OkStatus() : error("open");
  // Names first, removals after: removing while reading a directory stream
  // leaves unspecified whether later readdir calls see every entry.
  absl::StatusOr<std::vector<std::string>> children = ListDirectory(dir.get(), display_path);
  if (!children.ok()) return children.status();
  for (const std::string& child : *children) {
    absl::Status removed = RemoveAllAt(dir.get(), child, absl::StrCat(display_path, "/", child));
    if (!removed.ok()) return removed;
  }
  dir = UniqueFd();
  if (unlinkat(dir_fd, name_str.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return error("rmdir");
  }
  return absl::OkStatus();
}

}  // namespace stagefarm::fs

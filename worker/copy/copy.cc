#include "worker/copy/copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/dockerignore.h"
#include "common/fs/account_files.h"
#include "common/oci/layer_unpack.h"

namespace stagefarm::worker {
namespace {

absl::Status Errno(absl::string_view what, absl::string_view path, int error) {
  return absl::ErrnoToStatus(error, absl::StrCat(what, " \"", path, "\""));
}

bool HasMeta(absl::string_view pattern) {
  return pattern.find_first_of("*?[\\") != absl::string_view::npos;
}

std::string Join(absl::string_view dir, absl::string_view name) {
  if (dir.empty() || dir == "/") return absl::StrCat("/", name);
  return absl::StrCat(dir, "/", name);
}

absl::string_view BaseName(absl::string_view path) {
  size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

absl::string_view DirName(absl::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos || slash == 0) return "/";
  return path.substr(0, slash);
}


// Whether the file open at `fd` is a tar archive, possibly compressed with
// gzip, bzip2, xz or zstd: libarchive recognises a first tar header.
// COPY --parents: the directory of a source that the kept path starts below,
// written as "PIVOT/./REST" (BuildKit's pivot), cleaned and root-relative;
// "" (the source root) without one.
std::string ParentsPivot(absl::string_view source) {
  const size_t at = source.find("/./");
  if (at == absl::string_view::npos) return "";
  return dockerfile::CleanPath(absl::StrCat("/", source.substr(0, at))).substr(1);
}

bool IsTarArchive(int fd) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                           &archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_zstd(a.get());
  const int copy = ::dup(fd);
  if (copy < 0) return false;
  bool recognised = false;
  if (archive_read_open_fd(a.get(), copy, 65536) == ARCHIVE_OK) {
    archive_entry* entry = nullptr;
    recognised = archive_read_next_header(a.get(), &entry) == ARCHIVE_OK;
  }
  archive_read_close(a.get());
  ::close(copy);
  // The duplicate shares the file offset: rewind for whoever reads next.
  if (::lseek(fd, 0, SEEK_SET) != 0) return false;
  return recognised;
}

class Copier {
 public:
  Copier(const fs::RootDir& source, const fs::RootDir& destination, const CopyOptions& options,
         std::optional<dockerfile::PatternMatcher> excludes)
      : source_(source),
        destination_(destination),
        options_(options),
        excludes_(std::move(excludes)) {}

  const CopyStats& stats() const { return stats_; }

  // Expands one source pattern into existing source paths ("a/b", no leading
  // slash; "" is the source root), sorted per directory as Go's Glob does.
  absl::StatusOr<std::vector<std::string>> Expand(absl::string_view pattern) {
    std::string clean = dockerfile::CleanPath(absl::StrCat("/", pattern));
    absl::string_view relative = absl::string_view(clean).substr(1);
    if (!HasMeta(relative)) {
      // Opened, not lstat'ed: a source that is a symlink is copied as what it
      // points to, resolved inside the source root, so a link whose target is
      // not there (an absolute link out of the context) is not found either.
      if (absl::Status status =
              source_.OpenAt(relative.empty() ? "." : relative, O_PATH).status();
          !status.ok()) {
        if (absl::IsNotFound(status)) {
          return absl::NotFoundError(absl::StrCat("COPY source \"", pattern, "\": not found"));
        }
        return status;
      }
      return std::vector<std::string>{std::string(relative)};
    }
    std::vector<std::string> prefixes = {""};
    for (absl::string_view element : absl::StrSplit(relative, '/')) {
      std::vector<std::string> next;
      for (const std::string& prefix : prefixes) {
        if (!HasMeta(element)) {
          std::string path = prefix.empty() ? std::string(element) : Join(prefix, element);
          if (source_.Lstat(path).ok()) next.push_back(std::move(path));
          continue;
        }
        absl::StatusOr<fs::UniqueFd> dir =
            source_.OpenAt(prefix.empty() ? "." : prefix, O_RDONLY | O_DIRECTORY);
        if (!dir.ok()) continue;  // not a directory: nothing below it matches
        absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(dir->get(), prefix);
        if (!names.ok()) return names.status();
        for (const std::string& name : *names) {
          absl::StatusOr<bool> matched = dockerfile::MatchGlob(element, name);
          if (!matched.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("COPY source \"", pattern, "\": ", matched.status().message()));
          }
          if (*matched) next.push_back(prefix.empty() ? name : Join(prefix, name));
        }
      }
      prefixes = std::move(next);
    }
    return prefixes;
  }

  absl::StatusOr<bool> Excluded(absl::string_view source_path) {
    if (!excludes_ || source_path.empty()) return false;
    return excludes_->MatchesOrParentMatches(source_path);
  }

  // Makes `path` and its missing parents (0755, the --chown owner or root).
  absl::Status MakeDirs(absl::string_view path) {
    std::string prefix;
    for (absl::string_view element : absl::StrSplit(path, '/', absl::SkipEmpty())) {
      prefix = Join(prefix, element);
      if (destination_.Lstat(prefix).ok()) continue;
      absl::StatusOr<fs::UniqueFd> made = destination_.MkdirAll(prefix, 0755);
      if (!made.ok()) return made.status();
      const Owner owner = options_.owner.value_or(Owner{});
      if (::fchownat(made->get(), "", owner.uid, owner.gid, AT_EMPTY_PATH) != 0) {
        return Errno("cannot chown", prefix, errno);
      }
      // The umask may have narrowed the mode; set it exactly, through the
      // descriptor (a path would be resolved outside the root).
      const std::string proc = absl::StrCat("/proc/self/fd/", made->get());
      if (::chmod(proc.c_str(), 0755) != 0) return Errno("cannot chmod", prefix, errno);
    }
    return absl::OkStatus();
  }

  // Copies the contents of the open source directory `dir` (at `source_path`)
  // into the existing destination directory `dest_path`.
  absl::Status CopyContents(int dir, const std::string& source_path,
                            const std::string& dest_path) {
    absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(dir, source_path);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      const std::string child = source_path.empty() ? name : Join(source_path, name);
      absl::StatusOr<bool> excluded = Excluded(child);
      if (!excluded.ok()) return excluded.status();
      if (*excluded) continue;
      struct stat info;
      if (::fstatat(dir, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
        return Errno("cannot stat source", child, errno);
      }
      if (absl::Status status = CopyNode(dir, name, info, child, Join(dest_path, name));
          !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  // A directory source (dockerfile2llb's CopyDirContentsOnly): its contents
  // go into `dest_path`, which is made like a missing parent (0755, the
  // --chown owner) when it does not exist. An existing directory, or a
  // symlink to one, is used as it is: fsutil's copy gives the top directory
  // the source's metadata only when it made it itself, and MkdirAll made it.
  absl::Status CopyContentsInto(int dir, const std::string& source_path,
                                const std::string& dest_path) {
    if (absl::Status status = MakeDirs(dest_path); !status.ok()) return status;
    ++stats_.entries;
    return CopyContents(dir, source_path, dest_path);
  }

  // Copies the entry `name` of source directory `dir` (not following it) to
  // `dest_path`.
  absl::Status CopyNode(int dir, const std::string& name, const struct stat& info,
                        const std::string& source_path, const std::string& dest_path) {
    if (S_ISDIR(info.st_mode)) {
      int child = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) return Errno("cannot open source", source_path, errno);
      fs::UniqueFd owned(child);
      return CopyDirectory(child, info, source_path, dest_path);
    }
    if (S_ISREG(info.st_mode)) {
      int file = ::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (file < 0) return Errno("cannot open source", source_path, errno);
      fs::UniqueFd owned(file);
      return CopyFile(file, info, source_path, dest_path);
    }
    absl::StatusOr<fs::RootDir::Parent> parent = ReplaceableTarget(dest_path);
    if (!parent.ok()) return parent.status();
    const char* target_name = parent->name.c_str();
    if (S_ISLNK(info.st_mode)) {
      std::string target(info.st_size > 0 ? info.st_size + 1 : 4096, '\0');
      ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
      if (n < 0) return Errno("cannot read link", source_path, errno);
      target.resize(n);
      if (::symlinkat(target.c_str(), parent->dir.get(), target_name) != 0) {
        return Errno("cannot make symlink", dest_path, errno);
      }
    } else if (S_ISCHR(info.st_mode) || S_ISBLK(info.st_mode) || S_ISFIFO(info.st_mode)) {
      if (::mknodat(parent->dir.get(), target_name, (info.st_mode & S_IFMT) | 0600,
                    info.st_rdev) != 0) {
        return Errno("cannot make node", dest_path, errno);
      }
    } else {
      return absl::OkStatus();  // sockets are not copied
    }
    ++stats_.entries;
    return ApplyMetadata(parent->dir.get(), parent->name, info, dest_path, -1);
  }

  absl::Status CopyDirectory(int dir, const struct stat& info, const std::string& source_path,
                             const std::string& dest_path) {
    absl::StatusOr<struct stat> existing = destination_.Lstat(dest_path);
    if (existing.ok() && !S_ISDIR(existing->st_mode)) {
      if (absl::Status status = destination_.RemoveAll(dest_path); !status.ok()) return status;
      existing = absl::NotFoundError("removed");
    }
    if (!existing.ok()) {
      if (!absl::IsNotFound(existing.status())) return existing.status();
      absl::StatusOr<fs::RootDir::Parent> parent = destination_.OpenParent(dest_path);
      if (!parent.ok()) return parent.status();
      if (::mkdirat(parent->dir.get(), parent->name.c_str(), 0700) != 0) {
        return Errno("cannot make directory", dest_path, errno);
      }
    }
    ++stats_.entries;
    if (absl::Status status = CopyContents(dir, source_path, dest_path); !status.ok()) {
      return status;
    }
    // The directory's own metadata last, so its mtime is not disturbed by
    // the entries made in it.
    absl::StatusOr<fs::RootDir::Parent> parent = destination_.OpenParent(dest_path);
    if (!parent.ok()) {
      // The root itself ("COPY dir /"): apply to the root.
      return ApplyMetadata(destination_.fd(), "", info, dest_path, dir);
    }
    return ApplyMetadata(parent->dir.get(), parent->name, info, dest_path, dir);
  }

  absl::Status CopyFile(int file, const struct stat& info, const std::string& source_path,
                        const std::string& dest_path) {
    absl::StatusOr<fs::RootDir::Parent> parent = ReplaceableTarget(dest_path);
    if (!parent.ok()) return parent.status();
    if (info.st_nlink > 1) {
      auto link = links_.find(std::make_pair(info.st_dev, info.st_ino));
      if (link != links_.end()) {
        absl::StatusOr<fs::RootDir::Parent> first = destination_.OpenParent(link->second);
        if (!first.ok()) return first.status();
        if (::linkat(first->dir.get(), first->name.c_str(), parent->dir.get(),
                     parent->name.c_str(), 0) != 0) {
          return Errno("cannot link", dest_path, errno);
        }
        ++stats_.entries;
        return absl::OkStatus();
      }
      links_.emplace(std::make_pair(info.st_dev, info.st_ino), dest_path);
    }
    int out = ::openat(parent->dir.get(), parent->name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) return Errno("cannot create", dest_path, errno);
    fs::UniqueFd owned(out);
    uint64_t left = static_cast<uint64_t>(info.st_size);
    bool use_read_write = false;
    std::string buffer;
    while (left > 0) {
      ssize_t n = -1;
      if (!use_read_write) {
        n = ::copy_file_range(file, nullptr, out, nullptr, std::min<uint64_t>(left, 1 << 30), 0);
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
          use_read_write = true;
          continue;
        }
      } else {
        buffer.resize(1 << 20);
        n = ::read(file, buffer.data(), std::min<uint64_t>(left, buffer.size()));
        if (n > 0) {
          if (const int error = fs::WriteFully(out, absl::string_view(buffer.data(), n));
              error != 0) {
            return Errno("cannot copy to", dest_path, error);
          }
        }
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("cannot copy to", dest_path, errno);
      if (n == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("COPY source \"", source_path, "\" shrank while it was copied"));
      }
      left -= n;
    }
    ++stats_.entries;
    stats_.bytes += info.st_size;
    return ApplyMetadata(parent->dir.get(), parent->name, info, dest_path, file);
  }

  // The parent of `dest_path` and its name, with any non-directory already
  // there removed. A directory there is an error: a file cannot replace it.
  absl::StatusOr<fs::RootDir::Parent> ReplaceableTarget(const std::string& dest_path) {
    absl::StatusOr<fs::RootDir::Parent> parent = destination_.OpenParent(dest_path);
    if (!parent.ok()) return parent.status();
    struct stat existing;
    if (::fstatat(parent->dir.get(), parent->name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(existing.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot copy a non-directory over the directory \"", dest_path, "\""));
      }
      if (::unlinkat(parent->dir.get(), parent->name.c_str(), 0) != 0) {
        return Errno("cannot replace", dest_path, errno);
      }
    }
    return parent;
  }

  // Owner, mode, xattrs (from `source_fd` when it is open) and times of the
  // entry `name` in `dir` ("" means `dir` itself).
  absl::Status ApplyMetadata(int dir, const std::string& name, const struct stat& info,
                             const std::string& dest_path, int source_fd) {
    Owner owner{info.st_uid, info.st_gid};
    if (options_.owner) {
      owner = *options_.owner;
    } else if (options_.reset_owner) {
      owner = Owner{};
    }
    const int at_flags = name.empty() ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW;
    if (::fchownat(dir, name.c_str(), owner.uid, owner.gid, at_flags) != 0) {
      return Errno("cannot chown", dest_path, errno);
    }
    const bool symlink = S_ISLNK(info.st_mode);
    if (!symlink) {
      const mode_t mode = options_.mode ? *options_.mode : (info.st_mode & 07777);
      // Entries we just made (never symlinks here), so following is safe;
      // fchmodat cannot take AT_SYMLINK_NOFOLLOW on Linux.
      int fd = ::openat(dir, name.empty() ? "." : name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return Errno("cannot open", dest_path, errno);
      fs::UniqueFd owned(fd);
      const std::string proc = absl::StrCat("/proc/self/fd/", fd);
      if (::chmod(proc.c_str(), mode) != 0) return Errno("cannot chmod", dest_path, errno);
      if (source_fd >= 0) {
        if (absl::Status status = CopyXattrs(source_fd, proc, dest_path); !status.ok()) {
          return status;
        }
      }
    }
    const struct timespec times[2] = {info.st_atim, info.st_mtim};
    if (::utimensat(dir, name.c_str(), times, at_flags) != 0) {
      return Errno("cannot set times of", dest_path, errno);
    }
    return absl::OkStatus();
  }

  absl::Status CopyXattrs(int source_fd, const std::string& target, const std::string& dest_path) {
    std::string names(65536, '\0');
    ssize_t size = ::flistxattr(source_fd, names.data(), names.size());
    if (size < 0) {
      if (errno == ENOTSUP || errno == EBADF) return absl::OkStatus();
      return Errno("cannot list xattrs of the source of", dest_path, errno);
    }
    names.resize(size);
    for (absl::string_view name : absl::StrSplit(names, '\0', absl::SkipEmpty())) {
      std::string key(name);
      std::string value(65536, '\0');
      ssize_t length = ::fgetxattr(source_fd, key.c_str(), value.data(), value.size());
      if (length < 0) continue;
      if (::lsetxattr(target.c_str(), key.c_str(), value.data(), length, 0) != 0) {
        return Errno(absl::StrCat("cannot set xattr ", key, " on"), dest_path, errno);
      }
    }
    return absl::OkStatus();
  }

 private:
  const fs::RootDir& source_;
  const fs::RootDir& destination_;
  const CopyOptions& options_;
  std::optional<dockerfile::PatternMatcher> excludes_;
  CopyStats stats_;
  // Hard-linked sources already copied: (device, inode) -> destination path.
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

absl::StatusOr<Owner> ResolveChown(const fs::RootDir& root, absl::string_view spec) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(spec, ':');
  const bool has_group = absl::StrContains(spec, ':');
  if (parts.first.empty() || (has_group && parts.second.empty())) {
    return absl::InvalidArgumentError(absl::StrCat("invalid --chown value \"", spec, "\""));
  }
  Owner owner;
  uint32_t number = 0;
  if (absl::SimpleAtoi(parts.first, &number)) {
    owner.uid = number;
    owner.gid = number;  // BuildKit: a uid alone means the same gid
  } else {
    const std::vector<fs::PasswdEntry> users = fs::ReadPasswd(root);
    auto user = std::find_if(users.begin(), users.end(),
                             [&](const fs::PasswdEntry& entry) { return entry.name == parts.first; });
    if (user == users.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--chown=", spec, ": no user \"",
                                                     parts.first, "\" in /etc/passwd"));
    }
    owner.uid = user->uid;
    owner.gid = user->gid;
  }
  if (has_group) {
    if (absl::SimpleAtoi(parts.second, &number)) {
      owner.gid = number;
    } else {
      const std::vector<fs::GroupEntry> groups = fs::ReadGroup(root);
      auto group = std::find_if(groups.begin(), groups.end(), [&](const fs::GroupEntry& entry) {
        return entry.name == parts.second;
      });
      if (group == groups.end()) {
        return absl::InvalidArgumentError(absl::StrCat("--chown=", spec, ": no group \"",
                                                       parts.second, "\" in /etc/group"));
      }
      owner.gid = group->gid;
    }
  }
  return owner;
}

namespace {

// ADD of a local archive: unpacked into the directory `dest` (made if
// missing, as COPY makes destinations) with the layer unpacker, so every
// entry is checked and stays inside the destination.
absl::Status UnpackArchive(int fd, absl::string_view source_path, const fs::RootDir& destination,
                           const std::string& dest, const CopyOptions& options) {
  absl::StatusOr<fs::UniqueFd> dir = destination.MkdirAll(dest, 0755);
  if (!dir.ok()) return dir.status();
  std::error_code error;
  const std::filesystem::path host =
      std::filesystem::read_symlink(absl::StrCat("/proc/self/fd/", dir->get()), error);
  if (error) return absl::InternalError(absl::StrCat("cannot resolve ", dest, ": ", error.message()));
  absl::StatusOr<fs::RootDir> into = fs::RootDir::Open(host);
  if (!into.ok()) return into.status();
  if (::lseek(fd, 0, SEEK_SET) != 0) return Errno("cannot read", source_path, errno);
  std::string buffer(1 << 20, '\0');
  oci::LayerReader read = [&]() -> absl::StatusOr<absl::string_view> {
    ssize_t n;
    do {
      n = ::read(fd, buffer.data(), buffer.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) return Errno("cannot read", source_path, errno);
    return absl::string_view(buffer.data(), static_cast<size_t>(n));
  };
  oci::ApplyOptions apply;
  if (options.owner) apply.owner = std::make_pair(options.owner->uid, options.owner->gid);
  absl::StatusOr<oci::ApplyStats> applied = oci::ApplyLayer(*into, read, apply);
  if (!applied.ok()) {
    return absl::Status(applied.status().code(), absl::StrCat("ADD archive \"", source_path,
                                                              "\": ", applied.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CopyStats> CopyInto(const fs::RootDir& source,
                                   absl::Span<const std::string> sources,
                                   const fs::RootDir& destination, absl::string_view dest,
                                   const CopyOptions& options) {
  if (!absl::StartsWith(dest, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("COPY destination \"", dest, "\" must be absolute (WORKDIR applied)"));
  }
  std::optional<dockerfile::PatternMatcher> excludes;
  if (!options.excludes.empty()) {
    absl::StatusOr<dockerfile::PatternMatcher> matcher =
        dockerfile::PatternMatcher::Create(options.excludes);
    if (!matcher.ok()) return matcher.status();
    excludes = *std::move(matcher);
  }
  Copier copier(source, destination, options, std::move(excludes));
  std::vector<std::string> matches;
  // --parents: the part of each match kept below the destination (the match
  // less its source's pivot directory).
  std::vector<std::string> kept_paths;
  for (const std::string& pattern : sources) {
    absl::StatusOr<std::vector<std::string>> expanded = copier.Expand(pattern);
    if (!expanded.ok()) return expanded.status();
    const std::string pivot = ParentsPivot(pattern);
    for (std::string& match : *expanded) {
      absl::StatusOr<bool> excluded = copier.Excluded(match);
      if (!excluded.ok()) return excluded.status();
      if (*excluded) continue;
      std::string kept = match;
      if (!pivot.empty() && (match == pivot || absl::StartsWith(match, pivot + "/"))) {
        kept = match.size() == pivot.size() ? "" : match.substr(pivot.size() + 1);
      }
      kept_paths.push_back(std::move(kept));
      matches.push_back(std::move(match));
    }
  }
  if (matches.empty()) return copier.stats();

  const bool trailing_slash = absl::EndsWith(dest, "/");
  const std::string clean_dest = dockerfile::CleanPath(dest);
  const bool dest_is_dir = options.parents || trailing_slash || matches.size() > 1 ||
                           destination.OpenAt(clean_dest, O_PATH | O_DIRECTORY).ok();
  for (size_t i = 0; i < matches.size(); ++i) {
    const std::string& match = matches[i];
    if (options.parents) {
      // The match goes to DEST/<its path below the pivot>: a directory's
      // contents into that directory, anything else as that path.
      const std::string target =
          kept_paths[i].empty() ? clean_dest : Join(clean_dest, kept_paths[i]);
      absl::StatusOr<fs::UniqueFd> opened = source.OpenAt(match.empty() ? "." : match, O_PATH);
      if (!opened.ok()) return opened.status();
      struct stat info;
      if (::fstat(opened->get(), &info) != 0) return Errno("cannot stat source", match, errno);
      if (absl::Status status = copier.MakeDirs(DirName(target)); !status.ok()) return status;
      if (S_ISDIR(info.st_mode)) {
        absl::StatusOr<fs::UniqueFd> dir =
            source.OpenAt(match.empty() ? "." : match, O_RDONLY | O_DIRECTORY);
        if (!dir.ok()) return dir.status();
        if (absl::Status status = copier.CopyDirectory(dir->get(), info, match, target);
            !status.ok()) {
          return status;
        }
      } else if (S_ISREG(info.st_mode)) {
        absl::StatusOr<fs::UniqueFd> file = source.OpenAt(match, O_RDONLY);
        if (!file.ok()) return file.status();
        if (absl::Status status = copier.CopyFile(file->get(), info, match, target); !status.ok()) {
          return status;
        }
      } else {
        absl::StatusOr<fs::RootDir::Parent> parent = source.OpenParent(match);
        if (!parent.ok()) return parent.status();
        if (absl::Status status =
                copier.CopyNode(parent->dir.get(), parent->name, info, match, target);
            !status.ok()) {
          return status;
        }
      }
      continue;
    }
    absl::StatusOr<fs::UniqueFd> opened = source.OpenAt(match.empty() ? "." : match, O_PATH);
    if (!opened.ok()) return opened.status();
    struct stat info;
    if (::fstat(opened->get(), &info) != 0) return Errno("cannot stat source", match, errno);
    if (S_ISDIR(info.st_mode)) {
      absl::StatusOr<fs::UniqueFd> dir =
          source.OpenAt(match.empty() ? "." : match, O_RDONLY | O_DIRECTORY);
      if (!dir.ok()) return dir.status();
      if (absl::Status status = copier.CopyContentsInto(dir->get(), match, clean_dest);
          !status.ok()) {
        return status;
      }
      continue;
    }
    const std::string target =
        dest_is_dir ? Join(clean_dest, BaseName(match.empty() ? "." : match)) : clean_dest;
    if (absl::Status status = copier.MakeDirs(DirName(target)); !status.ok()) return status;
    if (S_ISREG(info.st_mode)) {
      absl::StatusOr<fs::UniqueFd> file = source.OpenAt(match, O_RDONLY);
      if (!file.ok()) return file.status();
      if (options.unpack_archives && IsTarArchive(file->get())) {
        absl::Status unpacked = UnpackArchive(file->get(), match, destination, clean_dest, options);
        if (!unpacked.ok()) return unpacked;
        continue;
      }
      if (absl::Status status = copier.CopyFile(file->get(), info, match, target); !status.ok()) {
        return status;
      }
      continue;
    }
    absl::StatusOr<fs::RootDir::Parent> parent = source.OpenParent(match);
    if (!parent.ok()) return parent.status();
    if (absl::Status status = copier.CopyNode(parent->dir.get(), parent->name, info, match, target);
        !status.ok()) {
      return status;
    }
  }
  return copier.stats();
}

}  // namespace stagefarm::worker

#include "worker/snapshots/snapshots.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs/root.h"

namespace stagefarm::snapshots {
namespace {

namespace stdfs = std::filesystem;
using fs::UniqueFd;

constexpr absl::string_view kTempPrefix = "tmp-";

constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

absl::Status PathError(absl::string_view path, absl::string_view op, int error_number) {
  return absl::ErrnoToStatus(error_number, absl::StrCat("\"", path, "\": ", op));
}

std::string ProcPath(int dir_fd, absl::string_view name) {
  return absl::StrCat("/proc/self/fd/", dir_fd, "/", name);
}

bool IsWhiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

bool IsOpaque(int dir_fd, absl::string_view name) {
  char value[2];
  return lgetxattr(ProcPath(dir_fd, name).c_str(), kOpaqueXattr, value, 2) == 1 && value[0] == 'y';
}

// Copies one snapshot tree onto a target tree; see CopyLayerOnto.
class LayerCopier {
 public:
  explicit LayerCopier(int target_root) : target_root_(target_root) {}

  absl::Status CopyDir(int src, int dst, const std::string& rel);

 private:
  absl::Status CopyEntry(int src, int dst, const std::string& name, const std::string& rel);
  absl::Status CopyContent(int src, int dst, const std::string& name, const std::string& rel);
  absl::Status SetMetadata(int src, int dst, const std::string& name, const struct stat& st,
                           const std::string& rel);

  int target_root_;
  // Target path (relative to the target root) of each multiply-linked source file.
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::string> links_;
};

absl::Status LayerCopier::CopyDir(int src, int dst, const std::string& rel) {
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(src, rel);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    absl::Status copied = CopyEntry(src, dst, name, rel.empty() ? name : rel + "/" + name);
    if (!copied.ok()) return copied;
  }
  return absl::OkStatus();
}

absl::Status LayerCopier::CopyEntry(int src, int dst, const std::string& name,
                                    const std::string& rel) {
  struct stat st {};
  if (fstatat(src, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(rel, "lstat", errno);
  }
  struct stat existing {};
  const bool exists = fstatat(dst, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
  if (IsWhiteout(st) || S_ISSOCK(st.st_mode)) {
    return IsWhiteout(st) ? fs::RemoveAllAt(dst, name, rel) : absl::OkStatus();
  }
  if (S_ISDIR(st.st_mode)) {
    if (exists && S_ISDIR(existing.st_mode)) {
      if (IsOpaque(src, name)) {
        UniqueFd sub(openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub.valid()) return PathError(rel, "open target", errno);
        absl::StatusOr<std::vector<std::string>> old = fs::ListDirectory(sub.get(), rel);
        if (!old.ok()) return old.status();
        for (const std::string& child : *old) {
          absl::Status removed = fs::RemoveAllAt(sub.get(), child, rel + "/" + child);
          if (!removed.ok()) return removed;
        }
      }
    } else {
      if (exists) {
        absl::Status removed = fs::RemoveAllAt(dst, name, rel);
        if (!removed.ok()) return removed;
      }
      if (mkdirat(dst, name.c_str(), 0700) != 0) return PathError(rel, "mkdir", errno);
    }
    UniqueFd src_sub(openat(src, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!src_sub.valid()) return PathError(rel, "open", errno);
    UniqueFd dst_sub(openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dst_sub.valid()) return PathError(rel, "open target", errno);
    absl::Status copied = CopyDir(src_sub.get(), dst_sub.get(), rel);
    if (!copied.ok()) return copied;
    // After the children, which change the directory's mtime.
    return SetMetadata(src, dst, name, st, rel);
  }
  if (exists) {
    absl::Status removed = fs::RemoveAllAt(dst, name, rel);
    if (!removed.ok()) return removed;
  }
  if (st.st_nlink > 1) {
    auto [it, first] = links_.try_emplace(std::make_pair(st.st_dev, st.st_ino), rel);
    if (!first) {
      if (linkat(target_root_, it->second.c_str(), dst, name.c_str(), 0) != 0) {
        return PathError(rel, absl::StrCat("link to \"", it->second, "\""), errno);
      }
      return absl::OkStatus();
    }
  }
  if (S_ISREG(st.st_mode)) {
    absl::Status copied = CopyContent(src, dst, name, rel);
    if (!copied.ok()) return copied;
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(PATH_MAX, '\0');
    const ssize_t size = readlinkat(src, name.c_str(), target.data(), target.size());
    if (size < 0) return PathError(rel, "readlink", errno);
    target.resize(static_cast<size_t>(size));
    if (symlinkat(target.c_str(), dst, name.c_str()) != 0) return PathError(rel, "symlink", errno);
  } else if (mknodat(dst, name.c_str(), st.st_mode & (S_IFMT | 0777), st.st_rdev) != 0) {
    return PathError(rel, "mknod", errno);
  }
  return SetMetadata(src, dst, name, st, rel);
}

absl::Status LayerCopier::CopyContent(int src, int dst, const std::string& name,
                                      const std::string& rel) {
  UniqueFd in(openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in.valid()) return PathError(rel, "open", errno);
  UniqueFd out(
      openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out.valid()) return PathError(rel, "create", errno);
  std::string buffer(64 * 1024, '\0');
  while (true) {
    const ssize_t n = read(in.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(rel, "read", errno);
    }
    if (n == 0) return absl::OkStatus();
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = write(out.get(), buffer.data() + done, static_cast<size_t>(n - done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return PathError(rel, "write", errno);
      }
      done += w;
    }
  }
}

absl::Status LayerCopier::SetMetadata(int src, int dst, const std::string& name,
                                      const struct stat& st, const std::string& rel) {
  // Owner first: chown clears setuid/setgid and security.capability.
  if (fchownat(dst, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(rel, "chown", errno);
  }
  if (!S_ISLNK(st.st_mode) && fchmodat(dst, name.c_str(), st.st_mode & 07777, 0) != 0) {
    return PathError(rel, "chmod", errno);
  }
  const std::string from = ProcPath(src, name);
  const std::string to = ProcPath(dst, name);
  char keys[64 * 1024];
  const ssize_t size = llistxattr(from.c_str(), keys, sizeof(keys));
  if (size < 0 && errno != ENOTSUP) return PathError(rel, "listxattr", errno);
  std::string value(64 * 1024, '\0');
  for (ssize_t i = 0; i < size;) {
    const std::string key(keys + i);
    i += static_cast<ssize_t>(key.size()) + 1;
    if (absl::StartsWith(key, "trusted.overlay.")) continue;
    const ssize_t n = lgetxattr(from.c_str(), key.c_str(), value.data(), value.size());
    if (n < 0) return PathError(rel, absl::StrCat("getxattr ", key), errno);
    if (lsetxattr(to.c_str(), key.c_str(), value.data(), static_cast<size_t>(n), 0) != 0) {
      return PathError(rel, absl::StrCat("setxattr ", key), errno);
    }
  }
  const timespec times[2] = {st.st_atim, st.st_mtim};
  if (utimensat(dst, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(rel, "set times", errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenDirectory(const stdfs::path& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return PathError(dir.native(), "open", errno);
  return fd;
}

// Whether `path` exists in the stack of snapshot dirs `lowers` (top-most
// first), as overlayfs resolves it: a whiteout or any other non-directory on
// the way hides it and everything below, an opaque directory on the way hides
// the layers below. Each element is lstat'ed below one verified to be a real
// directory, so no symlink in a snapshot is followed.
// Where `path` (root-relative) is visible through `lowers` (top-most first):
// the entry in the highest lower that has it, unless a whiteout or an opaque
// directory above hides it; nullopt when it is not visible.
absl::StatusOr<std::optional<stdfs::path>> FindInLowers(const std::vector<stdfs::path>& lowers,
                                                        absl::string_view path) {
  const std::vector<std::string> elements = absl::StrSplit(path, '/', absl::SkipEmpty());
  for (const stdfs::path& lower : lowers) {
    stdfs::path current = lower;
    bool opaque = false;
    for (size_t i = 0; i < elements.size(); ++i) {
      current /= elements[i];
      struct stat st {};
      if (lstat(current.c_str(), &st) != 0) {
        if (errno == ENOENT) break;
        return PathError(current.native(), "lstat", errno);
      }
      if (i + 1 == elements.size()) {
        if (IsWhiteout(st)) return std::optional<stdfs::path>();
        return std::optional<stdfs::path>(current);
      }
      if (!S_ISDIR(st.st_mode)) return std::optional<stdfs::path>();
      char value[2];
      if (lgetxattr(current.c_str(), kOpaqueXattr, value, 2) == 1 && value[0] == 'y') {
        opaque = true;
      }
    }
    if (opaque) return std::optional<stdfs::path>();
  }
  return std::optional<stdfs::path>();
}

absl::StatusOr<bool> ExistsInLowers(const std::vector<stdfs::path>& lowers,
                                    absl::string_view path) {
  absl::StatusOr<std::optional<stdfs::path>> found = FindInLowers(lowers, path);
  if (!found.ok()) return found.status();
  return found->has_value();
}

// The extended attributes of `path` (not followed) except trusted.overlay.*,
// sorted by name.
std::map<std::string, std::string> XattrsOf(const stdfs::path& path) {
  std::map<std::string, std::string> out;
  std::string names(llistxattr(path.c_str(), nullptr, 0) > 0 ? 65536 : 0, '\0');
  const ssize_t size = names.empty() ? 0 : llistxattr(path.c_str(), names.data(), names.size());
  for (ssize_t i = 0; i < size;) {
    const std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (absl::StartsWith(name, "trusted.overlay.")) continue;
    std::string value(65536, '\0');
    const ssize_t n = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    value.resize(n < 0 ? 0 : static_cast<size_t>(n));
    out.emplace(name, std::move(value));
  }
  return out;
}

// Removes from `upper` the directories that overlayfs copied up only to hold
// something that is gone again (a mount stub): empty in the upper dir, not
// opaque, and the same as the directory they cover below in type, mode,
// owner, mtime and xattrs. BuildKit's overlay differ skips such directories;
// without this a step that only ran would make a layer. `rel` is the
// root-relative path of `dir` ("" for the upper dir itself).
absl::Status PruneCopiedUpDirs(const stdfs::path& dir, const std::string& rel,
                               const std::vector<stdfs::path>& lowers) {
  absl::StatusOr<UniqueFd> fd = OpenDirectory(dir);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(fd->get(), dir.native());
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const stdfs::path child = dir / name;
    struct stat st {};
    if (lstat(child.c_str(), &st) != 0) return PathError(child.native(), "lstat", errno);
    if (!S_ISDIR(st.st_mode)) continue;
    const std::string child_rel = absl::StrCat(rel, "/", name);
    absl::Status pruned = PruneCopiedUpDirs(child, child_rel, lowers);
    if (!pruned.ok()) return pruned;
    if (!stdfs::is_empty(child)) continue;
    char value[2];
    if (lgetxattr(child.c_str(), kOpaqueXattr, value, 2) == 1 && value[0] == 'y') continue;
    absl::StatusOr<std::optional<stdfs::path>> below = FindInLowers(lowers, child_rel);
    if (!below.ok()) return below.status();
    if (!below->has_value()) continue;
    struct stat lower {};
    if (lstat((*below)->c_str(), &lower) != 0) continue;
    if (!S_ISDIR(lower.st_mode) || lower.st_mode != st.st_mode || lower.st_uid != st.st_uid ||
        lower.st_gid != st.st_gid || lower.st_mtim.tv_sec != st.st_mtim.tv_sec ||
        lower.st_mtim.tv_nsec != st.st_mtim.tv_nsec || XattrsOf(**below) != XattrsOf(child)) {
      continue;
    }
    if (rmdir(child.c_str()) != 0) return PathError(child.native(), "rmdir", errno);
  }
  return absl::OkStatus();
}

absl::Status MakeFreshDir(const stdfs::path& dir) {
  std::error_code error;
  stdfs::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat("\"", dir.native(), "\": ", error.message()));
  if (!stdfs::is_empty(dir, error) || error) {
    return absl::FailedPreconditionError(absl::StrCat("\"", dir.native(), "\": not empty"));
  }
  if (chmod(dir.c_str(), 0755) != 0) return PathError(dir.native(), "chmod", errno);
  return absl::OkStatus();
}

// Beside the snapshots directory: the boot id of the boot under which
// snapshots were last written (see "Durability" in snapshots.h).
constexpr absl::string_view kBootFile = "snapshots-boot-id";

// The first bytes (a boot id's worth) of the file at `path`.
absl::StatusOr<std::string> ReadSmallFile(const stdfs::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return PathError(path.native(), "open", errno);
  char buffer[64];
  const ssize_t n = read(fd.get(), buffer, sizeof buffer);
  if (n < 0) return PathError(path.native(), "read", errno);
  return std::string(buffer, static_cast<size_t>(n));
}

// This boot's id, which the kernel makes anew at every boot.
absl::StatusOr<std::string> CurrentBootId() {
  absl::StatusOr<std::string> id = ReadSmallFile("/proc/sys/kernel/random/boot_id");
  if (!id.ok()) return id.status();
  while (!id->empty() && id->back() == '\n') id->pop_back();
  if (id->empty()) return absl::InternalError("/proc/sys/kernel/random/boot_id is empty");
  return id;
}

// Records `boot_id` at `path` durably (written beside it, synced, renamed,
// the directory synced): it must be on disk before any snapshot it covers.
absl::Status RecordBootId(const stdfs::path& path, const std::string& boot_id) {
  const std::string temp = absl::StrCat(path.native(), ".tmp");
  {
    UniqueFd fd(open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return PathError(temp, "create", errno);
    if (write(fd.get(), boot_id.data(), boot_id.size()) != static_cast<ssize_t>(boot_id.size()) ||
        fsync(fd.get()) != 0) {
      return PathError(temp, "write", errno);
    }
  }
  if (rename(temp.c_str(), path.c_str()) != 0) return PathError(path.native(), "rename", errno);
  absl::StatusOr<UniqueFd> parent = OpenDirectory(path.parent_path());
  if (!parent.ok()) return parent.status();
  if (fsync(parent->get()) != 0) return PathError(path.parent_path().native(), "fsync", errno);
  return absl::OkStatus();
}

}  // namespace

std::vector<digest::Digest> ChainIds(absl::Span<const digest::Digest> diff_ids) {
  std::vector<digest::Digest> chain;
  chain.reserve(diff_ids.size());
  for (const digest::Digest& diff_id : diff_ids) {
    if (chain.empty()) {
      chain.push_back(diff_id);
    } else {
      chain.push_back(
          digest::Sha256Of(absl::StrCat(chain.back().ToString(), " ", diff_id.ToString())));
    }
  }
  return chain;
}

absl::Status CopyLayerOnto(const stdfs::path& layer_dir, const stdfs::path& target_dir) {
  absl::StatusOr<UniqueFd> src = OpenDirectory(layer_dir);
  if (!src.ok()) return src.status();
  absl::StatusOr<UniqueFd> dst = OpenDirectory(target_dir);
  if (!dst.ok()) return dst.status();
  LayerCopier copier(dst->get());
  return copier.CopyDir(src->get(), dst->get(), "");
}

Rootfs::~Rootfs() {
  if (mounted_ && umount2(root_.c_str(), 0) != 0) umount2(root_.c_str(), MNT_DETACH);
}

absl::Status Rootfs::Finish() {
  if (mode_ != RootfsMode::kOverlay || finished_) return absl::OkStatus();
  if (mounted_) {
    // A sandbox another stage starts meanwhile gets a copy of this mount in
    // its mount namespace; when that copy is still busy, a plain unmount
    // fails with EBUSY. Detaching it from this namespace is all this step
    // needs: the upper dir is read directly afterwards.
    if (umount2(root_.c_str(), 0) != 0 &&
        (errno != EBUSY || umount2(root_.c_str(), MNT_DETACH) != 0)) {
      return PathError(root_.native(), "umount", errno);
    }
    mounted_ = false;
  }
  finished_ = true;
  return PruneCopiedUpDirs(upper_, "", lowers_);
}

absl::StatusOr<bool> Rootfs::Unchanged() const {
  if (mode_ == RootfsMode::kOverlay) return oci::UpperIsEmpty(upper_);
  return oci::CopyUnchanged(lower_copy_, root_);
}

absl::StatusOr<oci::LayerDigests> Rootfs::WriteLayer(const oci::ByteSink& tar_sink,
                                                     const oci::ByteSink& blob_sink,
                                                     const oci::DiffOptions& options) const {
  if (mode_ == RootfsMode::kCopy) {
    return oci::WriteLayerFromCopy(lower_copy_, root_, tar_sink, blob_sink, options);
  }
  const std::vector<stdfs::path>& lowers = lowers_;
  return oci::WriteLayerFromUpper(
      upper_, [&lowers](absl::string_view path) { return ExistsInLowers(lowers, path); }, tar_sink,
      blob_sink, options);
}

absl::StatusOr<std::unique_ptr<Snapshots>> Snapshots::Open(const stdfs::path& data_dir) {
  const stdfs::path dir = data_dir / "snapshots";
  std::error_code error;
  stdfs::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat("\"", dir.native(), "\": ", error.message()));
  absl::StatusOr<UniqueFd> fd = OpenDirectory(dir);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(fd->get(), dir.native());
  if (!names.ok()) return names.status();
  absl::StatusOr<std::string> boot_id = CurrentBootId();
  if (!boot_id.ok()) return boot_id.status();
  const stdfs::path boot_file = data_dir / std::string(kBootFile);
  // Written in another boot (or before snapshots were dated by boot): they
  // may have lost data the machine never wrote out, so none is trusted.
  const bool stale = ReadSmallFile(boot_file).value_or("") != *boot_id;
  size_t discarded = 0;
  for (const std::string& name : *names) {
    std::string doomed = name;
    if (!absl::StartsWith(name, kTempPrefix)) {
      if (!stale) continue;
      // Out of the way first, so that no one finds it half removed; another
      // process opening the store at the same time may have taken it.
      doomed = absl::StrCat(kTempPrefix, "stale-", name);
      if (renameat(fd->get(), name.c_str(), fd->get(), doomed.c_str()) != 0) {
        if (errno == ENOENT) continue;
        return PathError((dir / name).native(), "rename", errno);
      }
      ++discarded;
    }
    absl::Status removed = fs::RemoveAllAt(fd->get(), doomed, (dir / doomed).native());
    if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  }
  if (stale) {
    if (absl::Status recorded = RecordBootId(boot_file, *boot_id); !recorded.ok()) return recorded;
  }
  return std::unique_ptr<Snapshots>(new Snapshots(dir, discarded));
}

absl::StatusOr<std::vector<Snapshot>> Snapshots::Ensure(absl::Span<const LayerSource> chain,
                                                        const UnpackListener& listener) {
  std::vector<digest::Digest> diff_ids;
  for (const LayerSource& layer : chain) diff_ids.push_back(layer.diff_id);
  const std::vector<digest::Digest> chain_ids = ChainIds(diff_ids);
  std::vector<Snapshot> snapshots;
  for (size_t i = 0; i < chain.size(); ++i) {
    absl::StatusOr<bool> unpacked = EnsureOne(chain_ids[i], chain[i], listener);
    if (!unpacked.ok()) return unpacked.status();
    snapshots.push_back(Snapshot{chain_ids[i], dir_ / chain_ids[i].hex(), *unpacked});
  }
  return snapshots;
}

absl::StatusOr<bool> Snapshots::EnsureOne(const digest::Digest& chain_id, const LayerSource& layer,
                                          const UnpackListener& listener) {
  const std::string& hex = chain_id.hex();
  {
    absl::MutexLock lock(&mu_);
    while (in_progress_.contains(hex)) done_.Wait(&mu_);
    in_progress_.insert(hex);
  }
  auto unpack = [&]() -> absl::StatusOr<bool> {
    const stdfs::path final_dir = dir_ / hex;
    struct stat st {};
    if (lstat(final_dir.c_str(), &st) == 0) return false;
    if (errno != ENOENT) return PathError(final_dir.native(), "lstat", errno);
    std::string temp = (dir_ / absl::StrCat(kTempPrefix, hex, ".XXXXXX")).native();
    if (mkdtemp(temp.data()) == nullptr) return PathError(temp, "mkdtemp", errno);
    auto discard = [&]() {
      const stdfs::path path(temp);
      UniqueFd parent(open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (parent.valid()) {
        fs::RemoveAllAt(parent.get(), path.filename().native(), temp).IgnoreError();
      }
    };
    auto failed = [&](const absl::Status& status) {
      discard();
      return absl::Status(status.code(), absl::StrCat("unpacking layer ", layer.diff_id.ToString(),
                                                      ": ", status.message()));
    };
    const absl::Time start = absl::Now();
    if (listener) listener({layer.diff_id});
    // The snapshot's root is the layer's "/" under its mount; mkdtemp made it 0700.
    if (chmod(temp.c_str(), 0755) != 0) return failed(PathError(temp, "chmod", errno));
    absl::StatusOr<oci::LayerReader> reader = layer.open();
    if (!reader.ok()) return failed(reader.status());
    absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(temp);
    if (!root.ok()) return failed(root.status());
    oci::ApplyOptions options;
    options.whiteouts = oci::ApplyOptions::Whiteouts::kOverlay;
    absl::StatusOr<oci::ApplyStats> applied = oci::ApplyLayer(*root, *reader, options);
    if (!applied.ok()) return failed(applied.status());
    if (rename(temp.c_str(), final_dir.c_str()) != 0) {
      const int error = errno;
      discard();
      // Another process unpacked it first; its copy is as good as ours.
      if (error == EEXIST || error == ENOTEMPTY) return false;
      return PathError(final_dir.native(), "rename", error);
    }
    if (listener) listener({layer.diff_id, true, *applied, absl::Now() - start});
    return true;
  };
  absl::StatusOr<bool> result = unpack();
  absl::MutexLock lock(&mu_);
  in_progress_.erase(hex);
  done_.SignalAll();
  return result;
}

absl::StatusOr<Snapshot> Snapshots::CommitUpper(std::unique_ptr<Rootfs> rootfs,
                                                const digest::Digest& chain_id) {
  if (rootfs->mode_ != RootfsMode::kOverlay) {
    return absl::FailedPreconditionError(
        "only an overlay root filesystem has an upper dir to keep as a snapshot");
  }
  const stdfs::path upper = rootfs->upper_;
  rootfs.reset();  // unmounts: the upper dir must not change any more
  const std::string& hex = chain_id.hex();
  const stdfs::path final_dir = dir_ / hex;
  absl::MutexLock lock(&mu_);
  while (in_progress_.contains(hex)) done_.Wait(&mu_);
  if (rename(upper.c_str(), final_dir.c_str()) != 0) {
    const int error = errno;
    if (error != EEXIST && error != ENOTEMPTY) {
      return PathError(final_dir.native(), "rename", error);
    }
    UniqueFd parent(open(upper.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (parent.valid()) {
      fs::RemoveAllAt(parent.get(), upper.filename().native(), upper.native()).IgnoreError();
    }
    return Snapshot{chain_id, final_dir, false};
  }
  return Snapshot{chain_id, final_dir, true};
}

absl::StatusOr<std::unique_ptr<Rootfs>> Snapshots::PrepareRootfs(absl::Span<const Snapshot> chain,
                                                                 const stdfs::path& scratch_dir,
                                                                 const RootfsOptions& options) {
  std::unique_ptr<Rootfs> rootfs(new Rootfs());
  rootfs->root_ = scratch_dir / "rootfs";
  absl::Status made = MakeFreshDir(rootfs->root_);
  if (!made.ok()) return made;
  std::string reason = "copy forced by the options";
  if (!options.force_copy) {
    rootfs->upper_ = scratch_dir / "upper";
    const stdfs::path work = scratch_dir / "work";
    for (const stdfs::path& dir : {rootfs->upper_, work}) {
      made = MakeFreshDir(dir);
      if (!made.ok()) return made;
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) rootfs->lowers_.push_back(it->dir);
    std::vector<std::string> lowerdirs;
    for (const stdfs::path& lower : rootfs->lowers_) lowerdirs.push_back(lower.native());
    if (lowerdirs.empty()) {
      // overlayfs needs a lower dir: FROM scratch gets an empty one.
      const stdfs::path empty = scratch_dir / "empty";
      made = MakeFreshDir(empty);
      if (!made.ok()) return made;
      lowerdirs.push_back(empty.native());
    }
    // The mount options separate lower dirs with ':' and options with ','.
    const bool unsafe_path = std::any_of(lowerdirs.begin(), lowerdirs.end(),
                                         [](const std::string& dir) {
                                           return dir.find_first_of(":,") != std::string::npos;
                                         }) ||
                             scratch_dir.native().find_first_of(":,") != std::string::npos;
    const std::string data =
        absl::StrCat("lowerdir=", absl::StrJoin(lowerdirs, ":"),
                     ",upperdir=", rootfs->upper_.native(), ",workdir=", work.native(),
                     // Whatever the kernel's defaults: the upper dir must hold
                     // whole changes (see oci::WriteLayerFromUpper), and a
                     // copy-up must not keep hardlinks to lower inodes.
                     ",redirect_dir=off,metacopy=off,index=off");
    // volatile (Linux 5.10): no sync of the whole upper file system at
    // unmount nor at each fsync in the step (see "Durability" in
    // snapshots.h); a kernel without it mounts without, which is then
    // remembered.
    auto mount_overlay = [&](bool with_volatile) {
      const std::string options = with_volatile ? absl::StrCat(data, ",volatile") : data;
      return mount("overlay", rootfs->root_.c_str(), "overlay", 0, options.c_str()) == 0;
    };
    auto mount_step_overlay = [&] {
      if (!mount_volatile_.load()) return mount_overlay(false);
      if (mount_overlay(true)) return true;
      if (errno != EINVAL || !mount_overlay(false)) return false;
      mount_volatile_.store(false);
      return true;
    };
    if (!unsafe_path && mount_step_overlay()) {
      rootfs->mounted_ = true;
      // Private: no peer group ties it to the mount namespaces of sandboxes
      // started meanwhile, whose copies would otherwise keep it busy.
      mount(nullptr, rootfs->root_.c_str(), nullptr, MS_PRIVATE, nullptr);
      rootfs->mode_ = RootfsMode::kOverlay;
      rootfs->mode_reason_ =
          absl::StrCat("rootfs: overlayfs with ", chain.size(), " snapshot(s) as lower dirs");
      return rootfs;
    }
    reason = unsafe_path ? "a snapshot or scratch path holds ':' or ','"
                         : absl::StrCat("overlay mount failed: ", strerror(errno));
    rootfs->lowers_.clear();
  }
  rootfs->mode_ = RootfsMode::kCopy;
  rootfs->lower_copy_ = scratch_dir / "lower";
  made = MakeFreshDir(rootfs->lower_copy_);
  if (!made.ok()) return made;
  for (const Snapshot& snapshot : chain) {
    absl::Status copied = CopyLayerOnto(snapshot.dir, rootfs->lower_copy_);
    if (!copied.ok()) return copied;
  }
  absl::Status copied = CopyLayerOnto(rootfs->lower_copy_, rootfs->root_);
  if (!copied.ok()) return copied;
  rootfs->mode_reason_ =
      absl::StrCat("rootfs: copy of ", chain.size(), " snapshot(s) (", reason, ")");
  return rootfs;
}

}  // namespace stagefarm::snapshots

#include "worker/sandbox/run_mounts.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/digest/digest.h"
#include "common/dockerfile/dockerignore.h"
#include "worker/copy/copy.h"

namespace stagefarm::worker {
namespace {

std::string Describe(const dockerfile::Mount& mount) {
  return absl::StrCat("RUN --mount type=", dockerfile::MountTypeName(mount.type),
                      " target=", mount.target);
}

// The host path of `path` inside `root`, resolved inside it.
absl::StatusOr<std::filesystem::path> HostPath(const std::filesystem::path& root,
                                               absl::string_view path) {
  absl::StatusOr<fs::RootDir> dir = fs::RootDir::Open(root);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<fs::UniqueFd> fd = dir->OpenAt(path.empty() ? "." : path, O_PATH);
  if (!fd.ok()) return fd.status();
  std::error_code error;
  std::filesystem::path resolved =
      std::filesystem::read_symlink(absl::StrCat("/proc/self/fd/", fd->get()), error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot resolve ", path, ": ", error.message()));
  }
  return resolved;
}

// Makes `dir` (and parents) if missing; a new `dir` gets `mode`, `uid`, `gid`.
absl::Status MakeCacheDir(const std::filesystem::path& dir, mode_t mode, uid_t uid, gid_t gid) {
  std::error_code error;
  if (std::filesystem::is_directory(dir, error)) return absl::OkStatus();
  std::filesystem::create_directories(dir.parent_path(), error);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot make cache directory ", dir.string()));
  }
  if (::chown(dir.c_str(), uid, gid) != 0 || ::chmod(dir.c_str(), mode) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot set up cache directory ", dir.string()));
  }
  return absl::OkStatus();
}

// A private tmpfs at `dir` (made here) for one step's secret files: they are
// never written to a disk.
absl::StatusOr<std::string> MountSecretsTmpfs(const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir.string(), ": ", error.message()));
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0700,size=4m") != 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("mounting a tmpfs for secrets at ", dir.string()));
  }
  return dir.string();
}

absl::Status WriteSecretFile(const std::string& path, const std::string& value, uint32_t mode,
                             uint32_t uid, uint32_t gid) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, "creating the secret file");
  size_t done = 0;
  while (done < value.size()) {
    const ssize_t n = ::write(fd, value.data() + done, value.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, "writing the secret file");
    }
    done += static_cast<size_t>(n);
  }
  // Owner first: chown clears setuid/setgid bits that mode may set.
  if (::fchown(fd, uid, gid) != 0 || ::fchmod(fd, mode & 07777) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, "setting the secret file's owner and mode");
  }
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace

PreparedMounts::~PreparedMounts() {
  ReleaseSecrets();
  for (int fd : lock_fds_) ::close(fd);  // releases the flocks
}

void PreparedMounts::ReleaseSecrets() {
  if (secrets_dir_.empty()) return;
  ::umount2(secrets_dir_.c_str(), MNT_DETACH);
  ::rmdir(secrets_dir_.c_str());
  secrets_dir_.clear();
}

void PreparedMounts::TrackMountPoint(absl::string_view target) {
  std::string prefix;
  bool missing = false;
  for (absl::string_view element : absl::StrSplit(target, '/', absl::SkipEmpty())) {
    prefix = absl::StrCat(prefix, "/", element);
    if (!missing && !rootfs_->Lstat(prefix).ok()) {
      missing = true;
      const std::string parent = prefix.substr(0, prefix.rfind('/'));
      if (absl::StatusOr<struct stat> info = rootfs_->Lstat(parent); info.ok()) {
        parent_times_.push_back({parent.empty() ? "/" : parent, {info->st_atim, info->st_mtim}});
      }
    }
    if (missing) stubs_.push_back(prefix);
  }
}

absl::Status PreparedMounts::RemoveStubs() {
  ReleaseSecrets();
  if (rootfs_ == nullptr) return absl::OkStatus();
  for (auto it = stubs_.rbegin(); it != stubs_.rend(); ++it) {
    absl::StatusOr<fs::RootDir::Parent> parent = rootfs_->OpenParent(*it);
    if (!parent.ok()) continue;  // its parent is gone already
    struct stat info;
    if (::fstatat(parent->dir.get(), parent->name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    if (S_ISDIR(info.st_mode)) {
      // Only an empty stub goes: a step that wrote there keeps what it wrote.
      if (::unlinkat(parent->dir.get(), parent->name.c_str(), AT_REMOVEDIR) != 0 &&
          errno != ENOTEMPTY && errno != EEXIST) {
        return absl::ErrnoToStatus(errno, absl::StrCat("cannot remove mount stub ", *it));
      }
    } else if (S_ISREG(info.st_mode) && info.st_size == 0) {
      if (::unlinkat(parent->dir.get(), parent->name.c_str(), 0) != 0) {
        return absl::ErrnoToStatus(errno, absl::StrCat("cannot remove mount stub ", *it));
      }
    }
  }
  stubs_.clear();
  for (auto it = parent_times_.rbegin(); it != parent_times_.rend(); ++it) {
    absl::StatusOr<fs::UniqueFd> dir = rootfs_->OpenAt(it->path, O_PATH | O_NOFOLLOW);
    if (!dir.ok()) continue;  // the step removed it
    // The path of an O_PATH descriptor: utimensat cannot take it directly.
    const std::string proc = absl::StrCat("/proc/self/fd/", dir->get());
    ::utimensat(AT_FDCWD, proc.c_str(), it->times, 0);
  }
  parent_times_.clear();
  return absl::OkStatus();
}

absl::StatusOr<PreparedMounts> PrepareRunMounts(absl::Span<const dockerfile::Mount> mounts,
                                                const MountSources& sources,
                                                const std::filesystem::path& rootfs,
                                                absl::string_view workdir) {
  PreparedMounts prepared;
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(rootfs);
  if (!root.ok()) return root.status();
  prepared.rootfs_ = std::make_unique<fs::RootDir>(*std::move(root));
  int scratch_count = 0;
  auto scratch = [&](absl::string_view kind) {
    return sources.scratch / absl::StrCat(kind, "-", scratch_count++);
  };
  for (const dockerfile::Mount& mount : mounts) {
    if (mount.type == dockerfile::MountType::kSecret) {
      absl::StatusOr<dockerfile::SecretPlacement> placement = dockerfile::PlaceSecret(mount);
      if (!placement.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Describe(mount), ": ", placement.status().message()));
      }
      const std::string* value = nullptr;
      if (sources.secrets != nullptr) {
        auto it = sources.secrets->find(placement->id);
        if (it != sources.secrets->end()) value = &it->second;
      }
      if (value == nullptr) {
        if (mount.required) {
          return absl::FailedPreconditionError(
              absl::StrCat("secret ", placement->id, ": not provided (stagefarm build --secret id=",
                           placement->id, ",src=FILE or ,env=VARIABLE)"));
        }
        continue;  // BuildKit skips a secret it was not given unless required
      }
      if (mount.env) prepared.secret_env_.push_back(absl::StrCat(*mount.env, "=", *value));
      if (!placement->file) continue;
      if (prepared.secrets_dir_.empty()) {
        absl::StatusOr<std::string> dir = MountSecretsTmpfs(scratch("secrets"));
        if (!dir.ok()) return dir.status();
        prepared.secrets_dir_ = *std::move(dir);
      }
      const std::string file = absl::StrCat(prepared.secrets_dir_, "/", scratch_count++);
      absl::Status written = WriteSecretFile(file, *value, mount.mode.value_or(0400),
                                             mount.uid.value_or(0), mount.gid.value_or(0));
      if (!written.ok()) {
        return absl::Status(written.code(), absl::StrCat(Describe(mount), ": ", written.message()));
      }
      const std::string secret_target = dockerfile::CleanPath(
          absl::StartsWith(*placement->file, "/") ? *placement->file
                                                  : absl::StrCat(workdir, "/", *placement->file));
      prepared.TrackMountPoint(secret_target);
      prepared.mounts_.push_back(
          SandboxMount{.destination = secret_target,
                       .type = "bind",
                       .source = file,
                       .options = {"bind", "ro", "nosuid", "nodev", "noexec"}});
      continue;
    }
    const std::string target = dockerfile::CleanPath(
        absl::StartsWith(mount.target, "/") ? mount.target
                                            : absl::StrCat(workdir, "/", mount.target));
    if (target == "/") {
      return absl::InvalidArgumentError(absl::StrCat(Describe(mount), ": cannot mount over /"));
    }
    prepared.TrackMountPoint(target);  // and the parents the mount will make
    SandboxMount out{.destination = target, .type = "", .source = "", .options = {}};
    switch (mount.type) {
      case dockerfile::MountType::kBind: {
        if (!sources.root_of) {
          return absl::FailedPreconditionError(absl::StrCat(Describe(mount), ": no sources"));
        }
        absl::StatusOr<std::filesystem::path> from = sources.root_of(mount.from);
        if (!from.ok()) return from.status();
        const std::string source = dockerfile::CleanPath(absl::StrCat("/", mount.source));
        absl::StatusOr<std::filesystem::path> host = HostPath(*from, source);
        if (!host.ok()) {
          // Symlinks are followed inside the source root: one pointing out of
          // it is not found, like any missing path.
          return absl::Status(
              host.status().code(),
              absl::StrCat(
                  Describe(mount), ": source ", source, ": ",
                  absl::IsNotFound(host.status()) ? "not found" : host.status().message()));
        }
        if (!mount.read_only) {
          // Writes through an rw bind are discarded: the step gets a copy.
          const std::filesystem::path copy = scratch("rw-bind");
          std::filesystem::create_directories(copy);
          absl::StatusOr<fs::RootDir> source_root = fs::RootDir::Open(*from);
          absl::StatusOr<fs::RootDir> copy_root = fs::RootDir::Open(copy);
          if (!source_root.ok() || !copy_root.ok()) {
            return !source_root.ok() ? source_root.status() : copy_root.status();
          }
          CopyOptions keep{
              .owner = std::nullopt, .reset_owner = false, .mode = std::nullopt, .excludes = {}};
          absl::StatusOr<CopyStats> copied = CopyInto(
              *source_root, {source == "/" ? std::string("/") : source}, *copy_root, "/copy", keep);
          if (!copied.ok()) return copied.status();
          *host = copy / "copy";
        }
        out.type = "bind";
        out.source = host->string();
        out.options = {"rbind", mount.read_only ? "ro" : "rw"};
        break;
      }
      case dockerfile::MountType::kCache: {
        const std::string id = mount.id.empty() ? target : mount.id;
        const std::string key = digest::Sha256Of(id).hex();
        std::filesystem::path dir = sources.cache_root / key;
        const mode_t mode = mount.mode.value_or(0755);
        const uid_t uid = mount.uid.value_or(0);
        const gid_t gid = mount.gid.value_or(0);
        if (absl::Status status = MakeCacheDir(dir, mode, uid, gid); !status.ok()) return status;
        const std::filesystem::path lock_path = sources.cache_root / (key + ".lock");
        int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0) {
          return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", lock_path.string()));
        }
        const dockerfile::MountSharing sharing =
            mount.sharing.value_or(dockerfile::MountSharing::kShared);
        int taken = 0;
        switch (sharing) {
          case dockerfile::MountSharing::kShared:
            taken = ::flock(lock, LOCK_SH);
            break;
          case dockerfile::MountSharing::kLocked:
            taken = ::flock(lock, LOCK_EX);
            break;
          case dockerfile::MountSharing::kPrivate:
            taken = ::flock(lock, LOCK_EX | LOCK_NB);
            if (taken != 0 && errno == EWOULDBLOCK) {
              // In use: this step gets a fresh instance of its own.
              ::close(lock);
              lock = -1;
              taken = 0;
              dir = scratch("private-cache");
              if (absl::Status status = MakeCacheDir(dir, mode, uid, gid); !status.ok()) {
                return status;
              }
            }
            break;
        }
        if (taken != 0) {
          const int error = errno;
          if (lock >= 0) ::close(lock);
          return absl::ErrnoToStatus(error, absl::StrCat(Describe(mount), ": cannot lock cache"));
        }
        if (lock >= 0) prepared.lock_fds_.push_back(lock);
        out.type = "bind";
        out.source = dir.string();
        out.options = {"rbind", mount.read_only ? "ro" : "rw"};
        break;
      }
      case dockerfile::MountType::kTmpfs:
        out.type = "tmpfs";
        out.source = "tmpfs";
        out.options = {"nosuid", "nodev"};
        if (mount.size_limit > 0) out.options.push_back(absl::StrCat("size=", mount.size_limit));
        break;
      case dockerfile::MountType::kSecret:  // placed above
        break;
      case dockerfile::MountType::kSsh:
        return absl::UnimplementedError(
            absl::StrCat(Describe(mount), ": ssh mounts are not supported"));
    }
    prepared.mounts_.push_back(std::move(out));
  }
  return prepared;
}

}  // namespace stagefarm::worker

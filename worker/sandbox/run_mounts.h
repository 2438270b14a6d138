// RUN --mount: turning the Dockerfile's mount specs into sandbox mounts, and
// leaving no trace of them in the root filesystem afterwards.
//
//  - bind: a file or directory of the build context or of another stage or
//    image (`from`), resolved inside that root; read-only unless `rw`, and
//    then the step writes to a scratch copy, so its writes are discarded.
//  - cache: a directory of this worker, `<cache root>/<id>` (the id defaults
//    to the target), kept across steps and builds. sharing=shared lets steps
//    use it at once; locked makes them take turns (flock); private gives a
//    step a fresh directory when another holds the cache. uid, gid and mode
//    apply when the directory is made.
//  - tmpfs: an empty tmpfs, `size` bytes when given.
//  - secret: the value of the build's --secret of that id, as a read-only
//    file (mode 0400 unless `mode`, owned by `uid`:`gid`) at the target
//    (default /run/secrets/<id>), and/or in the `env` variable. The file
//    lives on a tmpfs of its own, mounted for the step and unmounted after
//    it, so the value never touches the disk or the layer. A secret the build
//    was not given is an error when `required`, else the mount is skipped,
//    as BuildKit does.
//  - ssh is not supported (Unimplemented).
//
// A mount point that did not exist in the root filesystem is made for the
// mount (runc makes it) and removed again after the step, with any parent
// directory made for it, as BuildKit's mount stub cleaner does: only what the
// command itself wrote stays.
#ifndef STAGEFARM_WORKER_SANDBOX_RUN_MOUNTS_H_
#define STAGEFARM_WORKER_SANDBOX_RUN_MOUNTS_H_

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/dockerfile/run_flags.h"
#include "common/fs/root.h"
#include "worker/sandbox/sandbox.h"

namespace stagefarm::worker {

struct MountSources {
  // The directory a bind mount's `from` names: "" is the build context,
  // otherwise a stage's or image's root filesystem.
  std::function<absl::StatusOr<std::filesystem::path>(absl::string_view from)> root_of;
  // Where cache mounts live (`<data-dir>/cache-mounts`).
  std::filesystem::path cache_root;
  // Scratch space for this step (rw bind copies, private cache instances).
  std::filesystem::path scratch;
  // The build's --secret values by id; null: none given.
  const std::map<std::string, std::string>* secrets = nullptr;
};

// The mounts of one step, ready for SandboxSpec::mounts. Holds cache locks
// until destroyed.
class PreparedMounts {
 public:
  ~PreparedMounts();
  PreparedMounts(PreparedMounts&&) = default;
  PreparedMounts& operator=(PreparedMounts&&) = default;

  const std::vector<SandboxMount>& mounts() const { return mounts_; }
  // "NAME=value" for each secret mount with env=NAME.
  const std::vector<std::string>& secret_env() const { return secret_env_; }

  // Records that the sandbox also mounts over `target` (an absolute path in
  // the root filesystem, such as /etc/hosts), so its stub is removed too.
  void TrackMountPoint(absl::string_view target);

  // Removes the mount points (and parents) that were made for the mounts and
  // are still empty, and gives the existing directory above each its times
  // back, as BuildKit's stub cleaner does: a step that only ran leaves
  // nothing that differs; also unmounts the secrets' tmpfs. Call after the
  // step, before its changes are diffed.
  absl::Status RemoveStubs();

 private:
  friend absl::StatusOr<PreparedMounts> PrepareRunMounts(absl::Span<const dockerfile::Mount>,
                                                         const MountSources&,
                                                         const std::filesystem::path&,
                                                         absl::string_view);
  PreparedMounts() = default;

  // Unmounts and removes the secrets' tmpfs, if mounted.
  void ReleaseSecrets();

  std::vector<SandboxMount> mounts_;
  std::vector<std::string> secret_env_;
  std::string secrets_dir_;  // the tmpfs holding secret files; empty when none
  std::vector<int> lock_fds_;
  std::unique_ptr<fs::RootDir> rootfs_;
  // Root-relative paths that did not exist before the step, deepest last.
  std::vector<std::string> stubs_;
  // The existing directory above the first missing element of each tracked
  // mount point, with its atime and mtime before the step.
  struct ParentTimes {
    std::string path;
    struct timespec times[2];
  };
  std::vector<ParentTimes> parent_times_;
};

// Prepares `mounts` for a step running in `rootfs` with working directory
// `workdir` (relative targets are joined to it). Errors name the mount's
// target and the offending value.
absl::StatusOr<PreparedMounts> PrepareRunMounts(absl::Span<const dockerfile::Mount> mounts,
                                                const MountSources& sources,
                                                const std::filesystem::path& rootfs,
                                                absl::string_view workdir);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_SANDBOX_RUN_MOUNTS_H_

// Running a build step's process in a sandbox: an OCI runtime bundle (a root
// filesystem and the config.json of the OCI runtime spec) run by `runc`.
//
// The spec gives the process what Docker gives a container: its own mount,
// PID, IPC and UTS namespaces; /proc, /dev (tmpfs with runc's default
// devices), /dev/pts, /dev/shm, /dev/mqueue, /sys read-only; /etc/resolv.conf
// and /etc/hosts bound read-only; Docker's default capability set and its
// masked and read-only /proc paths. The network is the host's by default;
// NetworkMode::kNone gives a fresh namespace with only loopback. cgroups are
// v1 through cgroupfs (runc's default; this machine's hybrid layout breaks
// crun).
#ifndef STAGEFARM_WORKER_SANDBOX_SANDBOX_H_
#define STAGEFARM_WORKER_SANDBOX_SANDBOX_H_

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stagefarm::worker {

struct SandboxMount {
  std::string destination;  // absolute, inside the container
  std::string type;         // "bind", "tmpfs", ...
  std::string source;       // host path for binds
  std::vector<std::string> options;
};

enum class NetworkMode { kHost, kNone };

struct SandboxSpec {
  std::filesystem::path rootfs;  // absolute; used with its symlinks resolved
  std::vector<std::string> args;
  std::vector<std::string> env;  // KEY=VALUE, in order
  std::string cwd = "/";
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;
  std::vector<SandboxMount> mounts;  // after the standard ones, in order
  NetworkMode network = NetworkMode::kHost;
  std::string hostname = "stagefarm";
  // Host files bound read-only at /etc/resolv.conf and /etc/hosts; empty
  // leaves the root filesystem's own.
  std::filesystem::path resolv_conf = "/etc/resolv.conf";
  std::filesystem::path hosts;
};

// The config.json of an OCI runtime bundle for `spec` (runtime spec 1.0).
std::string RuntimeSpecJson(const SandboxSpec& spec, absl::string_view cgroups_path);

// Docker's default capability set (CapEff 0x00000000a80425fb).
const std::vector<std::string>& DefaultCapabilities();

// How often a run looks at SandboxOptions::cancelled.
inline constexpr absl::Duration kCancelPoll = absl::Milliseconds(100);

struct SandboxOptions {
  std::string runc = "runc";
  // runc's state directory (--root).
  std::filesystem::path state_dir = "/run/stagefarm/runc";
  // Scratch directory for the bundle; removed afterwards.
  std::filesystem::path bundle_dir;
  // Called with each piece of the process's combined stdout and stderr.
  std::function<void(absl::string_view)> on_output;
  // How much of the end of the output RunResult keeps.
  size_t tail_bytes = 4096;
  // When set and it becomes true, the container is killed (SIGKILL to all
  // its processes, within about kCancelPoll) and the run is Cancelled.
  const std::atomic<bool>* cancelled = nullptr;
};

struct RunResult {
  int exit_code = 0;        // the process's, or 128 + signal
  std::string output_tail;  // the last tail_bytes of stdout and stderr
};

// Runs `spec` to completion with `runc run` (stdin is /dev/null). A non-zero
// exit of the process is a RunResult, not an error; errors are for a sandbox
// that could not be made or started, with runc's own message, and Cancelled
// for one that options.cancelled stopped.
absl::StatusOr<RunResult> RunSandboxed(const SandboxSpec& spec, const SandboxOptions& options);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_SANDBOX_SANDBOX_H_

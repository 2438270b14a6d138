#include "worker/sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace stagefarm::worker {
namespace {

using nlohmann::json;

// Docker's default masked and read-only /proc and /sys paths (moby
// oci/defaults.go), so a build step sees what a `docker run` would.
const std::vector<std::string>& MaskedPaths() {
  static const auto* paths = new std::vector<std::string>{"/proc/asound",
                                                          "/proc/acpi",
                                                          "/proc/kcore",
                                                          "/proc/keys",
                                                          "/proc/latency_stats",
                                                          "/proc/timer_list",
                                                          "/proc/timer_stats",
                                                          "/proc/sched_debug",
                                                          "/proc/scsi",
                                                          "/sys/firmware",
                                                          "/sys/devices/virtual/powercap"};
  return *paths;
}
const std::vector<std::string>& ReadonlyPaths() {
  static const auto* paths = new std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq",
                                                          "/proc/sys", "/proc/sysrq-trigger"};
  return *paths;
}

json Mount(absl::string_view destination, absl::string_view type, absl::string_view source,
           std::vector<std::string> options) {
  return json{{"destination", destination},
              {"type", type},
              {"source", source},
              {"options", std::move(options)}};
}

std::string RandomId() {
  std::random_device random;
  std::string raw(8, '\0');
  for (char& c : raw) c = static_cast<char>(random());
  return absl::StrCat("stagefarm-", absl::BytesToHexString(raw));
}

// Runs a command to completion, discarding its output; for cleanup.
void RunQuietly(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  if (posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
  }
  posix_spawn_file_actions_destroy(&actions);
}

// The last error runc logged (--log-format json), or "".
std::string RuncError(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::string line;
  std::string error;
  while (std::getline(in, line)) {
    json entry = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (entry.is_object() && entry.value("level", "") == "error") {
      error = entry.value("msg", line);
    }
  }
  return error;
}

}  // namespace

const std::vector<std::string>& DefaultCapabilities() {
  static const auto* capabilities = new std::vector<std::string>{
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return *capabilities;
}

std::string RuntimeSpecJson(const SandboxSpec& spec, absl::string_view cgroups_path) {
  json mounts = json::array({
      Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      Mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
      Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
  });
  if (!spec.resolv_conf.empty()) {
    mounts.push_back(Mount("/etc/resolv.conf", "bind", spec.resolv_conf.string(), {"rbind", "ro"}));
  }
  if (!spec.hosts.empty()) {
    mounts.push_back(Mount("/etc/hosts", "bind", spec.hosts.string(), {"rbind", "ro"}));
  }
  for (const SandboxMount& mount : spec.mounts) {
    mounts.push_back(Mount(mount.destination, mount.type, mount.source, mount.options));
  }
  json namespaces =
      json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
  if (spec.network == NetworkMode::kNone) namespaces.push_back({{"type", "network"}});
  const std::vector<std::string>& caps = DefaultCapabilities();
  json config = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", spec.uid}, {"gid", spec.gid}, {"additionalGids", spec.additional_gids}}},
        {"args", spec.args},
        {"env", spec.env},
        {"cwd", spec.cwd},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        // containerd's default spec, which BuildKit's executor starts from.
        {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
        {"noNewPrivileges", false}}},
      {"root", {{"path", spec.rootfs.string()}, {"readonly", false}}},
      {"hostname", spec.hostname},
      {"mounts", mounts},
      {"linux",
       {{"namespaces", namespaces},
        {"cgroupsPath", cgroups_path},
        {"resources", {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}}},
        {"maskedPaths", MaskedPaths()},
        {"readonlyPaths", ReadonlyPaths()}}},
  };
  return config.dump(2);
}

absl::StatusOr<RunResult> RunSandboxed(const SandboxSpec& spec, const SandboxOptions& options) {
  if (!spec.rootfs.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox root filesystem must be an absolute path: ", spec.rootfs.string()));
  }
  if (spec.args.empty()) return absl::InvalidArgumentError("sandbox process has no arguments");
  // runc refuses a root whose path is not canonical ("invalid rootfs: not an
  // absolute path, or a symlink"), and a data dir reached through a symlink
  // (a linked STAGEFARM_HOME, /var/lib on another disk) gives one.
  std::error_code error;
  SandboxSpec resolved = spec;
  resolved.rootfs = std::filesystem::canonical(spec.rootfs, error);
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox root filesystem ", spec.rootfs.string(), ": ", error.message()));
  }
  std::filesystem::create_directories(options.bundle_dir, error);
  std::filesystem::create_directories(options.state_dir, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", options.state_dir.string(), ": ", error.message()));
  }
  const std::string id = RandomId();
  {
    std::ofstream config(options.bundle_dir / "config.json");
    config << RuntimeSpecJson(resolved, absl::StrCat("/stagefarm/", id));
    if (!config) {
      return absl::UnavailableError(
          absl::StrCat("cannot write ", (options.bundle_dir / "config.json").string()));
    }
  }
  const std::filesystem::path log = options.bundle_dir / "runc.log";
  std::vector<std::string> args = {options.runc,
                                   "--root",
                                   options.state_dir.string(),
                                   "--log",
                                   log.string(),
                                   "--log-format",
                                   "json",
                                   "run",
                                   "--bundle",
                                   options.bundle_dir.string(),
                                   id};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int output[2];
  if (pipe2(output, O_CLOEXEC) != 0) {
    return absl::UnavailableError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, output[1], 1);
  posix_spawn_file_actions_adddup2(&actions, output[1], 2);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(output[1]);
  if (spawned != 0) {
    ::close(output[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", options.runc, ": ", std::strerror(spawned)));
  }
  RunResult result;
  char buffer[65536];
  bool cancelled = false;
  while (true) {
    if (options.cancelled != nullptr) {
      // The output is read as it comes; between pieces, at least every
      // kCancelPoll, the flag is looked at. A kill before runc has created
      // the container fails, and is tried again at the next look.
      if (options.cancelled->load()) {
        cancelled = true;
        // SIGKILL to the container's init: its PID namespace ends with it.
        RunQuietly({options.runc, "--root", options.state_dir.string(), "kill", id, "KILL"});
      }
      struct pollfd readable = {output[0], POLLIN, 0};
      const int ready =
          ::poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(kCancelPoll)));
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
    }
    ssize_t n = ::read(output[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    absl::string_view piece(buffer, static_cast<size_t>(n));
    if (options.on_output) options.on_output(piece);
    result.output_tail.append(piece.data(), piece.size());
    if (result.output_tail.size() > 2 * options.tail_bytes) {
      result.output_tail.erase(0, result.output_tail.size() - options.tail_bytes);
    }
  }
  ::close(output[0]);
  if (result.output_tail.size() > options.tail_bytes) {
    result.output_tail.erase(0, result.output_tail.size() - options.tail_bytes);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string runc_error = RuncError(log);
  // A foreground `runc run` deletes its container when it ends; only one
  // whose runc died first leaves its state directory. Starting another runc
  // only to be sure cost 55-125 ms a step on this 2-core machine under load.
  if (std::filesystem::exists(options.state_dir / id, error) || error) {
    RunQuietly({options.runc, "--root", options.state_dir.string(), "delete", "--force", id});
  }
  std::filesystem::remove_all(options.bundle_dir, error);
  if (cancelled) return absl::CancelledError("cancelled");
  if (!runc_error.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("runc could not run the step: ", runc_error));
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace stagefarm::worker

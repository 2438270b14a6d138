#include "worker/step/run_step.h"

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dockerfile/dockerignore.h"
#include "common/fs/root.h"
#include "worker/step/run_command.h"

namespace stagefarm::worker {
namespace {

absl::string_view NameOf(absl::string_view assignment) {
  return assignment.substr(0, assignment.find('='));
}

// The host path of what `fd` has open (the kernel's name for it, symlinks
// on the way already resolved).
absl::StatusOr<std::string> OpenedPath(int fd) {
  std::error_code error;
  std::filesystem::path path =
      std::filesystem::read_symlink(absl::StrCat("/proc/self/fd/", fd), error);
  if (error) return absl::InternalError(absl::StrCat("readlink of fd ", fd, ": ", error.message()));
  return path.string();
}

// Refuses a working directory below /proc (the directory `dir_fd`, opened
// inside `root`, so that a symlink on the way such as /p -> /proc counts). The
// sandbox mounts procfs there, where /proc/self/fd/N and /proc/self/cwd are
// magic links to whatever the process entering them has open: runc before
// 1.1.12 leaked a host directory into that process, and a cwd of
// /proc/self/fd/N gave the step the host's filesystem (CVE-2024-21626). No
// directory a WORKDIR made can be there at run time anyway. /proc itself is
// harmless and allowed.
absl::Status CheckWorkdirOutsideProc(const fs::RootDir& root, absl::string_view workdir,
                                     int dir_fd) {
  absl::StatusOr<std::string> root_path = OpenedPath(root.fd());
  if (!root_path.ok()) return root_path.status();
  absl::StatusOr<std::string> dir_path = OpenedPath(dir_fd);
  if (!dir_path.ok()) return dir_path.status();
  const std::string proc = (*root_path == "/" ? "" : *root_path) + "/proc/";
  if (absl::StartsWith(workdir, "/proc/") || absl::StartsWith(*dir_path, proc)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "working directory \"", workdir,
        "\" is inside /proc, where the step's procfs is mounted: refused (a cwd such as "
        "/proc/self/fd/N can lead out of the container, CVE-2024-21626)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> StepEnvironment(
    const std::vector<std::string>& env,
    const std::vector<std::pair<std::string, std::string>>& build_args) {
  std::vector<std::string> out = env;
  absl::flat_hash_set<std::string> names;
  for (const std::string& assignment : env) names.emplace(NameOf(assignment));
  for (const auto& [name, value] : build_args) {
    if (names.insert(name).second) out.push_back(absl::StrCat(name, "=", value));
  }
  if (!names.contains("PATH")) out.push_back(absl::StrCat("PATH=", kDefaultPath));
  return out;
}

absl::StatusOr<RunResult> RunStep(const RunStepInput& input, const RunStepOptions& options) {
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(input.rootfs);
  if (!root.ok()) return root.status();
  absl::StatusOr<ExecUser> user = ResolveExecUser(*root, input.user);
  if (!user.ok()) return user.status();
  absl::StatusOr<RunCommand> command =
      BuildRunCommand(input.command, input.shell.empty() ? DefaultShell() : input.shell);
  if (!command.ok()) return command.status();
  const std::string workdir = dockerfile::CleanPath(absl::StrCat("/", input.workdir));
  // The working directory exists (WORKDIR made it, or the image has it);
  // runc would make it otherwise, owned by root.
  absl::StatusOr<fs::UniqueFd> workdir_fd = root->MkdirAll(workdir, 0755);
  if (!workdir_fd.ok()) return workdir_fd.status();
  if (absl::Status status = CheckWorkdirOutsideProc(*root, workdir, workdir_fd->get());
      !status.ok()) {
    return status;
  }

  const std::filesystem::path scratch = options.sandbox.bundle_dir.string() + "-scratch";
  std::error_code error;
  std::filesystem::create_directories(scratch, error);
  MountSources mount_sources = options.mounts;
  mount_sources.scratch = scratch / "mounts";
  mount_sources.secrets = input.secrets;
  absl::StatusOr<PreparedMounts> mounts =
      PrepareRunMounts(input.mounts, mount_sources, input.rootfs, workdir);
  if (!mounts.ok()) return mounts.status();

  SandboxSpec spec;
  spec.rootfs = input.rootfs;
  spec.args = command->args;
  spec.env = StepEnvironment(input.env, input.build_args);
  // Secrets exposed as variables: in the process's environment only, never
  // in the image's config or history.
  spec.env.insert(spec.env.end(), mounts->secret_env().begin(), mounts->secret_env().end());
  spec.cwd = workdir;
  spec.uid = user->uid;
  spec.gid = user->gid;
  spec.additional_gids = user->additional_gids;
  spec.network = input.network;
  spec.hostname = options.hostname;
  spec.hosts = scratch / "hosts";
  std::ofstream(spec.hosts) << "127.0.0.1\tlocalhost " << options.hostname
                            << "\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  spec.mounts = mounts->mounts();
  // The files the sandbox binds leave no stub either (BuildKit's stub cleaner
  // covers them too).
  mounts->TrackMountPoint("/etc/hosts");
  if (!spec.resolv_conf.empty()) mounts->TrackMountPoint("/etc/resolv.conf");
  if (command->script) {
    const std::filesystem::path pipes = scratch / "pipes";
    std::filesystem::create_directories(pipes, error);
    const std::filesystem::path script = pipes / command->script->name;
    std::ofstream(script, std::ios::binary) << command->script->content;
    ::chmod(script.c_str(), 0755);
    spec.mounts.push_back(SandboxMount{std::string(kInlineScriptDir), "bind", pipes.string(),
                                       {"rbind", "ro"}});
  }
  absl::StatusOr<RunResult> result = RunSandboxed(spec, options.sandbox);
  absl::Status stubs = mounts->RemoveStubs();
  std::filesystem::remove_all(scratch, error);
  if (!result.ok()) return result.status();
  if (!stubs.ok()) return stubs;
  if (result->exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("process \"", absl::StrJoin(command->args, " "),
                     "\" did not complete successfully: exit code: ", result->exit_code,
                     "\n", result->output_tail));
  }
  return result;
}

}  // namespace stagefarm::worker

// One RUN instruction executed in a prepared root filesystem: the process
// (run_command.h), its environment, user and working directory, its mounts
// (run_mounts.h), the sandbox (sandbox.h), and afterwards the mount stubs
// removed, so the root holds exactly the step's own changes for the layer
// diff.
#ifndef STAGEFARM_WORKER_STEP_RUN_STEP_H_
#define STAGEFARM_WORKER_STEP_RUN_STEP_H_

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dockerfile/instructions.h"
#include "worker/sandbox/run_mounts.h"
#include "worker/sandbox/sandbox.h"

namespace stagefarm::worker {

// The PATH a step gets when its image sets none (BuildKit's default).
inline constexpr absl::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct RunStepInput {
  std::filesystem::path rootfs;  // absolute; the step writes here
  dockerfile::CommandLine command;
  std::vector<dockerfile::Mount> mounts;  // expanded
  NetworkMode network = NetworkMode::kHost;
  // The stage's image config at this point.
  std::vector<std::string> env;  // KEY=VALUE
  std::string user;              // USER, "" for root
  std::string workdir = "/";
  std::vector<std::string> shell;  // SHELL; empty: DefaultShell()
  // Build arguments the step sees (name, value): in its environment, below
  // ENV of the same name, and never in the image.
  std::vector<std::pair<std::string, std::string>> build_args;
  // The build's --secret values by id (RUN --mount=type=secret); null: none.
  const std::map<std::string, std::string>* secrets = nullptr;
};

struct RunStepOptions {
  MountSources mounts;
  SandboxOptions sandbox;  // bundle_dir is used as this step's scratch
  std::string hostname = "stagefarm";
};

// Runs the step. A process that exits non-zero is FailedPrecondition naming
// the command, its exit code and the tail of its output; errors that stop
// the step from starting name what was wrong (an unknown user, a bad mount).
absl::StatusOr<RunResult> RunStep(const RunStepInput& input, const RunStepOptions& options);

// The environment of a step: `env`, then each build argument that ENV does
// not set, then PATH if neither set it.
std::vector<std::string> StepEnvironment(
    const std::vector<std::string>& env,
    const std::vector<std::pair<std::string, std::string>>& build_args);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_STEP_RUN_STEP_H_

// What a RUN instruction executes, as BuildKit's dockerfile2llb dispatch
// builds it: the process arguments (shell form through the stage's SHELL,
// heredocs included), and the user it runs as, resolved in the step's root
// filesystem as runc resolves it.
#ifndef STAGEFARM_WORKER_STEP_RUN_COMMAND_H_
#define STAGEFARM_WORKER_STEP_RUN_COMMAND_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dockerfile/instructions.h"
#include "common/fs/root.h"

namespace stagefarm::worker {

// The shell RUN uses when the stage set none.
inline const std::vector<std::string>& DefaultShell() {
  static const auto* shell = new std::vector<std::string>{"/bin/sh", "-c"};
  return *shell;
}

// Where a RUN heredoc that starts with "#!" is mounted, read-only, to be
// executed as a program (BuildKit's /dev/pipes/NAME).
inline constexpr absl::string_view kInlineScriptDir = "/dev/pipes";

struct RunCommand {
  std::vector<std::string> args;
  // A script to mount at kInlineScriptDir/name with mode 0755, when args run it.
  struct Script {
    std::string name;
    std::string content;
  };
  std::optional<Script> script;
};

// The process of `command` under `shell` (the stage's SHELL, or
// DefaultShell()). Exec form runs as written. Shell form runs as
// shell + [line]. A line that is only one heredoc runs its body through the
// shell, or, when the body starts with "#!", as a script of its own; a line
// with heredocs and more runs as the line followed by each body and its
// delimiter, through the shell. `<<-` bodies lose their leading tabs.
absl::StatusOr<RunCommand> BuildRunCommand(const dockerfile::CommandLine& command,
                                           const std::vector<std::string>& shell);

struct ExecUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> additional_gids;
};

// Resolves USER ("", "name", "uid", "name:group", "uid:gid", ...) against
// `root`'s /etc/passwd and /etc/group as runc's GetExecUser does: a name must
// exist (NotFound "unable to find user NAME"); a number need not; without an
// explicit group the gid is the user's primary group (0 for an unknown
// number) and a user found by name also gets the groups that list it. The
// primary gid is always among the additional gids (first unless listed), as
// BuildKit ensures since moby/buildkit#3651. No USER ("") is uid 0 with the
// groups of passwd's uid 0 entry, as BuildKit does since moby/buildkit#2428.
absl::StatusOr<ExecUser> ResolveExecUser(const fs::RootDir& root, absl::string_view user);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_STEP_RUN_COMMAND_H_

#include "worker/step/run_command.h"

#include <algorithm>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/parser.h"
#include "common/fs/account_files.h"

namespace stagefarm::worker {
namespace {

// A `<<-` body without the leading tabs of each line.
std::string Chomp(absl::string_view body) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!out.empty() || line.data() != body.data()) out.push_back('\n');
    while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
    out.append(line.data(), line.size());
  }
  return out;
}

std::string Body(const dockerfile::Heredoc& heredoc) {
  return heredoc.chomp ? Chomp(heredoc.content) : heredoc.content;
}

}  // namespace

absl::StatusOr<RunCommand> BuildRunCommand(const dockerfile::CommandLine& command,
                                           const std::vector<std::string>& shell) {
  RunCommand run;
  if (!command.prepend_shell) {
    if (command.args.empty()) return absl::InvalidArgumentError("RUN has an empty command");
    run.args = command.args;
    return run;
  }
  if (command.args.size() != 1) {
    return absl::InvalidArgumentError("a shell-form RUN must be one command line");
  }
  run.args = shell;
  if (command.files.empty()) {
    run.args.push_back(command.args[0]);
    return run;
  }
  absl::StatusOr<dockerfile::HeredocSpec> only = dockerfile::ParseHeredoc(command.args[0]);
  if (only.ok() && only->is_heredoc) {
    const dockerfile::Heredoc& heredoc = command.files[0];
    std::string body = Body(heredoc);
    if (absl::StartsWith(body, "#!")) {
      run.args = {absl::StrCat(kInlineScriptDir, "/", heredoc.name)};
      run.script = RunCommand::Script{heredoc.name, std::move(body)};
      return run;
    }
    run.args.push_back(std::move(body));
    return run;
  }
  std::string full = command.args[0];
  for (const dockerfile::Heredoc& heredoc : command.files) {
    absl::StrAppend(&full, "\n", heredoc.content, heredoc.name);
  }
  run.args.push_back(std::move(full));
  return run;
}

namespace {

// runc's GetExecUser: the ids and the supplementary groups of the groups
// listing the user (implicit group form only).
absl::StatusOr<ExecUser> LookUpExecUser(const fs::RootDir& root, absl::string_view spec) {
  ExecUser user;
  if (spec.empty()) return user;
  std::pair<std::string, std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 1));
  const std::string& user_arg = parts.first;
  const std::string& group_arg = parts.second;
  uint32_t number = 0;
  const bool numeric_user = absl::SimpleAtoi(user_arg, &number);
  // runc: a numeric user is always a uid; the first matching entry wins.
  std::optional<fs::PasswdEntry> matched;
  for (fs::PasswdEntry& entry : fs::ReadPasswd(root)) {
    if (numeric_user ? entry.uid == number : entry.name == user_arg) {
      matched = std::move(entry);
      break;
    }
  }
  if (matched) {
    user.uid = matched->uid;
    user.gid = matched->gid;
  } else if (numeric_user) {
    user.uid = number;
  } else {
    return absl::NotFoundError(
        absl::StrCat("unable to find user ", user_arg, ": no matching entries in passwd file"));
  }
  const std::vector<fs::GroupEntry> groups = fs::ReadGroup(root);
  if (!group_arg.empty()) {
    uint32_t gid = 0;
    const bool numeric_group = absl::SimpleAtoi(group_arg, &gid);
    for (const fs::GroupEntry& group : groups) {
      if (numeric_group ? group.gid == gid : group.name == group_arg) {
        user.gid = group.gid;
        return user;
      }
    }
    if (!numeric_group) {
      return absl::NotFoundError(absl::StrCat("unable to find group ", group_arg,
                                              ": no matching entries in group file"));
    }
    user.gid = gid;
    return user;
  }
  // Supplementary groups: only in the implicit form, for a user in passwd.
  if (matched) {
    for (const fs::GroupEntry& group : groups) {
      if (std::find(group.members.begin(), group.members.end(), matched->name) !=
          group.members.end()) {
        user.additional_gids.push_back(group.gid);
      }
    }
  }
  return user;
}

}  // namespace

absl::StatusOr<ExecUser> ResolveExecUser(const fs::RootDir& root, absl::string_view spec) {
  // No USER is uid 0 with root's groups (moby/buildkit#2428).
  absl::StatusOr<ExecUser> user = LookUpExecUser(root, spec.empty() ? "0" : spec);
  if (!user.ok()) return user;
  // containerd's ensureAdditionalGids, which BuildKit applies since
  // moby/buildkit#3651 (CVE-2023-25173): the primary gid is always one of
  // the supplementary groups, first unless it is already listed.
  std::vector<gid_t>& gids = user->additional_gids;
  if (std::find(gids.begin(), gids.end(), user->gid) == gids.end()) {
    gids.insert(gids.begin(), user->gid);
  }
  return user;
}

}  // namespace stagefarm::worker

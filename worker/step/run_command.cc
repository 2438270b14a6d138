#include "worker/step/run_command.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/parser.h"

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

// The lines of `path` inside `root` split into fields at ':'.
std::vector<std::vector<std::string>> Entries(const fs::RootDir& root, absl::string_view path) {
  std::vector<std::vector<std::string>> entries;
  absl::StatusOr<fs::UniqueFd> fd = root.OpenAt(path, O_RDONLY);
  if (!fd.ok()) return entries;
  std::string content;
  char buffer[8192];
  ssize_t n;
  while ((n = ::read(fd->get(), buffer, sizeof buffer)) > 0) content.append(buffer, n);
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    entries.push_back(absl::StrSplit(line, ':'));
  }
  return entries;
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

absl::StatusOr<ExecUser> ResolveExecUser(const fs::RootDir& root, absl::string_view spec) {
  ExecUser user;
  if (spec.empty()) return user;
  std::pair<std::string, std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 1));
  const std::string& user_arg = parts.first;
  const std::string& group_arg = parts.second;
  const bool explicit_group = !group_arg.empty();
  uint32_t number = 0;
  const bool numeric_user = absl::SimpleAtoi(user_arg, &number);
  std::string name;
  bool found = false;
  for (const std::vector<std::string>& entry : Entries(root, "/etc/passwd")) {
    if (entry.size() < 4) continue;
    uint32_t uid = 0, gid = 0;
    if (!absl::SimpleAtoi(entry[2], &uid) || !absl::SimpleAtoi(entry[3], &gid)) continue;
    if (entry[0] == user_arg || (numeric_user && uid == number)) {
      name = entry[0];
      user.uid = uid;
      user.gid = gid;
      found = true;
      break;
    }
  }
  if (!found) {
    if (!numeric_user) {
      return absl::NotFoundError(absl::StrCat("unable to find user ", user_arg,
                                              ": no matching entries in passwd file"));
    }
    user.uid = number;
  }
  std::vector<std::vector<std::string>> groups = Entries(root, "/etc/group");
  if (explicit_group) {
    uint32_t gid = 0;
    if (absl::SimpleAtoi(group_arg, &gid)) {
      user.gid = gid;
      return user;
    }
    for (const std::vector<std::string>& entry : groups) {
      if (entry.size() >= 3 && entry[0] == group_arg && absl::SimpleAtoi(entry[2], &gid)) {
        user.gid = gid;
        return user;
      }
    }
    return absl::NotFoundError(absl::StrCat("unable to find group ", group_arg,
                                            ": no matching entries in group file"));
  }
  if (found) {  // runc: any passwd match, by name or number
    for (const std::vector<std::string>& entry : groups) {
      if (entry.size() < 4) continue;
      uint32_t gid = 0;
      if (!absl::SimpleAtoi(entry[2], &gid)) continue;
      for (absl::string_view member : absl::StrSplit(entry[3], ',', absl::SkipEmpty())) {
        if (member == name) {
          user.additional_gids.push_back(gid);
          break;
        }
      }
    }
  }
  return user;
}

}  // namespace stagefarm::worker

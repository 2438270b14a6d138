#include "common/fs/account_files.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace stagefarm::fs {
namespace {

// The lines of `path` inside `root`, split into fields at ':'.
std::vector<std::vector<std::string>> Records(const RootDir& root, absl::string_view path) {
  std::vector<std::vector<std::string>> records;
  absl::StatusOr<UniqueFd> fd = root.OpenAt(path, O_RDONLY);
  if (!fd.ok()) return records;
  std::string content;
  char buffer[8192];
  ssize_t n;
  while ((n = ::read(fd->get(), buffer, sizeof buffer)) > 0) content.append(buffer, n);
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    records.push_back(absl::StrSplit(line, ':'));
  }
  return records;
}

}  // namespace

std::vector<PasswdEntry> ReadPasswd(const RootDir& root) {
  std::vector<PasswdEntry> entries;
  for (const std::vector<std::string>& fields : Records(root, "/etc/passwd")) {
    PasswdEntry entry;
    if (fields.size() < 4 || !absl::SimpleAtoi(fields[2], &entry.uid) ||
        !absl::SimpleAtoi(fields[3], &entry.gid)) {
      continue;
    }
    entry.name = fields[0];
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::vector<GroupEntry> ReadGroup(const RootDir& root) {
  std::vector<GroupEntry> entries;
  for (const std::vector<std::string>& fields : Records(root, "/etc/group")) {
    GroupEntry entry;
    if (fields.size() < 3 || !absl::SimpleAtoi(fields[2], &entry.gid)) continue;
    entry.name = fields[0];
    if (fields.size() >= 4) entry.members = absl::StrSplit(fields[3], ',', absl::SkipEmpty());
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace stagefarm::fs

// /etc/passwd and /etc/group of a root filesystem, read inside the root: how
// USER and --chown names become ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fs/root.h"

namespace stagefarm::fs {

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// The well-formed entries of `root`'s /etc/passwd and /etc/group, in file
// order (lines that are comments, short or with non-numeric ids are skipped,
// as the C library and runc skip them). A missing file has no entries.
std::vector<PasswdEntry> ReadPasswd(const RootDir& root);
std::vector<GroupEntry> ReadGroup(const RootDir& root);

}  // namespace stagefarm::fs

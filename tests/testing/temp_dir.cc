#include "tests/testing/temp_dir.h"

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace stagefarm::testing {
namespace {

namespace stdfs = std::filesystem;

// A mount point as /proc/self/mountinfo writes it, with its octal escapes
// ("\040" for a space) decoded.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// The mount points at or below `dir` in this process's mount namespace,
// deepest first.
std::vector<std::string> MountsBelow(const stdfs::path& dir) {
  const std::string root = dir.native();
  std::vector<std::string> mounts;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream fields(line);
    std::string id, parent, device, source, point;
    if (!(fields >> id >> parent >> device >> source >> point)) continue;
    point = Unescape(point);
    if (point == root || point.starts_with(root + "/")) mounts.push_back(point);
  }
  std::sort(mounts.begin(), mounts.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return mounts;
}

// Gives the owner every permission on `dir` and each directory below it
// (symlinks not followed), so that their entries can be listed and removed.
void MakeWritable(const stdfs::path& dir) {
  ::chmod(dir.c_str(), S_IRWXU);
  std::error_code error;
  for (stdfs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (it->symlink_status(error).type() == stdfs::file_type::directory) MakeWritable(it->path());
  }
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = (stdfs::temp_directory_path() / (prefix + ".XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code error;
  const stdfs::path real = stdfs::canonical(path_, error);
  if (error) return;  // already gone
  // Mounts can be stacked on one point and umount2 takes off the top one:
  // repeat while any are left, a few passes at most.
  std::vector<std::string> mounts = MountsBelow(real);
  for (int pass = 0; pass < 4 && !mounts.empty(); ++pass) {
    for (const std::string& point : mounts) {
      if (::umount2(point.c_str(), MNT_DETACH) == 0) {
        std::cerr << "TempDir: " << point << " was still mounted; detached it\n";
      }
    }
    mounts = MountsBelow(real);
  }
  if (!mounts.empty()) {  // removing would delete what is mounted there
    std::cerr << "TempDir: not removing " << real.native() << ": " << mounts.front()
              << " is still mounted\n";
    return;
  }
  if (stdfs::remove_all(real, error); !error) return;
  MakeWritable(real);
  if (stdfs::remove_all(real, error); error) {
    std::cerr << "TempDir: cannot remove " << real.native() << ": " << error.message() << "\n";
  }
}

}  // namespace stagefarm::testing

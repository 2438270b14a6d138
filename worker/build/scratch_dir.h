// Scratch directories: where a stage, an assignment or an artifact keeps its
// work (mount points, bundles, a materialised context) while it runs.
#pragma once

#include <filesystem>

#include "absl/status/status.h"

namespace stagefarm::worker {

// Removes `dir` and everything in it; an error names the directory.
absl::Status RemoveTree(const std::filesystem::path& dir);

// Owns a scratch directory: removes it with everything in it when it goes,
// unless Remove already did (whose error a caller can report). Unmount what
// was mounted inside it first. Movable, not copyable.
class ScratchDir {
 public:
  explicit ScratchDir(std::filesystem::path path) : path_(std::move(path)) {}
  ~ScratchDir();
  ScratchDir(ScratchDir&& other) noexcept;
  ScratchDir& operator=(ScratchDir&& other) noexcept;
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Removes it now.
  absl::Status Remove();

 private:
  std::filesystem::path path_;  // empty once removed or moved from
};

}  // namespace stagefarm::worker

#include "worker/build/scratch_dir.h"

#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stagefarm::worker {

absl::Status RemoveTree(const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat("removing ", dir.native(), ": ", error.message()));
  }
  return absl::OkStatus();
}

ScratchDir::~ScratchDir() { Remove().IgnoreError(); }

ScratchDir::ScratchDir(ScratchDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

ScratchDir& ScratchDir::operator=(ScratchDir&& other) noexcept {
  if (this != &other) {
    Remove().IgnoreError();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

absl::Status ScratchDir::Remove() {
  if (path_.empty()) return absl::OkStatus();
  const std::filesystem::path dir = std::exchange(path_, {});
  return RemoveTree(dir);
}

}  // namespace stagefarm::worker

#include "tests/testing/corpus.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace stagefarm::testing {

std::optional<std::filesystem::path> SharedDir() {
  const char* env = std::getenv("STAGEFARM_SHARED_DIR");
  std::filesystem::path dir = env != nullptr && *env != '\0' ? env : STAGEFARM_SHARED_DIR_DEFAULT;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return std::nullopt;
  return dir;
}

std::optional<std::filesystem::path> ConformanceDir() {
  auto shared = SharedDir();
  if (!shared) return std::nullopt;
  std::error_code ec;
  auto dir = *shared / "conformance";
  if (!std::filesystem::is_directory(dir, ec)) return std::nullopt;
  return dir;
}

std::string ReadFileOrFail(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace stagefarm::testing

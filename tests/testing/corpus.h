// Locating and reading the shared reference corpus (../shared/) from tests.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace stagefarm::testing {

// The shared directory (holding conformance/ and fidelity/): $STAGEFARM_SHARED_DIR if set,
// else the path configured at build time. nullopt when it does not exist.
std::optional<std::filesystem::path> SharedDir();

// SharedDir()/conformance, or nullopt when absent.
std::optional<std::filesystem::path> ConformanceDir();

// Whole file contents; fails the calling test (ADD_FAILURE) and returns "" on error.
std::string ReadFileOrFail(const std::filesystem::path& path);

}  // namespace stagefarm::testing

// Skips the current test, loudly, when the conformance corpus is absent.
#define STAGEFARM_REQUIRE_CONFORMANCE(dir_var)                                                \
  auto dir_var##_opt = ::stagefarm::testing::ConformanceDir();                                \
  if (!dir_var##_opt) {                                                                       \
    GTEST_SKIP() << "SKIPPED LOUDLY: conformance corpus not found (set STAGEFARM_SHARED_DIR " \
                    "or place shared/ beside the checkout)";                                  \
  }                                                                                           \
  const std::filesystem::path dir_var = *dir_var##_opt

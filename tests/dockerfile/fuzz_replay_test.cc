// Replays the fuzz corpus (fuzz/corpus/dockerfile) and every Dockerfile of the
// shared conformance corpus through the fuzz target, so a crash the fuzzer once
// found stays fixed under the normal build.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "tests/testing/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace stagefarm {
namespace {

namespace fs = std::filesystem;

int ReplayTree(const fs::path& dir, bool only_dockerfiles) {
  int replayed = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (only_dockerfiles && name.find("Dockerfile") == std::string::npos) continue;
    SCOPED_TRACE(entry.path().string());
    const std::string data = testing::ReadFileOrFail(entry.path());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    ++replayed;
  }
  return replayed;
}

TEST(FuzzReplay, CommittedCorpusRunsClean) {
  const fs::path corpus = fs::path(STAGEFARM_SOURCE_DIR) / "fuzz/corpus/dockerfile";
  EXPECT_GE(ReplayTree(corpus, /*only_dockerfiles=*/false), 8);
}

TEST(FuzzReplay, ConformanceDockerfilesRunClean) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  EXPECT_GE(ReplayTree(dir, /*only_dockerfiles=*/true), 30);
}

}  // namespace
}  // namespace stagefarm

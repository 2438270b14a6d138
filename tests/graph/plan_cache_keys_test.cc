// Plan-level cache keys over a real context directory: what must change a key
// changes it, and what must not does not.
#include "common/graph/plan_cache_keys.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::graph {
namespace {

namespace stdfs = std::filesystem;

class PlanCacheKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stdfs::create_directories(dir_ / "src");
    Write("src/main.c", "int main() { return 0; }\n");
    Write("README", "not copied\n");
  }

  void Write(const std::string& path, const std::string& content) {
    std::ofstream(dir_ / path, std::ios::binary | std::ios::trunc) << content;
  }

  // Keys of every instruction of every needed stage, flattened in stage order.
  std::vector<std::string> Keys(const std::string& dockerfile,
                                const std::vector<std::string>& build_args = {}) {
    Write("Dockerfile", dockerfile);
    auto ast = dockerfile::Parse(dockerfile);
    EXPECT_TRUE(ast.ok()) << ast.status();
    auto staged = dockerfile::ParseStages(*ast);
    EXPECT_TRUE(staged.ok()) << staged.status();
    PlanOptions options;
    options.build_args = build_args;
    options.platform = "linux/amd64";
    auto graph = BuildStageGraph(*staged, ast->directives.escape_token, options);
    EXPECT_TRUE(graph.ok()) << graph.status();
    auto context = stagefarm::fs::ContextIndex::Build(dir_, dir_ / "Dockerfile");
    EXPECT_TRUE(context.ok()) << context.status();
    auto keys = ComputePlanCacheKeys(*graph, *context, "Dockerfile");
    EXPECT_TRUE(keys.ok()) << keys.status();
    std::vector<std::string> out;
    for (const auto& stage : *keys) {
      if (!stage) continue;
      for (const auto& key : stage->instructions) out.push_back(key.ToString());
    }
    return out;
  }

  testing::TempDir temp_{"plan_cache_keys_test"};
  const stdfs::path dir_ = temp_.path();
};

constexpr char kDockerfile[] =
    "FROM busybox:1.36 AS build\n"
    "ARG OPT=-O2\n"
    "COPY src/ /src/\n"
    "RUN cc $OPT -o /out/app /src/main.c\n"
    "FROM busybox:1.36\n"
    "COPY --from=build /out/app /usr/bin/app\n"
    "USER 1000\n";

TEST_F(PlanCacheKeysTest, SameInputsGiveSameKeys) {
  const auto a = Keys(kDockerfile);
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a, Keys(kDockerfile));
}

TEST_F(PlanCacheKeysTest, ContextContentChangesTheCopyAndEverythingAfterIt) {
  const auto before = Keys(kDockerfile);
  Write("src/main.c", "int main() { return 1; }\n");
  const auto after = Keys(kDockerfile);
  EXPECT_EQ(before[0], after[0]);  // ARG
  for (size_t i = 1; i < before.size(); ++i) EXPECT_NE(before[i], after[i]) << i;
}

TEST_F(PlanCacheKeysTest, ModeCountsButMtimeDoesNot) {
  const auto before = Keys(kDockerfile);
  const std::string file = (dir_ / "src/main.c").string();
  struct timespec times[2] = {{1, 0}, {1, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  EXPECT_EQ(Keys(kDockerfile), before);
  ASSERT_EQ(chmod(file.c_str(), 0755), 0);
  EXPECT_NE(Keys(kDockerfile)[1], before[1]);
}

TEST_F(PlanCacheKeysTest, FilesTheBuildDoesNotReadDoNotCount) {
  const auto before = Keys(kDockerfile);
  Write("README", "changed\n");
  EXPECT_EQ(Keys(kDockerfile), before);
}

TEST_F(PlanCacheKeysTest, VisibleArgChangesKeysButAnUnseenOneDoesNot) {
  const auto before = Keys(kDockerfile);
  const auto visible = Keys(kDockerfile, {"OPT=-O0"});
  EXPECT_NE(visible[0], before[0]);
  EXPECT_NE(visible[2], before[2]);
  // NOT_DECLARED is no ARG of any stage: nothing can see it.
  EXPECT_EQ(Keys(kDockerfile, {"NOT_DECLARED=x"}), before);
}

TEST_F(PlanCacheKeysTest, UpstreamStageChangeReachesTheCopyFrom) {
  const auto before = Keys(kDockerfile);
  std::string changed = kDockerfile;
  changed.replace(changed.find("-o /out/app"), 11, "-o /out/app -s");
  const auto after = Keys(changed);
  EXPECT_NE(after[3], before[3]);  // COPY --from=build in the final stage
  EXPECT_NE(after[4], before[4]);
}

TEST_F(PlanCacheKeysTest, FlagsConfigInstructionsAndBaseImagesCount) {
  const auto before = Keys(kDockerfile);
  std::string with_flag = kDockerfile;
  with_flag.replace(with_flag.find("COPY src/"), 9, "COPY --chmod=0644 src/");
  EXPECT_NE(Keys(with_flag)[1], before[1]);

  std::string other_user = kDockerfile;
  other_user.replace(other_user.find("USER 1000"), 9, "USER 1001");
  const auto user_keys = Keys(other_user);
  EXPECT_EQ(user_keys[3], before[3]);
  EXPECT_NE(user_keys[4], before[4]);

  std::string other_base = kDockerfile;
  other_base.replace(other_base.find("busybox:1.36"), 12, "busybox:1.37");
  const auto base_keys = Keys(other_base);
  EXPECT_NE(base_keys[0], before[0]);
  EXPECT_NE(base_keys[4], before[4]);  // reaches the final stage through COPY --from
}

// A named local context (--build-context lib=DIR) is keyed by content like
// the main context: editing one of its files changes the keys of the
// instructions that read it and of nothing else.
TEST_F(PlanCacheKeysTest, NamedContextContentChangesOnlyTheStageThatReadsIt) {
  stdfs::create_directories(dir_ / "lib");
  Write("lib/util.h", "#define A 1\n");
  const std::string dockerfile =
      "FROM busybox:1.36 AS uses\n"
      "COPY --from=lib util.h /inc/\n"
      "FROM busybox:1.36 AS other\n"
      "COPY src/ /src/\n"
      "FROM scratch\n"
      "COPY --from=uses /inc /inc\n"
      "COPY --from=other /src /src\n";
  auto keys = [&]() {
    auto ast = dockerfile::Parse(dockerfile);
    auto staged = dockerfile::ParseStages(*ast);
    PlanOptions options;
    options.platform = "linux/amd64";
    options.named_contexts["lib"] = NamedContextSource{};
    auto graph = BuildStageGraph(*staged, ast->directives.escape_token, options);
    EXPECT_TRUE(graph.ok()) << graph.status();
    auto context = stagefarm::fs::ContextIndex::Build(dir_, dir_ / "Dockerfile");
    auto lib = stagefarm::fs::ContextIndex::Build(dir_ / "lib", "");
    EXPECT_TRUE(lib.ok()) << lib.status();
    auto computed = ComputePlanCacheKeys(*graph, *context, "Dockerfile", nullptr, {{"lib", &*lib}});
    EXPECT_TRUE(computed.ok()) << computed.status();
    return *computed;
  };
  const auto before = keys();
  Write("lib/util.h", "#define A 2\n");
  const auto after = keys();
  EXPECT_NE(before[0]->result, after[0]->result);  // reads lib/util.h
  EXPECT_EQ(before[1]->result, after[1]->result);  // reads only the main context
  EXPECT_NE(before[2]->result, after[2]->result);  // copies from the stage that reads it

  // Without its index, a read of the named context is an error, not a guess.
  auto ast = dockerfile::Parse(dockerfile);
  auto staged = dockerfile::ParseStages(*ast);
  PlanOptions options;
  options.named_contexts["lib"] = NamedContextSource{};
  auto graph = BuildStageGraph(*staged, ast->directives.escape_token, options);
  auto context = stagefarm::fs::ContextIndex::Build(dir_, dir_ / "Dockerfile");
  auto missing = ComputePlanCacheKeys(*graph, *context, "Dockerfile");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("Dockerfile:2: build context lib is not defined"),
            std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace stagefarm::graph

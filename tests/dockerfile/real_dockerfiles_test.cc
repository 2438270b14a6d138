// Every real Dockerfile of the shared corpus parses into the expected stages,
// and a few instructions per file come out as written. The expected values
// were read off the files themselves (FROM lines counted with grep, the
// instructions read at the given lines), not taken from this parser's output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "tests/testing/corpus.h"

namespace stagefarm::dockerfile {
namespace {

struct SpotCheck {
  int line;              // the instruction's first line
  std::string keyword;   // lower-case
  std::string contains;  // a substring of its logical line
};

struct RealDockerfile {
  std::string file;
  size_t stages;
  std::string first_stage;  // name of stage 0, "" if unnamed
  std::string last_stage;   // name of the last stage, "" if unnamed
  int last_from_line;
  std::vector<SpotCheck> checks;
};

const std::vector<RealDockerfile>& Cases() {
  static const std::vector<RealDockerfile> cases = {
      {"astral-sh_uv__crates_uv-trampoline_Dockerfile.Dockerfile",
       3,
       "base",
       "",
       63,
       {{20, "env", "HOME=/app"}, {67, "copy", "--from=xwin-cache"}}},
      {"containerd_containerd__.github_workflows_release_Dockerfile.Dockerfile",
       7,
       "go",
       "release",
       60,
       {{41, "from", "${TARGETOS} AS target"}, {61, "copy", "--from=target"}}},
      {"containerd_containerd__contrib_Dockerfile.test.Dockerfile",
       11,
       "golang",
       "dev",
       149,
       {{44, "run", "apt-get install -y --no-install-recommends"}, {151, "copy", ". ."}}},
      {"distribution_distribution__Dockerfile.Dockerfile",
       8,
       "xx",
       "",
       62,
       {{18, "copy", "--from=xx / /"}, {70, "cmd", "/etc/distribution/config.yml"}}},
      {"docker_buildx__Dockerfile.Dockerfile",
       33,
       "xx",
       "",
       187,
       {{32, "copy", "--from=xx / /"}, {185, "entrypoint", "entrypoint.sh"}}},
      {"docker_cli__dockerfiles_Dockerfile.dev.Dockerfile",
       6,
       "buildx",
       "dev",
       46,
       {{17, "env", "GOTOOLCHAIN=local"}, {92, "copy", "--link . ."}}},
      {"docker_compose__Dockerfile.Dockerfile",
       31,
       "xx",
       "module",
       226,
       {{37, "copy", "--from=xx / /"}, {230, "copy", "LICENSE /"}}},
      {"excalidraw_excalidraw__Dockerfile.Dockerfile",
       2,
       "build",
       "",
       16,
       {{3, "workdir", "/opt/node_app"}, {18, "copy", "--from=build"}}},
      {"moby_buildkit__frontend_dockerfile_cmd_dockerfile-frontend_Dockerfile.Dockerfile",
       6,
       "xx",
       "",
       79,
       {{11, "run", "apk add git bash"}, {77, "entrypoint", "/bin/dockerfile-frontend"}}},
      {"moby_buildkit__hack_dockerfiles_generated-files.Dockerfile",
       11,
       "base",
       "validate",
       86,
       {{12, "run", "apt-get --no-install-recommends install -y git unzip"},
        {87, "run", "--mount=type=bind,target=.,rw"}}},
      {"moby_moby__Dockerfile.windows.Dockerfile",
       1,
       "",
       "",
       159,
       {{179, "env", "GO_VERSION=${GO_VERSION}"}, {311, "copy", ". ."}}},
      {"moby_moby__cmd_dockerd_winresources_Dockerfile.Dockerfile",
       3,
       "xx",
       "",
       21,
       {{13, "copy", "--link --from=xx / /"}, {22, "copy", "--from=build /out /"}}},
      {"nginx_docker-nginx__modules_Dockerfile.Dockerfile",
       2,
       "builder",
       "",
       72,
       {{8, "run", "if [ \"$ENABLED_MODULES\" = \"\" ]; then"}, {73, "run", "from=builder"}}},
      {"vercel_next.js__examples_with-docker_Dockerfile.Dockerfile",
       4,
       "base",
       "runner",
       36,
       {{6, "run", "apk add --no-cache libc6-compat"}, {67, "cmd", "server.js"}}},
  };
  return cases;
}

TEST(RealDockerfiles, EveryFileInTheCorpusIsCovered) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "real-dockerfiles")) {
    const std::string name = entry.path().filename().string();
    bool covered = false;
    for (const RealDockerfile& c : Cases()) covered |= c.file == name;
    EXPECT_TRUE(covered) << name << " has no expectations";
    ++files;
  }
  EXPECT_EQ(files, Cases().size());
}

TEST(RealDockerfiles, ParseIntoTheExpectedStagesAndInstructions) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  for (const RealDockerfile& c : Cases()) {
    SCOPED_TRACE(c.file);
    const std::string data = testing::ReadFileOrFail(dir / "real-dockerfiles" / c.file);
    absl::StatusOr<ParseResult> ast = Parse(data, c.file);
    ASSERT_TRUE(ast.ok()) << ast.status();
    absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast, c.file);
    ASSERT_TRUE(staged.ok()) << staged.status();
    ASSERT_EQ(staged->stages.size(), c.stages);
    EXPECT_EQ(staged->stages.front().name(), c.first_stage);
    EXPECT_EQ(staged->stages.back().name(), c.last_stage);
    EXPECT_EQ(staged->stages.back().from.location.start_line, c.last_from_line);
    for (const SpotCheck& check : c.checks) {
      const Node* found = nullptr;
      for (const Node& node : ast->children) {
        if (node.start_line == check.line) found = &node;
      }
      ASSERT_NE(found, nullptr) << "no instruction starts at line " << check.line;
      EXPECT_TRUE(absl::EqualsIgnoreCase(found->keyword, check.keyword)) << found->keyword;
      EXPECT_THAT(found->original, ::testing::HasSubstr(check.contains)) << "line " << check.line;
    }
  }
}

TEST(RealDockerfiles, WindowsFileUsesTheBacktickEscape) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  absl::StatusOr<ParseResult> ast = Parse(
      testing::ReadFileOrFail(dir / "real-dockerfiles/moby_moby__Dockerfile.windows.Dockerfile"));
  ASSERT_TRUE(ast.ok()) << ast.status();
  EXPECT_EQ(ast->directives.escape_token, '`');
}

}  // namespace
}  // namespace stagefarm::dockerfile

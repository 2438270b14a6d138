#include "common/graph/stage_graph.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/dockerfile/parser.h"

namespace stagefarm::graph {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<StageGraph> Build(absl::string_view text, std::vector<std::string> build_args = {},
                                 absl::string_view target = "",
                                 absl::string_view platform = "linux/amd64") {
  auto ast = dockerfile::Parse(text);
  if (!ast.ok()) return ast.status();
  auto staged = dockerfile::ParseStages(*ast);
  if (!staged.ok()) return staged.status();
  return BuildStageGraph(*staged, ast->directives.escape_token, build_args, target, "Dockerfile",
                         platform);
}

TEST(StageGraph, FromExpandsMetaArgsAndBuildArgsOverrideDefaults) {
  const char* text = "ARG REG=docker.io\nARG IMG=${REG}/busybox\nFROM ${IMG}:1 AS a\n";
  auto g = Build(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base, "docker.io/busybox:1");
  g = Build(text, {"REG=registry.local:5000"});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base, "registry.local:5000/busybox:1");
}

TEST(StageGraph, AutomaticPlatformArgsSelectAStage) {
  const char* text =
      "FROM busybox AS linux\nFROM scratch AS windows\nFROM ${TARGETOS} AS target\n"
      "FROM --platform=$BUILDPLATFORM busybox AS tools\n";
  auto g = Build(text, {}, "target", "linux/arm/v7");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[2].base, "linux");
  EXPECT_TRUE(g->stages[2].base_is_stage);
  EXPECT_EQ(g->stages[3].platform, HostPlatform());
  EXPECT_TRUE(g->stages[0].needed);
  EXPECT_FALSE(g->stages[1].needed);
}

TEST(StageGraph, EdgesComeFromFromCopyFromAndMountFrom) {
  const char* text =
      "FROM busybox AS a\nFROM busybox AS b\n"
      "FROM a AS c\nCOPY --from=b /x /x\nCOPY --from=0 /y /y\nCOPY --from=alpine:3 /z /z\n"
      "RUN --mount=type=bind,from=B,target=/m true\n";
  auto g = Build(text);
  ASSERT_TRUE(g.ok()) << g.status();
  const auto& c = g->stages[2];
  ASSERT_EQ(c.edges.size(), 4u);
  EXPECT_EQ(c.edges[0].stage, 0);
  EXPECT_EQ(c.edges[0].kind, EdgeKind::kFrom);
  EXPECT_EQ(c.edges[1].stage, 1);
  EXPECT_EQ(c.edges[1].kind, EdgeKind::kCopyFrom);
  EXPECT_EQ(c.edges[1].line, 4);
  EXPECT_EQ(c.edges[2].stage, 0);
  EXPECT_EQ(c.edges[3].stage, 1);
  EXPECT_EQ(c.edges[3].kind, EdgeKind::kMountFrom);
  EXPECT_THAT(c.external_images, ElementsAre("alpine:3"));
}

TEST(StageGraph, StagesTheTargetDoesNotNeedAreNotNeeded) {
  const char* text = "FROM busybox AS broken\nRUN false\nFROM busybox AS ok\nFROM ok\n";
  auto g = Build(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->stages[0].needed);
  EXPECT_TRUE(g->stages[1].needed);
  EXPECT_TRUE(g->stages[2].needed);
  g = Build(text, {}, "BROKEN");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->target, 0);
}

TEST(StageGraph, DuplicateStageNamesAreAnErrorAtTheSecondFrom) {
  auto g = Build("FROM a AS x\nFROM b AS X\n");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("Dockerfile:2: duplicate stage name \"x\""));
}

TEST(StageGraph, IndexReferencesMustPointBackwards) {
  auto g = Build("FROM a\nCOPY --from=1 /x /x\nFROM b\n");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("Dockerfile:2: invalid stage index 1"));
}

TEST(StageGraph, CyclesAreReportedWithTheLineThatClosesThem) {
  auto g =
      Build("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("circular dependency detected on stage"));
}

TEST(StageGraph, UnknownTargetAndBlankBaseAreErrors) {
  auto g = Build("FROM a AS x\n", {}, "nope");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("target stage \"nope\" could not be found"));
  g = Build("ARG EMPTY\nFROM ${EMPTY}\n");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(),
              HasSubstr("Dockerfile:2: base name (${EMPTY}) should not be blank"));
}

}  // namespace
}  // namespace stagefarm::graph

#include "common/graph/stage_graph.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/dockerfile/parser.h"
#include "tests/testing/corpus.h"

namespace stagefarm::graph {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

absl::StatusOr<StageGraph> Plan(absl::string_view text, PlanOptions options = {}) {
  auto ast = dockerfile::Parse(text);
  if (!ast.ok()) return ast.status();
  auto staged = dockerfile::ParseStages(*ast);
  if (!staged.ok()) return staged.status();
  if (options.platform.empty()) options.platform = "linux/amd64";
  return BuildStageGraph(*staged, ast->directives.escape_token, options);
}

PlanOptions Args(std::vector<std::string> build_args) {
  PlanOptions options;
  options.build_args = std::move(build_args);
  return options;
}

PlanOptions Target(std::string target) {
  PlanOptions options;
  options.target = std::move(target);
  return options;
}

std::string PlanError(absl::string_view text, PlanOptions options = {}) {
  absl::StatusOr<StageGraph> g = Plan(text, std::move(options));
  if (g.ok()) return "planned without error";
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(g.status().message());
}

// The value of `name` as instruction `i` of stage `s` sees it.
std::optional<std::string> Var(const StageGraph& g, int s, int i, absl::string_view name) {
  for (const auto& [key, value] : *g.stages[s].instructions[i].env) {
    if (key == name) return value;
  }
  return std::nullopt;
}

// The ENV values a stage ends with, from its last ENV instruction's typed form.
std::string EnvValue(const StageGraph& g, int s, int i, absl::string_view key) {
  const auto& env = std::get<dockerfile::Env>(g.stages[s].instructions[i].instruction);
  for (const dockerfile::KeyValue& kv : env.vars) {
    if (kv.key == key) return kv.value;
  }
  return "<unset>";
}

std::vector<std::string> Texts(const PlannedStage& stage) {
  std::vector<std::string> texts;
  for (const PlannedInstruction& instruction : stage.instructions)
    texts.push_back(instruction.text);
  return texts;
}

// ---------------------------------------------------------------------------
// Build arguments and scoping

TEST(StageGraphArgs, MetaArgsExpandInFromAndBuildArgsOverrideDefaults) {
  const char* text = "ARG REG=docker.io\nARG IMG=${REG}/busybox\nFROM ${IMG}:1 AS a\n";
  auto g = Plan(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base_name, "docker.io/busybox:1");
  EXPECT_EQ(g->stages[0].base.image.String(), "docker.io/library/busybox:1");
  g = Plan(text, Args({"REG=registry.local:5000"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base.image.String(), "registry.local:5000/busybox:1");
}

TEST(StageGraphArgs, GlobalArgIsInvisibleInAStageUntilRedeclaredWithoutValue) {
  const char* text =
      "ARG V=global\n"
      "FROM busybox\n"
      "ENV BEFORE=$V\n"
      "ARG V\n"
      "ENV AFTER=$V\n";
  auto g = Plan(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "BEFORE"), "");
  EXPECT_EQ(EnvValue(*g, 0, 2, "AFTER"), "global");
  EXPECT_EQ(Var(*g, 0, 0, "V"), std::nullopt);
  EXPECT_EQ(Var(*g, 0, 2, "V"), "global");
  // The build arg reaches the stage through the redeclaration too.
  g = Plan(text, Args({"V=given"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "BEFORE"), "");
  EXPECT_EQ(EnvValue(*g, 0, 2, "AFTER"), "given");
}

TEST(StageGraphArgs, StageArgTakesEffectFromItsLine) {
  auto g = Plan("FROM busybox\nENV A=$X\nARG X=5\nENV B=$X\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "A"), "");
  EXPECT_EQ(EnvValue(*g, 0, 2, "B"), "5");
  EXPECT_THAT(*g->stages[0].instructions[2].args, ElementsAre(DeclaredArg{"X", "5"}));
  EXPECT_THAT(*g->stages[0].instructions[0].args, IsEmpty());
}

TEST(StageGraphArgs, StageArgDefaultExpandsAgainstTheStageNotTheGlobalScope) {
  auto g = Plan("ARG G=g\nFROM busybox\nARG X=${G}-x\nARG G\nARG Y=${G}-y\nENV R=$X,$Y\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 3, "R"), "-x,g-y");
}

TEST(StageGraphArgs, BuildArgOverridesADefaultWithoutEvaluatingIt) {
  const char* text = "FROM busybox\nARG X=${UNSET:?required}\nENV R=$X\n";
  auto g = Plan(text, Args({"X=z"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 1, "R"), "z");
  EXPECT_EQ(g->stages[0].instructions[0].text, "arg X=z");
  EXPECT_EQ(PlanError(text),
            "Dockerfile:2: failed to process \"${UNSET:?required}\": UNSET: required");
}

TEST(StageGraphArgs, EnvOverridesAnEarlierArg) {
  auto g = Plan("FROM busybox\nARG X=a\nENV X=b\nENV Y=$X\nRUN true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 2, "Y"), "b");
  EXPECT_EQ(Var(*g, 0, 3, "X"), "b");
}

TEST(StageGraphArgs, ArgAfterEnvResetsTheVariableOnlyWhenItHasAValue) {
  // As BuildKit's dispatchArg does: a valued ARG re-sets the variable; a bare
  // ARG with no build arg or global value leaves the ENV value alone.
  auto g = Plan("FROM busybox\nENV X=env\nARG X\nENV A=$X\nARG X=arg\nENV B=$X\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 2, "A"), "env");
  EXPECT_EQ(EnvValue(*g, 0, 4, "B"), "arg");
}

TEST(StageGraphArgs, ValuesInOneEnvInstructionSeeThePreviousValues) {
  auto g = Plan("FROM busybox\nENV a=1\nENV a=2 b=$a\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 1, "b"), "1");
  EXPECT_EQ(g->stages[0].instructions[1].text, "env a=2 b=1");
}

TEST(StageGraphArgs, AutomaticPlatformArgsAreGlobalAndNeedAnArgInsideAStage) {
  PlanOptions options;
  options.platform = "linux/arm/v7";
  auto g = Plan(
      "FROM busybox:${TARGETARCH}${TARGETVARIANT}\n"
      "ENV A=$TARGETARCH\n"
      "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOSVERSION\n"
      "ENV B=$TARGETPLATFORM,$TARGETOS,$TARGETARCH,$TARGETVARIANT,$BUILDPLATFORM\n",
      options);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base.image.String(), "docker.io/library/busybox:armv7");
  EXPECT_EQ(EnvValue(*g, 0, 0, "A"), "");
  EXPECT_EQ(EnvValue(*g, 0, 2, "B"),
            absl::StrCat("linux/arm/v7,linux,arm,v7,", oci::HostPlatform().String()));
  EXPECT_EQ(Var(*g, 0, 2, "BUILDOSVERSION"), "");
  EXPECT_EQ(g->target_platform.String(), "linux/arm/v7");
}

TEST(StageGraphArgs, PlatformIsNormalisedBeforeItBecomesTargetPlatform) {
  PlanOptions options;
  options.platform = "linux/aarch64/v8";
  auto g = Plan("FROM busybox\nARG TARGETPLATFORM TARGETVARIANT\nRUN true\n", options);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 0, 1, "TARGETPLATFORM"), "linux/arm64");
  EXPECT_EQ(Var(*g, 0, 1, "TARGETVARIANT"), "");
}

TEST(StageGraphArgs, BuildArgOverridesAnAutomaticArg) {
  const char* text = "FROM busybox AS linux\nFROM scratch AS windows\nFROM ${TARGETOS}\n";
  auto g = Plan(text, Args({"TARGETOS=windows"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[2].base.stage, 1);
  EXPECT_FALSE(g->stages[0].needed);
  EXPECT_THAT(g->warnings, IsEmpty());
}

TEST(StageGraphArgs, TargetStageIsTheTargetOrTheLastStageOrDefault) {
  const char* text = "FROM busybox AS first\nARG TARGETSTAGE\nRUN true\nFROM busybox AS last\n";
  auto g = Plan(text, Target("FIRST"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 0, 1, "TARGETSTAGE"), "FIRST");
  g = Plan("FROM busybox AS only\nARG TARGETSTAGE\nRUN true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 0, 1, "TARGETSTAGE"), "only");
  g = Plan("FROM busybox\nARG TARGETSTAGE\nRUN true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 0, 1, "TARGETSTAGE"), "default");
}

TEST(StageGraphArgs, ProxyArgsReachRunWithoutADeclarationAndStayOutOfTheScope) {
  auto g = Plan("FROM busybox\nRUN true\n", Args({"HTTP_PROXY=http://p:3128", "no_proxy=x"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->proxy_env,
              ElementsAre(Pair("HTTP_PROXY", "http://p:3128"), Pair("http_proxy", "http://p:3128"),
                          Pair("NO_PROXY", "x"), Pair("no_proxy", "x")));
  EXPECT_EQ(Var(*g, 0, 0, "HTTP_PROXY"), std::nullopt);
  EXPECT_THAT(g->warnings, IsEmpty());
  // Declared, a proxy arg is an ordinary ARG.
  g = Plan("FROM busybox\nARG HTTP_PROXY\nRUN true\n", Args({"HTTP_PROXY=http://p:3128"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 0, 1, "HTTP_PROXY"), "http://p:3128");
}

TEST(StageGraphArgs, BuildArgsNoNeededStageDeclaresAreReported) {
  const char* text =
      "ARG META\n"
      "FROM busybox AS unused\nARG ONLY_UNUSED\n"
      "FROM busybox\nARG USED\n";
  auto g = Plan(text, Args({"META=1", "USED=2", "ONLY_UNUSED=3", "TYPO=4",
                            "BUILDKIT_INLINE_CACHE=1", "TARGETARCH=arm64", "https_proxy=x"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->warnings,
              ElementsAre("[Warning] One or more build-args [ONLY_UNUSED TYPO] were not consumed"));
  g = Plan(text, Args({"USED=2"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->warnings, IsEmpty());
}

TEST(StageGraphArgs, AStageBuiltOnAStageInheritsItsEnvArgValuesAndDeclarations) {
  auto g = Plan(
      "FROM busybox AS base\nARG V=1\nENV E=e\n"
      "FROM base AS child\nRUN true\nENV F=$E$V\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(Var(*g, 1, 0, "V"), "1");
  EXPECT_EQ(Var(*g, 1, 0, "E"), "e");
  EXPECT_EQ(EnvValue(*g, 1, 1, "F"), "e1");
  EXPECT_THAT(*g->stages[1].instructions[0].args, ElementsAre(DeclaredArg{"V", "1"}));
}

TEST(StageGraphArgs, AStageOnAnImageStartsWithTheDefaultPathOrTheImageEnvironment) {
  const char* text = "FROM golang:1.22\nENV PATH=$PATH:/x GP=$GOPATH\n";
  auto g = Plan(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "PATH"),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/x");
  EXPECT_EQ(EnvValue(*g, 0, 0, "GP"), "");
  PlanOptions options;
  options.image_config = [](const oci::ImageRef& ref,
                            const oci::Platform&) -> std::optional<ImageConfig> {
    if (ref.String() != "docker.io/library/golang:1.22") return std::nullopt;
    return ImageConfig{{"PATH=/go/bin:/usr/bin", "GOPATH=/go"}, {}};
  };
  g = Plan(text, options);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "PATH"), "/go/bin:/usr/bin:/x");
  EXPECT_EQ(EnvValue(*g, 0, 0, "GP"), "/go");
}

TEST(StageGraphArgs, EnvSnapshotsAreSharedUntilTheScopeChanges) {
  auto g = Plan("FROM busybox\nRUN a\nRUN b\nENV X=1\nRUN c\n");
  ASSERT_TRUE(g.ok()) << g.status();
  const auto& in = g->stages[0].instructions;
  EXPECT_EQ(in[0].env, in[1].env);
  EXPECT_EQ(in[1].env, in[2].env);
  EXPECT_NE(in[2].env, in[3].env);
}

// ---------------------------------------------------------------------------
// Expansion: exactly where the reference expands

TEST(StageGraphExpansion, ExpandsTheInstructionsTheReferenceExpands) {
  auto g = Plan(
      "FROM busybox\n"
      "ARG D=/data U=app P=8080 S=SIGTERM M=0755 L=v1\n"
      "LABEL version=$L \"$L\"=key\n"
      "WORKDIR $D\n"
      "USER $U\n"
      "VOLUME $D/a [\"$D/b\"]\n"
      "STOPSIGNAL $S\n"
      "EXPOSE $P \"${P}/udp\"\n"
      "COPY --chown=$U --chmod=$M --exclude=$D $D/src $D/dst/\n"
      "ADD --checksum=sha256:$L https://example.com/$L.tgz /opt/\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(
      Texts(g->stages[0]),
      ElementsAre("arg D=/data U=app P=8080 S=SIGTERM M=0755 L=v1", "label version=v1 v1=key",
                  "workdir /data", "user app", "volume [\"/data/a\",\"[/data/b]\"]",
                  "stopsignal SIGTERM", "expose 8080/udp 8080",
                  "copy --chmod=0755 --chown=app --exclude=$D [\"/data/src\",\"/data/dst/\"]",
                  "add --checksum=sha256:v1 [\"https://example.com/v1.tgz\",\"/opt/\"]"));
  const auto& copy = std::get<dockerfile::Copy>(g->stages[0].instructions[7].instruction);
  EXPECT_EQ(copy.chown, "app");
  EXPECT_THAT(copy.files.source_paths, ElementsAre("/data/src"));
  EXPECT_EQ(copy.files.dest, "/data/dst/");
}

TEST(StageGraphExpansion, LeavesRunCmdEntrypointShellHealthcheckOnbuildAsWritten) {
  auto g = Plan(
      "FROM busybox\n"
      "ENV X=1\n"
      "RUN echo $X\n"
      "CMD echo $X\n"
      "ENTRYPOINT [\"echo\", \"$X\"]\n"
      "SHELL [\"/bin/sh\", \"-c\", \"$X\"]\n"
      "HEALTHCHECK --interval=5s CMD test $X\n"
      "ONBUILD RUN echo $X\n"
      "MAINTAINER $X\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(Texts(g->stages[0]),
              ElementsAre("env X=1", "run echo $X", "cmd echo $X", "entrypoint [\"echo\",\"$X\"]",
                          "shell [\"/bin/sh\",\"-c\",\"$X\"]",
                          "healthcheck --interval=5s [\"CMD-SHELL\",\"test $X\"]",
                          "onbuild RUN echo $X", "maintainer $X"));
}

TEST(StageGraphExpansion, MountValuesAreExpandedAndFlagsComeInNameOrder) {
  auto g = Plan(
      "FROM busybox\n"
      "ARG C=/root/.cache\n"
      "RUN --security=insecure --mount=type=cache,target=$C,id=go --network=none go build\n");
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedInstruction& run = g->stages[0].instructions[1];
  ASSERT_EQ(run.mounts.size(), 1u);
  EXPECT_EQ(run.mounts[0].target, "/root/.cache");
  EXPECT_EQ(run.text,
            "run --mount=type=cache,target=/root/.cache,readonly=false,id=go --network=none "
            "--security=insecure go build");
  EXPECT_THAT(run.reads, IsEmpty());
}

TEST(StageGraphExpansion, HeredocBodiesExpandUnlessTheDelimiterIsQuoted) {
  auto g = Plan(
      "FROM busybox\nARG V=x\n"
      "COPY <<EOF /a\n$V \"q\" \\$V\nEOF\n"
      "COPY <<\"EOF\" /b\n$V\nEOF\n"
      "RUN <<EOF\necho $V\nEOF\n");
  ASSERT_TRUE(g.ok()) << g.status();
  const auto& a = std::get<dockerfile::Copy>(g->stages[0].instructions[1].instruction);
  ASSERT_EQ(a.files.source_contents.size(), 1u);
  EXPECT_EQ(a.files.source_contents[0].data, "x \"q\" $V\n");
  const auto& b = std::get<dockerfile::Copy>(g->stages[0].instructions[2].instruction);
  EXPECT_EQ(b.files.source_contents[0].data, "$V\n");
  EXPECT_EQ(g->stages[0].instructions[3].text, "run <<EOF\necho $V\nEOF");
  EXPECT_EQ(g->stages[0].instructions[1].text, "copy [\"<<EOF\",\"/a\"]\nx \"q\" $V\nEOF");
}

TEST(StageGraphExpansion, TheEscapeDirectiveAppliesToExpansion) {
  auto g = Plan("# escape=`\nFROM busybox\nENV P=C:\\go X=a`$b\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(EnvValue(*g, 0, 0, "P"), "C:\\go");
  EXPECT_EQ(EnvValue(*g, 0, 0, "X"), "a$b");
}

TEST(StageGraphExpansion, ErrorsNameTheFileAndLinesOfTheInstruction) {
  EXPECT_EQ(PlanError("FROM busybox\nWORKDIR ${X:?X is required}\n"),
            "Dockerfile:2: failed to process \"${X:?X is required}\": X: X is required");
  EXPECT_EQ(PlanError("FROM busybox\nENV A=1 \\\n  B=${X:?missing}\n"),
            "Dockerfile:2-3: failed to process \"${X:?missing}\": X: missing");
  EXPECT_EQ(PlanError("FROM busybox\nVOLUME /a $EMPTY\n"),
            "Dockerfile:2: VOLUME specified can not be an empty string");
  EXPECT_EQ(PlanError("FROM busybox\nRUN --mount=type=${T:-cach},target=/x true\n"),
            "Dockerfile:2: unsupported mount type \"cach\" (did you mean cache?)");
}

TEST(StageGraphExpansion, NormalisedTextIsDeterministicAndFlagOrderIndependent) {
  auto a = Plan("FROM busybox AS b\nFROM busybox\nCOPY --link --from=b --chown=1 x /y\n");
  auto b = Plan("FROM busybox AS b\nFROM busybox\nCOPY --chown=1 --from=b --link x /y\n");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->stages[1].instructions[0].text, "copy --chown=1 --from=b --link [\"x\",\"/y\"]");
  EXPECT_EQ(a->stages[1].instructions[0].text, b->stages[1].instructions[0].text);
}

// ---------------------------------------------------------------------------
// Stages and edges

TEST(StageGraphEdges, FromCopyFromIndexAndMountFromMakeEdges) {
  auto g = Plan(
      "FROM busybox AS a\nFROM busybox AS b\n"
      "FROM A AS c\nCOPY --from=B /x /x\nCOPY --from=0 /y /y\nCOPY --from=alpine:3 /z /z\n"
      "RUN --mount=type=bind,from=b,target=/m --mount=from=golang,target=/g true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedStage& c = g->stages[2];
  EXPECT_EQ(c.base.kind, StageBase::Kind::kStage);
  EXPECT_EQ(c.base.stage, 0);
  ASSERT_EQ(c.edges.size(), 4u);
  EXPECT_EQ(c.edges[0].kind, EdgeKind::kFrom);
  EXPECT_EQ(c.edges[1].stage, 1);
  EXPECT_EQ(c.edges[1].kind, EdgeKind::kCopyFrom);
  EXPECT_EQ(c.edges[1].line, 4);
  EXPECT_EQ(c.edges[2].stage, 0);
  EXPECT_EQ(c.edges[3].stage, 1);
  EXPECT_EQ(c.edges[3].kind, EdgeKind::kMountFrom);
  EXPECT_THAT(c.deps, ElementsAre(0, 1));
  ASSERT_EQ(c.images.size(), 2u);
  EXPECT_EQ(c.images[0].String(), "docker.io/library/alpine:3");
  EXPECT_EQ(c.images[1].String(), "docker.io/library/golang:latest");
}

TEST(StageGraphEdges, MountFromTakesNamesOnlyAsBuildKitDoes) {
  auto g = Plan("FROM busybox AS a\nFROM busybox\nRUN --mount=from=0,target=/m true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->stages[1].deps, IsEmpty());
  ASSERT_EQ(g->stages[1].images.size(), 1u);
  EXPECT_EQ(g->stages[1].images[0].String(), "docker.io/library/0:latest");
}

TEST(StageGraphEdges, ScratchIsNeitherAStageNorAnImage) {
  auto g = Plan("FROM scratch\nCOPY --from=scratch /x /x\nRUN --mount=from=scratch,target=/m x\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base.kind, StageBase::Kind::kScratch);
  EXPECT_THAT(g->stages[0].images, IsEmpty());
  EXPECT_THAT(g->stages[0].instructions[0].reads, IsEmpty());
}

TEST(StageGraphEdges, AddHasNoFromFlag) {
  EXPECT_THAT(PlanError("FROM busybox AS a\nFROM busybox\nADD --from=a /x /x\n"),
              HasSubstr("Dockerfile:3: unknown flag: --from"));
}

TEST(StageGraphEdges, PerStagePlatformFromExpandedFromPlatformFlag) {
  auto g = Plan(
      "ARG ARCH=arm64\n"
      "FROM --platform=$BUILDPLATFORM busybox AS tools\n"
      "FROM --platform=linux/${ARCH} busybox AS arm\n"
      "FROM --platform=linux/s390x arm AS child\n"
      "FROM --platform=linux/s390x scratch AS empty\n"
      "FROM busybox\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].platform, oci::HostPlatform());
  EXPECT_EQ(g->stages[1].platform.String(), "linux/arm64");
  EXPECT_EQ(g->stages[2].platform.String(), "linux/arm64");  // the parent stage's wins
  EXPECT_EQ(g->stages[3].platform.String(), "linux/amd64");  // scratch takes the target's
  EXPECT_EQ(g->stages[4].platform.String(), "linux/amd64");
}

TEST(StageGraphEdges, BadFromPlatformsAreErrors) {
  EXPECT_EQ(PlanError("ARG P\nFROM --platform=$P busybox\n"),
            "Dockerfile:2: empty platform value from expression $P");
  EXPECT_THAT(PlanError("FROM busybox\nFROM --platform=linux/a/b/c busybox\n"),
              HasSubstr("Dockerfile:2: failed to parse platform linux/a/b/c: "));
  PlanOptions options;
  options.platform = "nonsense";
  EXPECT_THAT(PlanError("FROM busybox\n", options), HasSubstr("invalid platform nonsense"));
}

// ---------------------------------------------------------------------------
// Target pruning and waves

TEST(StageGraphPruning, AStageTheTargetDoesNotNeedIsNotNeededNorPlanned) {
  const char* text =
      "FROM busybox AS broken\nENV X=${UNSET:?never_expanded}\nRUN false\n"
      "FROM busybox AS ok\nFROM ok\n";
  auto g = Plan(text);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->stages[0].needed);
  EXPECT_THAT(g->stages[0].instructions, IsEmpty());
  EXPECT_EQ(g->stages[0].instruction_count, 2u);
  EXPECT_TRUE(g->stages[1].needed);
  EXPECT_TRUE(g->stages[2].needed);
  EXPECT_THAT(g->waves, ElementsAre(ElementsAre(1), ElementsAre(2)));
  EXPECT_EQ(PlanError(text, Target("BROKEN")),
            "Dockerfile:2: failed to process \"${UNSET:?never_expanded}\": UNSET: never_expanded");
}

TEST(StageGraphPruning, WavesGroupStagesWhoseDependenciesAreDone) {
  auto g = Plan(
      "FROM busybox AS a\nFROM busybox AS b\nFROM a AS c\nCOPY --from=b /x /x\n"
      "FROM busybox AS d\nFROM c\nCOPY --from=d /y /y\nCOPY --from=b /z /z\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->waves, ElementsAre(ElementsAre(0, 1, 3), ElementsAre(2), ElementsAre(4)));
  g = Plan("FROM busybox AS a\nFROM busybox AS b\nFROM a AS c\nFROM b\n", Target("c"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->waves, ElementsAre(ElementsAre(0), ElementsAre(2)));
  EXPECT_FALSE(g->stages[1].needed);
  EXPECT_FALSE(g->stages[3].needed);
}

// ---------------------------------------------------------------------------
// ONBUILD

constexpr char kOnbuild[] =
    "FROM busybox AS tools\n"            // 1
    "RUN echo tools\n"                   // 2
    "FROM busybox AS base\n"             // 3
    "ONBUILD RUN echo trigger $X\n"      // 4
    "ONBUILD COPY --from=tools /t /t\n"  // 5
    "RUN echo base\n"                    // 6
    "FROM base AS child\n"               // 7
    "RUN echo child\n"                   // 8
    "FROM child AS grandchild\n"         // 9
    "RUN echo grandchild\n";             // 10

TEST(StageGraphOnbuild, AChildRunsItsBaseTriggersFirstAndAGrandchildDoesNot) {
  auto g = Plan(kOnbuild);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(Texts(g->stages[1]), ElementsAre("onbuild RUN echo trigger $X",
                                               "onbuild COPY --from=tools /t /t", "run echo base"));
  const PlannedStage& child = g->stages[2];
  EXPECT_THAT(Texts(child), ElementsAre("run echo trigger $X", "copy --from=tools [\"/t\",\"/t\"]",
                                        "run echo child"));
  EXPECT_TRUE(child.instructions[0].onbuild);
  EXPECT_EQ(child.instructions[0].location.start_line, 7);
  EXPECT_FALSE(child.instructions[2].onbuild);
  EXPECT_EQ(child.instruction_count, 3u);
  EXPECT_THAT(Texts(g->stages[3]), ElementsAre("run echo grandchild"));
}

TEST(StageGraphOnbuild, ATriggerCopyFromAddsAnEdgeAndMakesTheStageNeeded) {
  auto g = Plan(kOnbuild, Target("base"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->stages[0].needed);  // only the child's trigger reads tools
  g = Plan(kOnbuild, Target("child"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->stages[0].needed);
  const PlannedStage& child = g->stages[2];
  ASSERT_EQ(child.edges.size(), 2u);
  EXPECT_EQ(child.edges[1].stage, 0);
  EXPECT_EQ(child.edges[1].kind, EdgeKind::kCopyFrom);
  EXPECT_TRUE(child.edges[1].onbuild);
  EXPECT_EQ(child.edges[1].line, 7);
  EXPECT_THAT(child.deps, ElementsAre(0, 1));
  EXPECT_THAT(child.stage_reads, ElementsAre(StageRead{0, "/t"}));
  EXPECT_THAT(g->waves, ElementsAre(ElementsAre(0, 1), ElementsAre(2)));
}

TEST(StageGraphOnbuild, TriggersExpandInTheChildsScope) {
  auto g = Plan(
      "FROM busybox AS base\nONBUILD COPY $SRC /dst\n"
      "FROM base\nARG SRC=child-src\n");
  ASSERT_TRUE(g.ok()) << g.status();
  // The trigger runs before the child's own ARG.
  EXPECT_EQ(g->stages[1].instructions[0].text, "copy [\"\",\"/dst\"]");
  g = Plan("FROM busybox AS base\nARG SRC=base-src\nONBUILD COPY $SRC /dst\nFROM base\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[1].instructions[0].text, "copy [\"base-src\",\"/dst\"]");
  EXPECT_THAT(g->stages[1].context_paths, ElementsAre("/base-src"));
}

TEST(StageGraphOnbuild, BaseImageTriggersRunWhenTheImageConfigIsKnown) {
  PlanOptions options;
  options.image_config = [](const oci::ImageRef& ref,
                            const oci::Platform&) -> std::optional<ImageConfig> {
    if (ref.path != "library/node") return std::nullopt;
    return ImageConfig{{}, {"COPY --from=helper /h /h"}};
  };
  auto g = Plan("FROM busybox AS helper\nFROM node:20\nRUN true\n", options);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(Texts(g->stages[1]), ElementsAre("copy --from=helper [\"/h\",\"/h\"]", "run true"));
  EXPECT_THAT(g->stages[1].deps, ElementsAre(0));
}

TEST(StageGraphOnbuild, TriggerErrorsAreReportedAtTheFromTheyRunUnder) {
  EXPECT_EQ(PlanError("FROM busybox AS base\nONBUILD COPY --bogus a b\nFROM base\n"),
            "Dockerfile:3: ONBUILD trigger \"COPY --bogus a b\": unknown flag: --bogus");
  EXPECT_EQ(PlanError("FROM busybox AS base\nONBUILD COPY --from=late /a /b\n"
                      "FROM base AS child\nFROM busybox AS late\nFROM child\n"),
            "Dockerfile:3: cannot copy from stage \"late\", it needs to be defined before "
            "current stage \"child\"");
  EXPECT_EQ(PlanError("FROM busybox AS base\nONBUILD WORKDIR ${W:?unset}\nFROM base\n"),
            "Dockerfile:3: failed to process \"${W:?unset}\": W: unset");
}

// ---------------------------------------------------------------------------
// Errors, each with its file and line

TEST(StageGraphErrors, DuplicateStageNamesInAnyCase) {
  EXPECT_EQ(PlanError("FROM busybox AS x\nRUN true\nFROM busybox AS X\n"),
            "Dockerfile:3: duplicate stage name \"x\": already defined at line 1");
}

TEST(StageGraphErrors, StageIndexThatNamesNoStage) {
  EXPECT_EQ(PlanError("FROM busybox\nCOPY --from=5 /x /x\n"),
            "Dockerfile:2: invalid stage index 5");
  EXPECT_EQ(PlanError("FROM busybox\nCOPY --from=-1 /x /x\n"),
            "Dockerfile:2: invalid stage index -1");
}

TEST(StageGraphErrors, ForwardReferencesFromANeededStage) {
  EXPECT_EQ(PlanError("FROM busybox AS a\nCOPY --from=1 /x /x\nFROM busybox AS b\nFROM a\n"),
            "Dockerfile:2: cannot copy from stage \"1\", it needs to be defined before current "
            "stage \"a\"");
  EXPECT_EQ(PlanError("FROM busybox\nCOPY --from=Later /x /x\nFROM busybox AS later\n", Target("")),
            "planned without error");  // stage 0 is not needed by the last stage
  EXPECT_EQ(
      PlanError("FROM busybox AS a\nCOPY --from=Later /x /x\nFROM busybox AS later\n", Target("a")),
      "Dockerfile:2: cannot copy from stage \"Later\", it needs to be defined before "
      "current stage \"a\"");
  EXPECT_EQ(PlanError("FROM busybox AS a\nRUN --mount=from=later,target=/m x\n"
                      "FROM busybox AS later\n",
                      Target("a")),
            "Dockerfile:2: cannot mount from stage \"later\", it needs to be defined before "
            "current stage \"a\"");
  EXPECT_EQ(PlanError("FROM later AS a\nFROM busybox AS later\nFROM a\n"),
            "Dockerfile:1: base stage \"later\" needs to be defined before current stage \"a\"");
}

TEST(StageGraphErrors, CyclesEvenAmongStagesNobodyNeeds) {
  EXPECT_EQ(PlanError("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n"
                      "COPY --from=a /y /y\nFROM busybox\n"),
            "Dockerfile:4: circular dependency detected on stage: a");
  EXPECT_EQ(PlanError("FROM busybox AS a\nCOPY --from=a /x /y\n"),
            "Dockerfile:2: circular dependency detected on stage: a");
  EXPECT_EQ(PlanError("FROM busybox\nCOPY --from=0 /x /y\n"),
            "Dockerfile:2: circular dependency detected on stage: stage-0");
}

TEST(StageGraphErrors, UnknownTargetWithAHint) {
  EXPECT_EQ(PlanError("FROM busybox AS build\n", Target("biuld")),
            "Dockerfile: target stage \"biuld\" could not be found (did you mean build?)");
}

TEST(StageGraphErrors, FromVariablesAreRefused) {
  EXPECT_EQ(PlanError("FROM busybox AS a\nARG S=a\nFROM busybox\nCOPY --from=$S /x /x\n"),
            "Dockerfile:4: variable expansion is not supported for --from, define a new stage "
            "with FROM using ARG from global scope as a workaround");
  EXPECT_THAT(PlanError("FROM busybox\nRUN --mount=from=$S,target=/x true\n"),
              HasSubstr("Dockerfile:2: 'from' doesn't support variable expansion"));
}

TEST(StageGraphErrors, InvalidImageReferences) {
  EXPECT_EQ(PlanError("FROM busybox\nFROM Busybox:1\n"),
            "Dockerfile:2: failed to parse stage name \"Busybox:1\": invalid reference format: "
            "repository name (library/Busybox) must be lowercase");
  EXPECT_EQ(PlanError("FROM busybox AS builder\nFROM busybox\nCOPY --from=Buidler /x /x\n"),
            "Dockerfile:3: failed to parse stage name \"Buidler\": invalid reference format: "
            "repository name (library/Buidler) must be lowercase (did you mean builder?)");
}

TEST(StageGraphErrors, BlankBaseAndNoStages) {
  EXPECT_EQ(PlanError("ARG EMPTY\nFROM ${EMPTY}\n"),
            "Dockerfile:2: base name (${EMPTY}) should not be blank");
  EXPECT_EQ(PlanError("ARG ONLY=1\n"), "Dockerfile: dockerfile contains no stages to build");
}

TEST(StageGraphErrors, BuildArgsNeedAValue) {
  EXPECT_EQ(PlanError("FROM busybox\n", Args({"FOO"})),
            "build arg \"FOO\" has no value (expected NAME=value)");
}

// ---------------------------------------------------------------------------
// What stages read

TEST(StageGraphReads, ContextPathsAndStagePathsOfEveryInstruction) {
  auto g = Plan(
      "FROM busybox AS build\n"
      "FROM busybox\n"
      "WORKDIR /app\n"
      "COPY . .\n"
      "COPY src/*.go ./src/../lib/ /dst/\n"
      "ADD https://example.com/a.tgz git@github.com:x/y.git local.tgz /opt/\n"
      "COPY --from=build /out/app /usr/bin/\n"
      "COPY --from=0 out/../out/app /usr/bin/\n"
      "COPY --from=alpine:3 /etc/os-release /\n"
      "RUN --mount=type=bind,source=go.mod,target=/x/go.mod "
      "--mount=type=cache,target=/c --mount=type=cache,from=build,target=/d "
      "--mount=type=bind,from=build,source=/tools,target=/t --mount=type=tmpfs,target=/tmp "
      "--mount=type=secret,id=s true\n");
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedStage& s = g->stages[1];
  EXPECT_THAT(s.context_paths, ElementsAre("/", "/go.mod", "/lib", "/local.tgz", "/src/*.go"));
  EXPECT_THAT(s.stage_reads,
              ElementsAre(StageRead{0, "/"}, StageRead{0, "/out/app"}, StageRead{0, "/tools"}));
  const std::vector<Source>& add = s.instructions[3].reads;
  ASSERT_EQ(add.size(), 3u);
  EXPECT_EQ(add[0].kind, SourceKind::kUrl);
  EXPECT_EQ(add[0].path, "https://example.com/a.tgz");
  EXPECT_EQ(add[1].kind, SourceKind::kUrl);
  EXPECT_EQ(add[2].kind, SourceKind::kContext);
  const std::vector<Source>& image = s.instructions[6].reads;
  ASSERT_EQ(image.size(), 1u);
  EXPECT_EQ(image[0].kind, SourceKind::kImage);
  EXPECT_EQ(image[0].image.String(), "docker.io/library/alpine:3");
  EXPECT_EQ(image[0].path, "/etc/os-release");
  EXPECT_EQ(s.instructions[7].reads.size(), 3u);  // bind context, cache from build, bind from build
}

TEST(StageGraphReads, EveryPlannedInstructionCarriesItsStagePlatform) {
  auto g = Plan("FROM --platform=linux/arm64 busybox\nRUN true\nCOPY a b\n");
  ASSERT_TRUE(g.ok()) << g.status();
  for (const PlannedInstruction& instruction : g->stages[0].instructions) {
    EXPECT_EQ(instruction.platform.String(), "linux/arm64");
  }
}

// ---------------------------------------------------------------------------
// Real Dockerfiles

struct Expected {
  std::string file;
  PlanOptions options;
  std::vector<std::vector<int>> deps;  // per stage
  std::vector<std::vector<int>> waves;
  std::vector<int> needed;
};

absl::StatusOr<StageGraph> PlanFile(const std::filesystem::path& path, PlanOptions options) {
  const std::string text = testing::ReadFileOrFail(path);
  auto ast = dockerfile::Parse(text, path.filename().string());
  if (!ast.ok()) return ast.status();
  auto staged = dockerfile::ParseStages(*ast, path.filename().string());
  if (!staged.ok()) return staged.status();
  options.filename = path.filename().string();
  if (options.platform.empty()) options.platform = "linux/amd64";
  return BuildStageGraph(*staged, ast->directives.escape_token, options);
}

TEST(StageGraphRealDockerfiles, EveryFilePlansForEveryStageAsTarget) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "real-dockerfiles")) {
    ++files;
    auto g = PlanFile(entry.path(), {});
    ASSERT_TRUE(g.ok()) << entry.path() << ": " << g.status();
    EXPECT_THAT(g->warnings, IsEmpty()) << entry.path();
    for (const PlannedStage& stage : g->stages) {
      if (stage.name.empty()) continue;
      PlanOptions options;
      options.target = stage.name;
      auto t = PlanFile(entry.path(), options);
      EXPECT_TRUE(t.ok()) << entry.path() << " --target " << stage.name << ": " << t.status();
    }
    for (const char* platform : {"linux/arm64", "windows/amd64", "darwin/arm64"}) {
      PlanOptions options;
      options.platform = platform;
      auto p = PlanFile(entry.path(), options);
      EXPECT_TRUE(p.ok()) << entry.path() << " --platform " << platform << ": " << p.status();
    }
  }
  EXPECT_EQ(files, 14);
}

// Stage counts, dependencies and waves worked out by hand from each file.
std::vector<Expected> HandWritten() {
  std::vector<Expected> out;
  out.push_back({"vercel_next.js__examples_with-docker_Dockerfile.Dockerfile",
                 {},
                 // base, deps, builder, runner
                 {{}, {0}, {0, 1}, {0, 2}},
                 {{0}, {1}, {2}, {3}},
                 {0, 1, 2, 3}});
  out.push_back({"distribution_distribution__Dockerfile.Dockerfile",
                 {},
                 // xx, base, version, build, binary, releaser, artifact, (final)
                 {{}, {0}, {1}, {1, 2}, {3}, {1, 2, 4}, {5}, {4}},
                 {{0}, {1}, {2}, {3}, {4}, {7}},
                 {0, 1, 2, 3, 4, 7}});
  out.push_back({"containerd_containerd__.github_workflows_release_Dockerfile.Dockerfile",
                 {},
                 // go, xx, base, linux, windows, target (FROM ${TARGETOS}), release
                 {{}, {}, {1}, {2}, {2}, {0, 3}, {5}},
                 {{0, 1}, {2}, {3}, {5}, {6}},
                 {0, 1, 2, 3, 5, 6}});
  {
    PlanOptions windows;
    windows.platform = "windows/amd64";
    out.push_back({"containerd_containerd__.github_workflows_release_Dockerfile.Dockerfile",
                   windows,
                   {{}, {}, {1}, {2}, {2}, {0, 4}, {5}},
                   {{0, 1}, {2}, {4}, {5}, {6}},
                   {0, 1, 2, 4, 5, 6}});
  }
  out.push_back({"containerd_containerd__contrib_Dockerfile.test.Dockerfile",
                 {},
                 // golang, runc, build-env, cni, critools, integration, cri-integration,
                 // critest, cri-in-userns, cri-in-userns-systemd, dev
                 {{}, {0}, {0}, {0}, {0}, {1, 2}, {3, 4, 5}, {6}, {7}, {7}, {1, 2}},
                 {{0}, {1, 2}, {10}},
                 {0, 1, 2, 10}});
  {
    PlanOptions critest;
    critest.target = "critest";
    out.push_back({"containerd_containerd__contrib_Dockerfile.test.Dockerfile",
                   critest,
                   {{}, {0}, {0}, {0}, {0}, {1, 2}, {3, 4, 5}, {6}, {7}, {7}, {1, 2}},
                   {{0}, {1, 2, 3, 4}, {5}, {6}, {7}},
                   {0, 1, 2, 3, 4, 5, 6, 7}});
  }
  out.push_back({"docker_cli__dockerfiles_Dockerfile.dev.Dockerfile",
                 {},
                 // buildx, golang, gofumpt, gotestsum, goversioninfo, dev
                 {{}, {}, {1}, {1}, {1}, {0, 1, 2, 3, 4}},
                 {{0, 1}, {2, 3, 4}, {5}},
                 {0, 1, 2, 3, 4, 5}});
  out.push_back({"moby_buildkit__hack_dockerfiles_generated-files.Dockerfile",
                 {},
                 // base, protoc, googleapis, gobuild-base, vtprotobuf, vendored, protobuf,
                 // tools, generated, update, validate
                 {{}, {0}, {0}, {0}, {3}, {3}, {1, 2, 4, 5}, {3, 6}, {7}, {8}, {3, 9}},
                 {{0}, {1, 2, 3}, {4, 5}, {6}, {7}, {8}, {9}, {10}},
                 {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}});
  out.push_back({"moby_buildkit__frontend_dockerfile_cmd_dockerfile-frontend_Dockerfile.Dockerfile",
                 {},
                 // xx, base, version, build, release, (final FROM release)
                 {{}, {0}, {1}, {1, 2}, {3}, {4}},
                 {{0}, {1}, {2}, {3}, {4}, {5}},
                 {0, 1, 2, 3, 4, 5}});
  out.push_back({"docker_buildx__Dockerfile.Dockerfile",
                 {},
                 // 0 xx .. 11 undock are bare image stages; 12 gobase ... 32 the final FROM
                 {{},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {},
                  {0, 1},                                        // 12 gobase
                  {12},                                          // 13 gotestsum
                  {12},                                          // 14 buildx-version
                  {12, 14},                                      // 15 buildx-build
                  {12},                                          // 16 test
                  {16},                                          // 17 test-coverage
                  {15},                                          // 18 binaries-unix
                  {18},                                          // 19 binaries-darwin
                  {18},                                          // 20 binaries-freebsd
                  {18},                                          // 21 binaries-linux
                  {18},                                          // 22 binaries-netbsd
                  {18},                                          // 23 binaries-openbsd
                  {15},                                          // 24 binaries-windows
                  {21},                                          // 25 binaries (binaries-$TARGETOS)
                  {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25},  // 26 integration-test-base
                  {26},                                          // 27 integration-test
                  {14, 25},                                      // 28 releaser
                  {28},                                          // 29 release
                  {},                                            // 30 dockerd-release
                  {25, 30},                                      // 31 shell
                  {25}},                                         // 32
                 {{0, 1}, {12}, {14}, {15}, {18}, {21}, {25}, {32}},
                 {0, 1, 12, 14, 15, 18, 21, 25, 32}});
  out.push_back({"docker_compose__Dockerfile.Dockerfile",
                 {},
                 {{},      // 0 xx
                  {},      // 1 osxcross
                  {},      // 2 golangci-lint
                  {},      // 3 addlicense
                  {0},     // 4 base
                  {4},     // 5 build-base
                  {5},     // 6 vendored
                  {6},     // 7 vendor-update
                  {6},     // 8 vendor-validate
                  {5},     // 9 mocks-generate
                  {9},     // 10 mocks-validate
                  {1, 5},  // 11 build
                  {2, 5},  // 12 lint
                  {5},     // 13 test
                  {13},    // 14 test-coverage
                  {3, 4},  // 15 license-set
                  {},      // 16 license-update (COPY --from=set: an image)
                  {3, 4},  // 17 license-validate
                  {4},     // 18 docsgen
                  {18},    // 19 docs-build
                  {19},    // 20 docs-update
                  {19},    // 21 docs-validate
                  {11},    // 22 binary-unix
                  {22},    // 23 binary-darwin
                  {22},    // 24 binary-linux
                  {11},    // 25 binary-windows
                  {24},    // 26 binary (binary-$TARGETOS)
                  {26},    // 27 releaser
                  {27},    // 28 release
                  {26},    // 29 module-releaser
                  {29}},   // 30 module
                 {{0, 1}, {4}, {5}, {11}, {22}, {24}, {26}, {29}, {30}},
                 {0, 1, 4, 5, 11, 22, 24, 26, 29, 30}});
  out.push_back({"astral-sh_uv__crates_uv-trampoline_Dockerfile.Dockerfile",
                 {},
                 {{}, {0}, {0, 1}},
                 {{0}, {1}, {2}},
                 {0, 1, 2}});
  out.push_back(
      {"excalidraw_excalidraw__Dockerfile.Dockerfile", {}, {{}, {0}}, {{0}, {1}}, {0, 1}});
  out.push_back({"moby_moby__cmd_dockerd_winresources_Dockerfile.Dockerfile",
                 {},
                 {{}, {0}, {1}},
                 {{0}, {1}, {2}},
                 {0, 1, 2}});
  out.push_back(
      {"nginx_docker-nginx__modules_Dockerfile.Dockerfile", {}, {{}, {0}}, {{0}, {1}}, {0, 1}});
  out.push_back({"moby_moby__Dockerfile.windows.Dockerfile", {}, {{}}, {{0}}, {0}});
  return out;
}

TEST(StageGraphRealDockerfiles, DependenciesAndWavesMatchTheHandWrittenOnes) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  for (const Expected& expected : HandWritten()) {
    SCOPED_TRACE(expected.file + " --target " + expected.options.target + " --platform " +
                 expected.options.platform);
    auto g = PlanFile(dir / "real-dockerfiles" / expected.file, expected.options);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_EQ(g->stages.size(), expected.deps.size());
    std::vector<int> needed;
    for (const PlannedStage& stage : g->stages) {
      EXPECT_EQ(stage.deps, expected.deps[stage.index]) << "stage " << stage.index;
      if (stage.needed) needed.push_back(stage.index);
    }
    EXPECT_EQ(needed, expected.needed);
    EXPECT_EQ(g->waves, expected.waves);
  }
}

TEST(StageGraphRealDockerfiles, ReadsFollowInheritedEnvironment) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  auto g = PlanFile(
      dir / "real-dockerfiles/astral-sh_uv__crates_uv-trampoline_Dockerfile.Dockerfile", {});
  ASSERT_TRUE(g.ok()) << g.status();
  // HOME and CARGO_HOME come from ENV in `base`; the last stage is built FROM it.
  EXPECT_THAT(g->stages[2].stage_reads, ElementsAre(StageRead{1, "/app/rust/cargo/bin/cargo-xwin"},
                                                    StageRead{1, "/app/xwin-cache"}));
  // RUST_NIGHTLY is a global ARG redeclared in `base`.
  EXPECT_EQ(Var(*g, 0, 0, "RUST_NIGHTLY"), std::nullopt);
  EXPECT_EQ(Var(*g, 0, 6, "RUST_NIGHTLY"), "nightly-2026-03-11");
}

TEST(StageGraphRealDockerfiles, ImagesReadThroughFromAreNormalised) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  auto g = PlanFile(dir / "real-dockerfiles/docker_compose__Dockerfile.Dockerfile", {});
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->stages[16].images.size(), 1u);
  EXPECT_EQ(g->stages[16].images[0].String(), "docker.io/library/set:latest");
  EXPECT_EQ(g->stages[2].base.image.String(), "docker.io/golangci/golangci-lint:v2.11.3-alpine");
  EXPECT_EQ(g->stages[3].base.image.String(), "ghcr.io/google/addlicense:v1.0.0");
  EXPECT_EQ(g->stages[26].base.stage, 24);
  EXPECT_EQ(g->stages[0].platform, oci::HostPlatform());  // --platform=${BUILDPLATFORM}
}

// ---------------------------------------------------------------------------
// Named contexts (--build-context NAME=VALUE)

PlanOptions Contexts(std::map<std::string, std::string> images,
                     std::vector<std::string> dirs = {}) {
  PlanOptions options;
  for (const auto& [name, ref] : images) {
    NamedContextSource& source = options.named_contexts[name];
    source.kind = NamedContextSource::Kind::kImage;
    source.image = *oci::ParseImageRef(ref);
  }
  for (const std::string& name : dirs) options.named_contexts[name] = NamedContextSource{};
  return options;
}

// BuildKit's dockerui.NamedContext: ParseNormalizedNamed, FamiliarString,
// then TrimSuffix ":latest".
TEST(NamedContextName, IsTheFamiliarReferenceWithoutLatest) {
  EXPECT_EQ(*NamedContextName("alpine"), "alpine");
  EXPECT_EQ(*NamedContextName("alpine:latest"), "alpine");
  EXPECT_EQ(*NamedContextName("docker.io/library/alpine"), "alpine");
  EXPECT_EQ(*NamedContextName("alpine:3.19"), "alpine:3.19");
  EXPECT_EQ(*NamedContextName("ghcr.io/o/base"), "ghcr.io/o/base");
  EXPECT_EQ(*NamedContextName("src"), "src");
  EXPECT_FALSE(NamedContextName("").ok());
  EXPECT_THAT(std::string(NamedContextName("Src").status().message()),
              HasSubstr("invalid context name Src"));
}

// A docker-image:// context replaces the image `FROM NAME` names: how users
// pin or swap a base image (docs.docker.com, "Named contexts with GitHub
// Actions": "Pin image to a tag"). The name matches after normalisation, so
// FROM alpine:latest is the context "alpine".
TEST(StageGraphNamedContexts, ImageContextReplacesTheBaseImage) {
  auto g = Plan("FROM alpine:latest\nRUN true\n", Contexts({{"alpine", "busybox:1.36"}}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base.kind, StageBase::Kind::kImage);
  EXPECT_EQ(g->stages[0].base.image.String(), "docker.io/library/busybox:1.36");
  EXPECT_TRUE(g->stages[0].replaced_by.empty());
  ASSERT_EQ(g->stages[0].instructions.size(), 1u);
}

TEST(StageGraphNamedContexts, ImageContextReplacesCopyFromAndMountFromImages) {
  auto g = Plan(
      "FROM scratch\nCOPY --from=tools /bin/sh /sh\n"
      "RUN --mount=type=bind,from=tools,target=/t true\n",
      Contexts({{"tools", "busybox:1.36"}}));
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedStage& stage = g->stages[0];
  ASSERT_EQ(stage.images.size(), 1u);
  EXPECT_EQ(stage.images[0].String(), "docker.io/library/busybox:1.36");
  EXPECT_EQ(stage.instructions[0].copy_from.kind, SourceRoot::Kind::kImage);
  EXPECT_EQ(stage.instructions[1].mount_from[0].kind, SourceRoot::Kind::kImage);
}

// A local directory is read by COPY --from=NAME and mounts from=NAME like a
// stage's root (BuildKit: the llb.Local state of the directory), and never
// counts as the main context.
TEST(StageGraphNamedContexts, LocalContextIsReadByCopyFromAndBindMounts) {
  auto g = Plan(
      "FROM busybox\nCOPY --from=src app/ /app/\nCOPY main.c /\n"
      "RUN --mount=type=bind,from=src,source=lib,target=/lib2 true\n",
      Contexts({}, {"src"}));
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedStage& stage = g->stages[0];
  EXPECT_EQ(stage.instructions[0].copy_from.kind, SourceRoot::Kind::kContext);
  EXPECT_EQ(stage.instructions[0].copy_from.context, "src");
  ASSERT_EQ(stage.instructions[0].reads.size(), 1u);
  EXPECT_EQ(stage.instructions[0].reads[0].context, "src");
  EXPECT_EQ(stage.instructions[2].mount_from[0].context, "src");
  EXPECT_THAT(stage.context_paths, ElementsAre("/main.c"));
  EXPECT_THAT(stage.named_context_paths, ElementsAre(Pair("src", ElementsAre("/app", "/lib"))));
  EXPECT_TRUE(stage.images.empty());
  EXPECT_TRUE(stage.deps.empty());
}

// BuildKit's dockerui namedcontext returns a "local" context as the
// directory's state with no image config, and toDispatchState uses it as
// the stage's root filesystem: FROM NAME starts from the directory's files
// on an empty config (PATH only, like scratch). Here: one COPY of it first.
TEST(StageGraphNamedContexts, FromLocalContextStartsFromItsFiles) {
  auto g = Plan("FROM rootfs\nENV A=1\n", Contexts({}, {"rootfs"}));
  ASSERT_TRUE(g.ok()) << g.status();
  const PlannedStage& stage = g->stages[0];
  EXPECT_EQ(stage.base.kind, StageBase::Kind::kScratch);
  EXPECT_THAT(Texts(stage), ElementsAre("copy --from=rootfs [\".\",\"/\"]", "env A=1"));
  EXPECT_EQ(stage.instruction_count, 2u);
  EXPECT_THAT(stage.named_context_paths, ElementsAre(Pair("rootfs", ElementsAre("/"))));
}

// "When Dockerfile defines a stage with the same name it is overwritten"
// (docker buildx build --build-context; toDispatchState looks the stage's
// name up first and then runs none of its instructions).
TEST(StageGraphNamedContexts, ContextNamedLikeAStageReplacesTheStage) {
  const char* text =
      "FROM golang AS base\nRUN make\n"
      "FROM base\nRUN ./app\n"
      "FROM scratch\nCOPY --from=base /app /app\n";
  auto g = Plan(text, Contexts({{"base", "busybox:1.36"}}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].replaced_by, "base");
  EXPECT_EQ(g->stages[0].base.image.String(), "docker.io/library/busybox:1.36");
  EXPECT_TRUE(g->stages[0].instructions.empty());
  EXPECT_EQ(g->stages[0].instruction_count, 0u);
  // The stages that read it still read the stage, now the image.
  EXPECT_EQ(g->stages[1].base.kind, StageBase::Kind::kStage);
  EXPECT_EQ(g->stages[2].instructions[0].copy_from.kind, SourceRoot::Kind::kStage);

  auto local = Plan(text, Contexts({}, {"base"}));
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_THAT(Texts(local->stages[0]), ElementsAre("copy --from=base [\".\",\"/\"]"));
}

// A number is always a stage index, and a context nobody names is ignored
// (BuildKit never asks for it).
TEST(StageGraphNamedContexts, IndexesAndUnusedContextsAreUnaffected) {
  auto g = Plan("FROM busybox\nRUN true\nFROM scratch\nCOPY --from=0 /bin /bin\n",
                Contexts({{"unused", "alpine"}}, {"0x"}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stages[0].base.image.String(), "docker.io/library/busybox:latest");
  EXPECT_EQ(g->stages[1].instructions[0].copy_from.kind, SourceRoot::Kind::kStage);
}

}  // namespace
}  // namespace stagefarm::graph

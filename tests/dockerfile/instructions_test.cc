#include "common/dockerfile/instructions.h"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "common/dockerfile/builder_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/corpus.h"

namespace stagefarm::dockerfile {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A node as the parser builds it, for tests that do not need the parser.
Node MakeNode(std::string keyword, std::vector<std::string> args,
              std::vector<std::string> flags = {}, bool json_form = false) {
  Node node;
  node.original = keyword;
  for (const std::string& flag : flags) node.original += " " + flag;
  for (const std::string& arg : args) node.original += " " + arg;
  node.keyword = std::move(keyword);
  node.args = std::move(args);
  node.flags = std::move(flags);
  node.json_form = json_form;
  node.start_line = 1;
  node.end_line = 1;
  return node;
}

// The first instruction of `dockerfile`, through the real parser.
Node ParseFirst(const std::string& dockerfile) {
  absl::StatusOr<ParseResult> ast = Parse(dockerfile);
  EXPECT_TRUE(ast.ok()) << ast.status() << "\n" << dockerfile;
  if (!ast.ok() || ast->children.empty()) return Node{};
  return ast->children[0];
}

template <typename T>
T ParseAs(const Node& node) {
  absl::StatusOr<Instruction> instruction = ParseInstruction(node);
  EXPECT_TRUE(instruction.ok()) << instruction.status();
  if (!instruction.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*instruction)) << node.original;
  if (!std::holds_alternative<T>(*instruction)) return T{};
  return std::get<T>(*std::move(instruction));
}

template <typename T>
T ParseAs(const std::string& dockerfile) {
  return ParseAs<T>(ParseFirst(dockerfile));
}

std::string ErrorOf(const Node& node) {
  absl::StatusOr<Instruction> instruction = ParseInstruction(node);
  EXPECT_FALSE(instruction.ok()) << node.original;
  return instruction.ok() ? "" : std::string(instruction.status().message());
}

std::string ErrorOf(const std::string& dockerfile) { return ErrorOf(ParseFirst(dockerfile)); }

absl::StatusOr<std::string> Identity(absl::string_view word) { return std::string(word); }

absl::StatusOr<Mount> LiteralMount(absl::string_view spec) { return ParseMount(spec, Identity); }

std::string MountError(absl::string_view spec) {
  absl::StatusOr<Mount> mount = LiteralMount(spec);
  EXPECT_FALSE(mount.ok()) << spec;
  return mount.ok() ? "" : std::string(mount.status().message());
}

// Heredocs as readable text, so that a mismatch reads as a diff.
std::string Describe(const std::vector<Heredoc>& heredocs) {
  std::string out;
  for (const Heredoc& h : heredocs) {
    out += h.name + " fd=" + std::to_string(h.file_descriptor) +
           " expand=" + (h.expand ? "true" : "false") + " chomp=" + (h.chomp ? "true" : "false") +
           " content=[" + h.content + "]\n";
  }
  return out;
}

// --- The transcribed reference cases -------------------------------------

TEST(InstructionConformance, ErrorCasesFailWithTheReferenceMessages) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const nlohmann::json doc = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-instructions" / "error-cases.json"));
  const nlohmann::json& cases = doc.at("cases");
  ASSERT_EQ(cases.size(), 19u);
  int exact = 0;
  int contains = 0;
  for (const nlohmann::json& c : cases) {
    const std::string dockerfile = c.at("dockerfile");
    const std::string expected = c.at("expected_error");
    SCOPED_TRACE(c.at("name").get<std::string>() + ": " + dockerfile);
    absl::StatusOr<ParseResult> ast = Parse(dockerfile);
    ASSERT_TRUE(ast.ok()) << ast.status();
    ASSERT_FALSE(ast->children.empty());
    absl::StatusOr<Instruction> instruction = ParseInstruction(ast->children[0]);
    ASSERT_FALSE(instruction.ok());
    const std::string message(instruction.status().message());
    if (c.at("match") == "exact") {
      EXPECT_EQ(message, expected);
      ++exact;
    } else {
      ASSERT_EQ(c.at("match"), "contains");
      EXPECT_THAT(message, HasSubstr(expected));
      ++contains;
    }
  }
  EXPECT_EQ(exact, 12);
  EXPECT_EQ(contains, 7);
}

// The parser-level heredoc fixtures, one level up: RUN carries the heredocs as
// shell files, COPY as inline sources (tabs stripped for `<<-`).
TEST(InstructionConformance, ExtractedHeredocsReachTheTypedInstructions) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const nlohmann::json doc = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-heredoc" / "extracts-heredoc.expected.json"));
  absl::StatusOr<ParseResult> ast =
      Parse(testing::ReadFileOrFail(dir / "buildkit-heredoc" / "extracts-heredoc.Dockerfile"));
  ASSERT_TRUE(ast.ok()) << ast.status();
  ASSERT_EQ(doc.at("cases").size(), 27u);
  int runs = 0;
  int copies = 0;
  int others = 0;
  for (const nlohmann::json& c : doc.at("cases")) {
    const size_t index = c.at("child_index");
    SCOPED_TRACE(c.at("comment").get<std::string>());
    ASSERT_LT(index, ast->children.size());
    std::vector<Heredoc> expected;
    if (!c.at("heredocs").is_null()) {
      for (const nlohmann::json& h : c.at("heredocs")) {
        expected.push_back(Heredoc{.name = h.at("Name"),
                                   .content = h.at("Content"),
                                   .file_descriptor = h.at("FileDescriptor"),
                                   .expand = h.at("Expand"),
                                   .chomp = h.at("Chomp")});
      }
    }
    absl::StatusOr<Instruction> instruction = ParseInstruction(ast->children[index]);
    if (!instruction.ok()) {
      // `INVALID` (the body of `USER <<INVALID`) is an unknown instruction.
      EXPECT_EQ(std::string(instruction.status().message()), "unknown instruction: INVALID");
      ++others;
    } else if (const dockerfile::Run* run = std::get_if<dockerfile::Run>(&*instruction)) {
      EXPECT_EQ(Describe(run->command.files), Describe(expected));
      EXPECT_TRUE(run->command.prepend_shell);
      ++runs;
    } else if (const Copy* copy = std::get_if<Copy>(&*instruction)) {
      std::vector<SourceContent> contents;
      for (const Heredoc& h : expected) {
        contents.push_back({.path = h.name, .data = h.content, .expand = h.expand});
      }
      EXPECT_EQ(copy->files.source_contents, contents);
      ++copies;
    } else {
      EXPECT_THAT(expected, IsEmpty());
      ++others;
    }
  }
  EXPECT_EQ(runs, 20);
  EXPECT_EQ(copies, 4);
  EXPECT_EQ(others, 3);
}

TEST(InstructionConformance, JsonFormRunsCarryNoHeredocs) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const nlohmann::json doc = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-heredoc" / "json-no-heredoc.expected.json"));
  absl::StatusOr<ParseResult> ast =
      Parse(testing::ReadFileOrFail(dir / "buildkit-heredoc" / "json-no-heredoc.Dockerfile"));
  ASSERT_TRUE(ast.ok()) << ast.status();
  ASSERT_EQ(doc.at("cases").size(), 3u);
  for (const nlohmann::json& c : doc.at("cases")) {
    const dockerfile::Run run =
        ParseAs<dockerfile::Run>(ast->children.at(c.at("child_index").get<size_t>()));
    EXPECT_THAT(run.command.files, IsEmpty());
    EXPECT_FALSE(run.command.prepend_shell);
  }
}

TEST(InstructionConformance, RealDockerfilesParseIntoStages) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "real-dockerfiles")) {
    SCOPED_TRACE(entry.path().filename().string());
    absl::StatusOr<ParseResult> ast = Parse(testing::ReadFileOrFail(entry.path()));
    ASSERT_TRUE(ast.ok()) << ast.status();
    absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast);
    ASSERT_TRUE(staged.ok()) << staged.status();
    EXPECT_FALSE(staged->stages.empty());
    ++files;
  }
  EXPECT_EQ(files, 14);
}

TEST(EndToEnd, EveryInstructionKindParsesThroughTheParser) {
  absl::StatusOr<ParseResult> ast = Parse(
      "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n"
      "ENV A=1 B=\"two words\"\n"
      "LABEL org.opencontainers.image.title=demo\n"
      "MAINTAINER someone@example.com\n"
      "EXPOSE 8080 80/udp\n"
      "VOLUME [\"/data\", \"/logs\"]\n"
      "USER app:app\n"
      "WORKDIR /src\n"
      "ARG VERSION=1.0 COMMIT\n"
      "SHELL [\"/bin/bash\", \"-c\"]\n"
      "STOPSIGNAL SIGTERM\n"
      "HEALTHCHECK --interval=5s --retries=2 CMD curl -f http://localhost/ || exit 1\n"
      "ONBUILD COPY . /app\n"
      "RUN --mount=type=cache,target=/root/.cache --network=none go build ./...\n"
      "COPY --from=build --chmod=0755 /out/app /usr/local/bin/\n"
      "ADD --checksum=sha256:0123 https://example.com/x.tgz /opt/\n"
      "CMD [\"app\"]\n"
      "ENTRYPOINT exec app\n");
  ASSERT_TRUE(ast.ok()) << ast.status();
  absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_EQ(staged->stages.size(), 1u);
  const Stage& stage = staged->stages[0];
  EXPECT_EQ(stage.from.platform, "$BUILDPLATFORM");
  EXPECT_EQ(stage.name(), "build");
  ASSERT_EQ(stage.commands.size(), 17u);
  EXPECT_THAT(std::get<Env>(stage.commands[0]).vars,
              ElementsAre(KeyValue{"A", "1", false}, KeyValue{"B", "\"two words\"", false}));
  EXPECT_EQ(std::get<Label>(stage.commands[1]).labels[0].key, "org.opencontainers.image.title");
  EXPECT_EQ(std::get<Maintainer>(stage.commands[2]).maintainer, "someone@example.com");
  EXPECT_THAT(std::get<Expose>(stage.commands[3]).ports, ElementsAre("80/udp", "8080"));
  EXPECT_THAT(std::get<Volume>(stage.commands[4]).volumes, ElementsAre("/data", "/logs"));
  EXPECT_EQ(std::get<User>(stage.commands[5]).user, "app:app");
  EXPECT_EQ(std::get<Workdir>(stage.commands[6]).path, "/src");
  EXPECT_THAT(std::get<Arg>(stage.commands[7]).args,
              ElementsAre(ArgDefinition{"VERSION", "1.0"}, ArgDefinition{"COMMIT", std::nullopt}));
  EXPECT_THAT(std::get<Shell>(stage.commands[8]).shell, ElementsAre("/bin/bash", "-c"));
  EXPECT_EQ(std::get<Stopsignal>(stage.commands[9]).signal, "SIGTERM");
  const HealthConfig& health = std::get<Healthcheck>(stage.commands[10]).health;
  EXPECT_THAT(health.test, ElementsAre("CMD-SHELL", "curl -f http://localhost/ || exit 1"));
  EXPECT_EQ(health.interval, absl::Seconds(5));
  EXPECT_EQ(health.retries, 2);
  EXPECT_EQ(std::get<Onbuild>(stage.commands[11]).expression, "COPY . /app");
  const dockerfile::Run& run = std::get<dockerfile::Run>(stage.commands[12]);
  EXPECT_THAT(run.mounts, ElementsAre("type=cache,target=/root/.cache"));
  EXPECT_EQ(run.network, NetworkMode::kNone);
  EXPECT_THAT(run.command.args, ElementsAre("go build ./..."));
  EXPECT_EQ(std::get<Copy>(stage.commands[13]).chmod, "0755");
  EXPECT_EQ(std::get<Add>(stage.commands[14]).checksum, "sha256:0123");
  EXPECT_THAT(std::get<Cmd>(stage.commands[15]).command.args, ElementsAre("app"));
  EXPECT_TRUE(std::get<Entrypoint>(stage.commands[16]).command.prepend_shell);
  EXPECT_EQ(BaseOf(stage.commands[16]).location, (SourceRange{18, 18}));
}

// --- Argument counts and shapes (parse_test.go) ---------------------------

TEST(ArgumentCounts, SingleArgumentInstructionsRejectNoArgument) {
  for (const char* keyword : {"MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"}) {
    EXPECT_EQ(ErrorOf(MakeNode(keyword, {})),
              std::string(keyword) + " requires exactly one argument");
  }
}

TEST(ArgumentCounts, ListInstructionsRejectNoArgument) {
  for (const char* keyword :
       {"ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME", "ARG"}) {
    EXPECT_EQ(ErrorOf(MakeNode(keyword, {})),
              std::string(keyword) + " requires at least one argument");
  }
}

TEST(ArgumentCounts, MessagesNameTheInstructionInCapitalsWhateverItsCase) {
  EXPECT_EQ(ErrorOf(MakeNode("workdir", {})), "WORKDIR requires exactly one argument");
  EXPECT_EQ(ErrorOf(MakeNode("Copy", {"a"})),
            "COPY requires at least two arguments, but only one was provided. Destination "
            "could not be determined");
}

TEST(ArgumentCounts, EnvAndLabelRejectAnIncompleteTriple) {
  for (const char* keyword : {"env", "label"}) {
    const std::string upper = keyword == std::string("env") ? "ENV" : "LABEL";
    EXPECT_EQ(ErrorOf(MakeNode(keyword, {"arg1", "arg2", "arg3", ""})),
              "Bad input to " + upper + ", too many arguments");
    EXPECT_EQ(ErrorOf(MakeNode(keyword, {"", "arg2", "="})), upper + " names can not be blank");
  }
}

TEST(ArgumentCounts, EnvKeepsTheLegacyFormApart) {
  const Env env = ParseAs<Env>(MakeNode("ENV", {"A", "b c", "", "D", "\"e f\"", "="}));
  EXPECT_THAT(env.vars, ElementsAre(KeyValue{"A", "b c", true}, KeyValue{"D", "\"e f\"", false}));
}

TEST(ArgumentCounts, ArgSplitsNamesFromDefaultsAndKeepsQuotes) {
  const Arg arg = ParseAs<Arg>(MakeNode("ARG", {"abc=\"123 456\"", "def", "empty="}));
  EXPECT_THAT(arg.args,
              ElementsAre(ArgDefinition{"abc", "\"123 456\""}, ArgDefinition{"def", std::nullopt},
                          ArgDefinition{"empty", ""}));
  EXPECT_EQ(ErrorOf(MakeNode("ARG", {"=x"})), "ARG names can not be blank");
}

TEST(ArgumentCounts, ArgAndStopsignalIgnoreFlagsLikeTheReference) {
  EXPECT_EQ(ParseAs<Arg>(MakeNode("ARG", {"a"}, {"--boo"})).args.size(), 1u);
  EXPECT_EQ(ParseAs<Stopsignal>(MakeNode("STOPSIGNAL", {"SIGKILL"}, {"--boo"})).signal, "SIGKILL");
}

TEST(ArgumentCounts, ExposeSortsPortsAndVolumeRejectsBlankPaths) {
  EXPECT_THAT(ParseAs<Expose>(MakeNode("EXPOSE", {"8080/tcp", "443", "80"})).ports,
              ElementsAre("443", "80", "8080/tcp"));
  EXPECT_THAT(ParseAs<Volume>(MakeNode("VOLUME", {" /data ", "/logs"})).volumes,
              ElementsAre("/data", "/logs"));
  EXPECT_EQ(ErrorOf(MakeNode("VOLUME", {" "})), "VOLUME specified can not be an empty string");
}

TEST(ArgumentCounts, ShellNeedsANonEmptyJsonArray) {
  EXPECT_THAT(ParseAs<Shell>(MakeNode("SHELL", {"pwsh", "-c"}, {}, true)).shell,
              ElementsAre("pwsh", "-c"));
  EXPECT_EQ(ErrorOf(MakeNode("SHELL", {}, {}, true)), "SHELL requires at least one argument");
  EXPECT_EQ(ErrorOf(MakeNode("SHELL", {"/bin/sh -c"})),
            "SHELL requires the arguments to be in JSON form");
}

TEST(ArgumentCounts, UnknownInstructionsSuggestTheClosestKeyword) {
  EXPECT_EQ(ErrorOf(MakeNode("FOO", {""})), "unknown instruction: FOO (did you mean FROM?)");
  EXPECT_EQ(ErrorOf(MakeNode("foo", {""})), "unknown instruction: foo (did you mean from?)");
  EXPECT_EQ(ErrorOf(MakeNode("COPPY", {""})), "unknown instruction: COPPY (did you mean COPY?)");
  EXPECT_EQ(ErrorOf(MakeNode("XYZZYX", {""})), "unknown instruction: XYZZYX");
}

TEST(ArgumentCounts, InstructionsCarryTheirKeywordCodeAndLines) {
  Node node = MakeNode("run", {"echo hi"});
  node.original = "  run   echo hi  ";
  node.start_line = 4;
  node.end_line = 6;
  const dockerfile::Run run = ParseAs<dockerfile::Run>(node);
  EXPECT_EQ(run.keyword, "run");
  EXPECT_EQ(run.code, "run   echo hi");
  EXPECT_EQ(run.location, (SourceRange{4, 6}));
  absl::StatusOr<Instruction> bad = ParseInstruction(MakeNode("USER", {}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ErrorRange(bad.status()), (SourceRange{1, 1}));
}

// --- FROM ----------------------------------------------------------------

TEST(FromInstruction, KeepsBaseNameLowerCasedStageNameAndPlatform) {
  const From from = ParseAs<From>(
      MakeNode("FROM", {"golang:1.22", "As", "Build-1.x_y"}, {"--platform=linux/arm64"}));
  EXPECT_EQ(from.base_name, "golang:1.22");
  EXPECT_EQ(from.stage_name, "build-1.x_y");
  EXPECT_EQ(from.platform, "linux/arm64");
}

TEST(FromInstruction, RejectsBadStageNamesAndArgumentCounts) {
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {"a", "AS", "1st"})),
            "invalid name for build stage: \"1st\", name can't start with a number or contain "
            "symbols");
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {"a", "AS", "st@ge"})),
            "invalid name for build stage: \"st@ge\", name can't start with a number or contain "
            "symbols");
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {})), "FROM requires either one or three arguments");
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {"a", "b", "c"})),
            "FROM requires either one or three arguments");
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {"a", "AS"})), "FROM requires either one or three arguments");
  EXPECT_EQ(ErrorOf(MakeNode("FROM", {"a"}, {"--platfrom=x"})),
            "unknown flag: --platfrom (did you mean platform?)");
}

// --- Flags (bflag_test.go and flag errors per instruction) ---------------

TEST(BuilderFlags, AcceptsNoArgumentsAndALoneDoubleDash) {
  BuilderFlags none({});
  EXPECT_TRUE(none.Parse().ok());
  const std::vector<std::string> dash = {"--"};
  BuilderFlags flags(dash);
  EXPECT_TRUE(flags.Parse().ok());
}

TEST(BuilderFlags, KeepsDefaultsForFlagsNotGiven) {
  BuilderFlags flags({});
  const BuilderFlag& str = flags.AddString("str1", "HI");
  const BuilderFlag& boolean = flags.AddBool("bool1", false);
  ASSERT_TRUE(flags.Parse().ok());
  EXPECT_EQ(str.value, "HI");
  EXPECT_FALSE(boolean.bool_value);
  EXPECT_FALSE(str.used);
  EXPECT_FALSE(boolean.used);
}

TEST(BuilderFlags, StringFlagsNeedAnEqualsSignButMayBeEmpty) {
  const std::vector<std::string> bare = {"--str1"};
  BuilderFlags missing(bare);
  missing.AddString("str1", "HI");
  EXPECT_EQ(missing.Parse().message(), "missing a value on flag: --str1");

  const std::vector<std::string> empty = {"--str1="};
  BuilderFlags flags(empty);
  const BuilderFlag& str = flags.AddString("str1", "HI");
  ASSERT_TRUE(flags.Parse().ok());
  EXPECT_EQ(str.value, "");
  EXPECT_TRUE(str.used);
}

TEST(BuilderFlags, BoolFlagsTakeNoValueTrueOrFalseInAnyCase) {
  for (const auto& [arg, expected] :
       std::vector<std::pair<std::string, bool>>{{"--bool1", true},
                                                 {"--bool1=true", true},
                                                 {"--bool1=FALSE", false},
                                                 {"--bool1=True", true}}) {
    const std::vector<std::string> args = {arg};
    BuilderFlags flags(args);
    const BuilderFlag& flag = flags.AddBool("bool1", !expected);
    ASSERT_TRUE(flags.Parse().ok()) << arg;
    EXPECT_EQ(flag.bool_value, expected) << arg;
  }
  const std::vector<std::string> bad = {"--bool1=false1"};
  BuilderFlags invalid(bad);
  invalid.AddBool("bool1", false);
  EXPECT_EQ(invalid.Parse().message(), "expecting boolean value for flag --bool1, not: false1");
  const std::vector<std::string> empty = {"--bool1="};
  BuilderFlags missing(empty);
  missing.AddBool("bool1", false);
  EXPECT_EQ(missing.Parse().message(), "missing a value on flag: --bool1");
}

TEST(BuilderFlags, RejectsUnknownDuplicateAndNonFlagWords) {
  const std::vector<std::string> unknown = {"--bool2"};
  BuilderFlags a(unknown);
  a.AddBool("bool1", false);
  EXPECT_EQ(a.Parse().message(), "unknown flag: --bool2 (did you mean bool1?)");

  const std::vector<std::string> twice = {"--str1=a", "--str1=b"};
  BuilderFlags b(twice);
  b.AddString("str1", "");
  EXPECT_EQ(b.Parse().message(), "duplicate flag specified: --str1");

  const std::vector<std::string> word = {"-x"};
  BuilderFlags c(word);
  EXPECT_EQ(c.Parse().message(), "arg should start with -- : -x");
}

TEST(BuilderFlags, RepeatedFlagsCollectEveryValueAndUsedListsGivenFlags) {
  const std::vector<std::string> args = {
      "--bool2=false", "--bool3", "--str2= ", "--many=a", "--many=b", "--str4=my-val"};
  BuilderFlags flags(args);
  flags.AddBool("bool1", false);
  flags.AddBool("bool2", false);
  flags.AddBool("bool3", false);
  flags.AddString("str1", "");
  const BuilderFlag& str2 = flags.AddString("str2", "");
  flags.AddString("str4", "def4");
  const BuilderFlag& many = flags.AddStrings("many");
  ASSERT_TRUE(flags.Parse().ok());
  EXPECT_EQ(str2.value, " ");
  EXPECT_THAT(many.values, ElementsAre("a", "b"));
  EXPECT_THAT(flags.used(), ElementsAre("bool2", "bool3", "str2", "many", "str4"));
}

TEST(BuilderFlags, InstructionsWithoutFlagsRejectAnyFlag) {
  EXPECT_EQ(ErrorOf(MakeNode("MAINTAINER", {"joe@example.com"}, {"--boo"})), "unknown flag: --boo");
  EXPECT_EQ(ErrorOf(MakeNode("ENV", {"a", "b", "="}, {"--x=1"})), "unknown flag: --x");
  EXPECT_EQ(ErrorOf(MakeNode("CMD", {"ls"}, {"--doit"})), "unknown flag: --doit");
}

// --- COPY and ADD ----------------------------------------------------------

TEST(CopyAndAdd, CopyReadsItsFlags) {
  const Copy copy = ParseAs<Copy>(MakeNode("COPY", {"a", "b", "/dst/"},
                                           {"--from=build", "--chown=1:2", "--chmod=755", "--link",
                                            "--parents", "--exclude=*.md", "--exclude=tmp"}));
  EXPECT_EQ(copy.from, "build");
  EXPECT_EQ(copy.chown, "1:2");
  EXPECT_EQ(copy.chmod, "755");
  EXPECT_TRUE(copy.link);
  EXPECT_TRUE(copy.parents);
  EXPECT_THAT(copy.exclude, ElementsAre("*.md", "tmp"));
  EXPECT_EQ(copy.files.dest, "/dst/");
  EXPECT_THAT(copy.files.source_paths, ElementsAre("a", "b"));
  EXPECT_EQ(ErrorOf(MakeNode("COPY", {"a", "b"}, {"--link=false", "--link"})),
            "duplicate flag specified: --link");
  EXPECT_EQ(ErrorOf(MakeNode("COPY", {"a", "b"}, {"--checksum=x"})), "unknown flag: --checksum");
}

TEST(CopyAndAdd, AddKeepsUnpackAndKeepGitDirUnsetUnlessGiven) {
  const Add plain = ParseAs<Add>(MakeNode("ADD", {"a", "b"}));
  EXPECT_EQ(plain.unpack, std::nullopt);
  EXPECT_EQ(plain.keep_git_dir, std::nullopt);
  EXPECT_FALSE(plain.link);

  const Add add =
      ParseAs<Add>(MakeNode("ADD", {"https://x/a.tar", "/b"},
                            {"--unpack=false", "--keep-git-dir", "--checksum=sha256:abc",
                             "--chown=app", "--chmod=644", "--link=true", "--exclude=x"}));
  EXPECT_EQ(add.unpack, false);
  EXPECT_EQ(add.keep_git_dir, true);
  EXPECT_EQ(add.checksum, "sha256:abc");
  EXPECT_EQ(add.chown, "app");
  EXPECT_EQ(add.chmod, "644");
  EXPECT_TRUE(add.link);
  EXPECT_THAT(add.exclude, ElementsAre("x"));
  EXPECT_EQ(ErrorOf(MakeNode("ADD", {"a", "b"}, {"--from=x"})), "unknown flag: --from");
  EXPECT_EQ(ErrorOf(MakeNode("ADD", {"a", "b"}, {"--parents"})), "unknown flag: --parents");
}

TEST(CopyAndAdd, CountsArgumentsBeforeCheckingFlags) {
  EXPECT_EQ(ErrorOf(MakeNode("ADD", {"a"}, {"--bogus"})),
            "ADD requires at least two arguments, but only one was provided. Destination could "
            "not be determined");
}

TEST(CopyAndAdd, HeredocSourcesBecomeInlineFiles) {
  struct Case {
    std::string dockerfile;
    SourcesAndDest expected;
  };
  const std::vector<Case> cases = {
      {"COPY /foo /bar", {.dest = "/bar", .source_paths = {"/foo"}, .source_contents = {}}},
      {"COPY <<EOF /bar\nEOF",
       {.dest = "/bar", .source_paths = {}, .source_contents = {{"EOF", "", true}}}},
      {"COPY <<EOF /bar\nTESTING\nEOF",
       {.dest = "/bar", .source_paths = {}, .source_contents = {{"EOF", "TESTING\n", true}}}},
      {"COPY <<-EOF /bar\n\tTESTING\nEOF",
       {.dest = "/bar", .source_paths = {}, .source_contents = {{"EOF", "TESTING\n", true}}}},
      {"COPY <<'EOF' /bar\nTESTING\nEOF",
       {.dest = "/bar", .source_paths = {}, .source_contents = {{"EOF", "TESTING\n", false}}}},
      {"COPY <<EOF1 <<EOF2 /bar\nthis is the first file\nEOF1\nthis is the second file\nEOF2",
       {.dest = "/bar",
        .source_paths = {},
        .source_contents = {{"EOF1", "this is the first file\n", true},
                            {"EOF2", "this is the second file\n", true}}}},
      {"COPY <<EOF foo.txt /bar\nthis is inline\nEOF",
       {.dest = "/bar",
        .source_paths = {"foo.txt"},
        .source_contents = {{"EOF", "this is inline\n", true}}}},
      {"COPY <<EOF /quotes\n\"quotes\"\nEOF",
       {.dest = "/quotes", .source_paths = {}, .source_contents = {{"EOF", "\"quotes\"\n", true}}}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ParseAs<Copy>(c.dockerfile).files, c.expected) << c.dockerfile;
  }
}

TEST(CopyAndAdd, HeredocDestinationsAreRejected) {
  EXPECT_EQ(ErrorOf("COPY /foo <<EOF\nEOF"), "COPY cannot accept a heredoc as a destination");
  EXPECT_EQ(ErrorOf("ADD /foo <<EOF\nEOF"), "ADD cannot accept a heredoc as a destination");
}

// --- RUN, CMD, ENTRYPOINT ----------------------------------------------------

TEST(Run, ShellAndExecFormsAndHeredocFiles) {
  struct Case {
    std::string dockerfile;
    bool shell;
    std::vector<std::string> command;
    std::vector<std::pair<std::string, std::string>> files;  // name, body
    bool chomp = false;
  };
  const std::vector<Case> cases = {
      {"RUN [\"ls\", \"/\"]", false, {"ls", "/"}, {}},
      {"RUN [\"<<EOF\"]", false, {"<<EOF"}, {}},
      {"RUN ls /", true, {"ls /"}, {}},
      {"RUN <<EOF\nls /\nwhoami\nEOF", true, {"<<EOF"}, {{"EOF", "ls /\nwhoami\n"}}},
      {"RUN <<'EOF' | python\nprint(\"hello\")\nprint(\"world\")\nEOF",
       true,
       {"<<'EOF' | python"},
       {{"EOF", "print(\"hello\")\nprint(\"world\")\n"}}},
      {"RUN <<-EOF\n\techo test\nEOF", true, {"<<-EOF"}, {{"EOF", "\techo test\n"}}, true},
  };
  for (const Case& c : cases) {
    const dockerfile::Run run = ParseAs<dockerfile::Run>(c.dockerfile);
    EXPECT_EQ(run.command.prepend_shell, c.shell) << c.dockerfile;
    EXPECT_EQ(run.command.args, c.command) << c.dockerfile;
    ASSERT_EQ(run.command.files.size(), c.files.size()) << c.dockerfile;
    for (size_t i = 0; i < c.files.size(); ++i) {
      EXPECT_EQ(run.command.files[i].name, c.files[i].first);
      EXPECT_EQ(run.command.files[i].content, c.files[i].second);
      EXPECT_EQ(run.command.files[i].chomp, c.chomp);
    }
  }
}

TEST(Run, ReportsTheFlagsUsed) {
  const dockerfile::Run run =
      ParseAs<dockerfile::Run>("RUN --mount=type=tmpfs,target=/foo/ echo hello");
  EXPECT_THAT(run.flags_used, ElementsAre("mount"));
  EXPECT_THAT(run.mounts, ElementsAre("type=tmpfs,target=/foo/"));
}

TEST(Run, NetworkAndSecurityDefaultAndValidate) {
  const dockerfile::Run plain = ParseAs<dockerfile::Run>(MakeNode("RUN", {"true"}));
  EXPECT_EQ(plain.network, NetworkMode::kDefault);
  EXPECT_EQ(plain.security, SecurityMode::kSandbox);
  EXPECT_THAT(plain.flags_used, IsEmpty());

  const dockerfile::Run run = ParseAs<dockerfile::Run>(
      MakeNode("RUN", {"true"}, {"--network=none", "--security=insecure"}));
  EXPECT_EQ(run.network, NetworkMode::kNone);
  EXPECT_EQ(run.security, SecurityMode::kInsecure);
  EXPECT_EQ(ParseAs<dockerfile::Run>(MakeNode("RUN", {"true"}, {"--network=host"})).network,
            NetworkMode::kHost);

  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--network=bridge"})),
            "invalid network mode \"bridge\"");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--network=None"})),
            "invalid network mode \"None\"");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--security=privileged"})),
            "security \"privileged\" is not valid");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--network"})),
            "missing a value on flag: --network");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--mount"})), "missing a value on flag: --mount");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--mounts=type=bind"})),
            "unknown flag: --mounts (did you mean mount?)");
}

TEST(Run, MountsAreOnlyCheckedForCsvAndFromVariablesBeforeExpansion) {
  const dockerfile::Run run = ParseAs<dockerfile::Run>(
      MakeNode("RUN", {"true"}, {"--mount=type=$T,target=/x", "--mount=type=cache,sharing=bogus"}));
  EXPECT_THAT(run.mounts, ElementsAre("type=$T,target=/x", "type=cache,sharing=bogus"));
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--mount=from=$STAGE,target=/x"})),
            "'from' doesn't support variable expansion, define alias stage instead");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--mount=target=/a\"b"})),
            "failed to parse csv mounts: parse error on line 1, column 10: bare \" in "
            "non-quoted-field");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--mount="})), "failed to parse csv mounts: EOF");
  EXPECT_TRUE(ParseInstruction(MakeNode("RUN", {"true"}, {"--mount=from=stage$"})).ok());
}

TEST(Run, DevicesAreParsed) {
  const dockerfile::Run run = ParseAs<dockerfile::Run>(
      MakeNode("RUN", {"true"}, {"--device=vendor.com/gpu=all,required", "--device=name=x"}));
  EXPECT_THAT(run.devices, ElementsAre(Device{"vendor.com/gpu=all", true}, Device{"x", false}));
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--device=a,name=b"})),
            "device name already set to a");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--device=a,required=maybe"})),
            "invalid value for required: maybe");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--device=a,b"})),
            "invalid field 'b' must be a key=value pair");
  EXPECT_EQ(ErrorOf(MakeNode("RUN", {"true"}, {"--device=a,nme=b"})),
            "unexpected key 'nme' in 'nme=b' (did you mean name?)");
}

TEST(Run, CmdAndEntrypointShareTheCommandLineShape) {
  const Cmd cmd = ParseAs<Cmd>(MakeNode("CMD", {"echo", "hi"}, {}, true));
  EXPECT_THAT(cmd.command.args, ElementsAre("echo", "hi"));
  EXPECT_FALSE(cmd.command.prepend_shell);
  const Entrypoint shell_form = ParseAs<Entrypoint>(MakeNode("ENTRYPOINT", {"nginx -g x"}));
  EXPECT_THAT(shell_form.command.args, ElementsAre("nginx -g x"));
  EXPECT_TRUE(shell_form.command.prepend_shell);
  EXPECT_THAT(ParseAs<Entrypoint>(MakeNode("ENTRYPOINT", {}, {}, true)).command.args, IsEmpty());
}

// --- Mounts (commands_runmount.go) -------------------------------------------

TEST(RunMount, DefaultsToAReadOnlyBindMount) {
  const absl::StatusOr<Mount> mount = LiteralMount("target=/src");
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_EQ(mount->type, MountType::kBind);
  EXPECT_EQ(mount->target, "/src");
  EXPECT_TRUE(mount->read_only);
}

TEST(RunMount, ReadsEveryKeyAndAlias) {
  absl::StatusOr<Mount> mount = LiteralMount(
      "type=cache,from=builder,src=/s,dst=/d,id=gomod,sharing=LOCKED,mode=0750,uid=1000,gid=1001");
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_EQ(mount->type, MountType::kCache);
  EXPECT_EQ(mount->from, "builder");
  EXPECT_EQ(mount->source, "/s");
  EXPECT_EQ(mount->target, "/d");
  EXPECT_EQ(mount->id, "gomod");
  EXPECT_EQ(mount->sharing, MountSharing::kLocked);
  EXPECT_EQ(mount->mode, 0750u);
  EXPECT_EQ(mount->uid, 1000u);
  EXPECT_EQ(mount->gid, 1001u);
  EXPECT_FALSE(mount->read_only);

  mount = LiteralMount("TYPE=Bind,source=a,destination=/b,rw");
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_EQ(mount->type, MountType::kBind);
  EXPECT_EQ(mount->target, "/b");
  EXPECT_FALSE(mount->read_only);
}

TEST(RunMount, ReadOnlyTakesGoBooleansWithOrWithoutValue) {
  EXPECT_TRUE(LiteralMount("type=cache,target=/c,ro")->read_only);
  EXPECT_TRUE(LiteralMount("type=cache,target=/c,readonly=T")->read_only);
  EXPECT_FALSE(LiteralMount("target=/c,readonly=0")->read_only);
  EXPECT_FALSE(LiteralMount("target=/c,readwrite=true")->read_only);
  EXPECT_TRUE(LiteralMount("type=tmpfs,target=/c,rw=False")->read_only);
  EXPECT_FALSE(LiteralMount("type=tmpfs,target=/t")->read_only);
  EXPECT_EQ(MountError("target=/c,ro=yes"), "invalid value for ro: yes");
  EXPECT_EQ(MountError("target=/c,readwrite=2"), "invalid value for readwrite: 2");
}

TEST(RunMount, RequiredIsOnlyForSecretsAndSsh) {
  EXPECT_TRUE(LiteralMount("type=secret,id=tok,required")->required);
  EXPECT_FALSE(LiteralMount("type=ssh,required=false")->required);
  EXPECT_EQ(MountError("type=cache,target=/c,required"),
            "unexpected key 'required' for mount type 'cache'");
  // Keys are read in order: `required` before `type` still sees a bind mount.
  EXPECT_EQ(MountError("required,type=secret,id=x"),
            "unexpected key 'required' for mount type 'bind'");
  EXPECT_EQ(MountError("type=secret,id=x,required=sure"), "invalid value for required: sure");
}

TEST(RunMount, TmpfsSizeUsesBinaryUnits) {
  EXPECT_EQ(LiteralMount("type=tmpfs,target=/t,size=64m")->size_limit, 64 << 20);
  EXPECT_EQ(LiteralMount("type=tmpfs,target=/t,size=1.5GiB")->size_limit, 1536ll << 20);
  EXPECT_EQ(LiteralMount("type=tmpfs,target=/t,size=100")->size_limit, 100);
  EXPECT_EQ(LiteralMount("type=tmpfs,target=/t,size=2 kb")->size_limit, 2048);
  EXPECT_EQ(MountError("type=tmpfs,target=/t,size=lots"), "invalid value for size: lots");
  EXPECT_EQ(MountError("type=tmpfs,target=/t,size=1x"), "invalid value for size: 1x");
  EXPECT_EQ(MountError("type=tmpfs,target=/t,size=-1"), "invalid value for size: -1");
  EXPECT_EQ(MountError("type=cache,target=/t,size=1m"),
            "unexpected key 'size' for mount type 'cache'");
}

TEST(RunMount, RejectsUnknownTypesSharingModesAndKeysWithHints) {
  EXPECT_EQ(MountError("type=cach"), "unsupported mount type \"cach\" (did you mean cache?)");
  EXPECT_EQ(MountError("type=volume"), "unsupported mount type \"volume\"");
  EXPECT_EQ(MountError("type=cache,sharing=shard"),
            "unsupported sharing value \"shard\" (did you mean shared?)");
  EXPECT_EQ(MountError("target=/x,bogus=bar"), "unexpected key 'bogus' in 'bogus=bar'");
  EXPECT_EQ(MountError("target=/x,sourc=bar"),
            "unexpected key 'sourc' in 'sourc=bar' (did you mean source?)");
  EXPECT_EQ(MountError("target=/x,bogus"), "invalid field 'bogus' must be a key=value pair");
}

TEST(RunMount, FileInfoIsOnlyForCacheSecretAndSsh) {
  EXPECT_EQ(MountError("target=/x,mode=0644"), "mode not allowed for \"bind\" type mounts");
  EXPECT_EQ(MountError("type=tmpfs,target=/x,uid=1"), "uid not allowed for \"tmpfs\" type mounts");
  EXPECT_EQ(MountError("target=/x,gid=1"), "gid not allowed for \"bind\" type mounts");
  EXPECT_EQ(MountError("type=cache,target=/x,mode=0800"), "invalid value 0800 for mode");
  EXPECT_EQ(MountError("type=cache,target=/x,uid=-1"), "invalid value -1 for uid");
  EXPECT_EQ(MountError("type=cache,target=/x,gid=4294967296"), "invalid value 4294967296 for gid");
  EXPECT_EQ(LiteralMount("type=ssh,mode=600")->mode, 0600u);
}

TEST(RunMount, SecretMountsNeedAnIdAndNoStageOrSharing) {
  EXPECT_EQ(MountError("type=secret"), "invalid secret mount. one of source, target required");
  EXPECT_EQ(MountError("type=secret,id=a,from=b"), "secret mount should not have a from");
  EXPECT_EQ(MountError("type=secret,id=a,sharing=locked"),
            "secret mount should not define sharing");
  EXPECT_EQ(MountError("type=secret,id=a,source=b"), "both source and id can't be set");
  EXPECT_EQ(MountError("type=tmpfs,target=/t,sharing=locked"),
            "invalid cache sharing set for tmpfs mount");
  const absl::StatusOr<Mount> env = LiteralMount("type=secret,id=tok,env=TOKEN");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->env, "TOKEN");
  EXPECT_TRUE(env->read_only);
}

TEST(RunMount, DispatchDefaultsFollowTheReference) {
  const Mount cache = *LiteralMount("type=cache,target=/root/.cache/../.cache/go/");
  EXPECT_EQ(EffectiveSharing(cache), MountSharing::kShared);
  EXPECT_EQ(CacheId(cache), "/root/.cache/go");
  EXPECT_EQ(CacheId(*LiteralMount("type=cache,target=/x,id=mine")), "mine");

  EXPECT_EQ(SshId(*LiteralMount("type=ssh")), "default");
  EXPECT_EQ(SshId(*LiteralMount("type=ssh,id=github")), "github");

  absl::StatusOr<SecretPlacement> by_id = PlaceSecret(*LiteralMount("type=secret,id=aws"));
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->id, "aws");
  EXPECT_EQ(by_id->file, "/run/secrets/aws");
  absl::StatusOr<SecretPlacement> by_target =
      PlaceSecret(*LiteralMount("type=secret,target=/etc/creds.json"));
  ASSERT_TRUE(by_target.ok());
  EXPECT_EQ(by_target->id, "creds.json");
  EXPECT_EQ(by_target->file, "/etc/creds.json");
  absl::StatusOr<SecretPlacement> as_env = PlaceSecret(*LiteralMount("type=secret,id=t,env=T"));
  ASSERT_TRUE(as_env.ok());
  EXPECT_EQ(as_env->file, std::nullopt);
}

TEST(RunMount, ValuesAreExpandedBeforeTheyAreChecked) {
  const auto expand = [](absl::string_view word) -> absl::StatusOr<std::string> {
    if (word == "$T") return std::string("cache");
    if (word == "$BAD") return absl::InvalidArgumentError("unbound variable");
    return std::string(word);
  };
  absl::StatusOr<Mount> mount = ParseMount("type=$T,target=/c", expand);
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_EQ(mount->type, MountType::kCache);
  EXPECT_EQ(ParseMount("type=$BAD", expand).status().message(), "unbound variable");
}

TEST(RunMount, CsvQuotingAllowsCommasInValues) {
  absl::StatusOr<Mount> mount = LiteralMount("\"target=/a,b\",\"source=x\"\"y\"");
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_EQ(mount->target, "/a,b");
  EXPECT_EQ(mount->source, "x\"y");
  EXPECT_EQ(MountError("\"target=/a\"x"),
            "failed to parse csv mounts: parse error on line 1, column 11: extraneous or missing "
            "\" in quoted-field");
}

// --- HEALTHCHECK ----------------------------------------------------------

TEST(Healthcheck, ShellFormBecomesCmdShell) {
  const Healthcheck hc = ParseAs<Healthcheck>(MakeNode("healthcheck", {"CMD", "hello", "world"}));
  EXPECT_THAT(hc.health.test, ElementsAre("CMD-SHELL", "hello world"));
  const Healthcheck exec =
      ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"cmd", "curl", "-f", "x"}, {}, true));
  EXPECT_THAT(exec.health.test, ElementsAre("CMD", "curl", "-f", "x"));
}

TEST(Healthcheck, NoneTakesNoArgumentsAndIgnoresFlags) {
  EXPECT_THAT(ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"none"}, {"--bogus"})).health.test,
              ElementsAre("NONE"));
  EXPECT_EQ(ErrorOf(MakeNode("HEALTHCHECK", {"NONE", "x"})), "HEALTHCHECK NONE takes no arguments");
}

TEST(Healthcheck, RejectsUnknownTypesAndMissingCommands) {
  EXPECT_EQ(ErrorOf(MakeNode("HEALTHCHECK", {"RUN", "x"})),
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)");
  EXPECT_EQ(ErrorOf(MakeNode("HEALTHCHECK", {"CMD"})), "Missing command after HEALTHCHECK CMD");
  EXPECT_EQ(ErrorOf(MakeNode("HEALTHCHECK", {"RUN", "x"}, {"--bogus=1"})), "unknown flag: --bogus");
}

TEST(Healthcheck, ParsesDurationsAndRetries) {
  const Healthcheck hc =
      ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"CMD", "true"},
                                    {"--interval=1m30s", "--timeout=1.5s", "--start-period=0",
                                     "--start-interval=250ms", "--retries=3"}));
  EXPECT_EQ(hc.health.interval, absl::Seconds(90));
  EXPECT_EQ(hc.health.timeout, absl::Milliseconds(1500));
  EXPECT_EQ(hc.health.start_period, absl::ZeroDuration());
  EXPECT_EQ(hc.health.start_interval, absl::Milliseconds(250));
  EXPECT_EQ(hc.health.retries, 3);
  EXPECT_EQ(ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--timeout=1h2m3.5µs"}))
                .health.timeout,
            absl::Hours(1) + absl::Minutes(2) + absl::Nanoseconds(3500));
}

TEST(Healthcheck, IntervalsBelowOneMillisecondAreRejectedButZeroIsUnset) {
  const auto interval_error = [](const std::string& value) {
    return ErrorOf(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--interval=" + value}));
  };
  EXPECT_EQ(interval_error("50ns"), "Interval \"interval\" cannot be less than 1ms");
  EXPECT_EQ(interval_error("-1s"), "Interval \"interval\" cannot be less than 1ms");
  EXPECT_EQ(ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--interval=0ms"}))
                .health.interval,
            absl::ZeroDuration());
  EXPECT_EQ(ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--interval=1ms"}))
                .health.interval,
            absl::Milliseconds(1));
  EXPECT_EQ(ErrorOf(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--start-interval=999us"})),
            "Interval \"start-interval\" cannot be less than 1ms");
}

TEST(Healthcheck, DurationsAreParsedStrictlyLikeGo) {
  const auto timeout_error = [](const std::string& value) {
    return ErrorOf(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--timeout=" + value}));
  };
  EXPECT_EQ(timeout_error("10"), "time: missing unit in duration \"10\"");
  EXPECT_EQ(timeout_error("5 s"), "time: unknown unit \" s\" in duration \"5 s\"");
  EXPECT_EQ(timeout_error("5sec"), "time: unknown unit \"sec\" in duration \"5sec\"");
  EXPECT_EQ(timeout_error("s"), "time: invalid duration \"s\"");
  EXPECT_EQ(timeout_error(".s"), "time: invalid duration \".s\"");
  EXPECT_EQ(timeout_error("-"), "time: invalid duration \"-\"");
  EXPECT_EQ(timeout_error("9999999999h"), "time: invalid duration \"9999999999h\"");
  EXPECT_EQ(timeout_error("1d"), "time: unknown unit \"d\" in duration \"1d\"");
}

TEST(Healthcheck, RetriesMustBeANonNegativeInt32) {
  const auto retries_error = [](const std::string& value) {
    return ErrorOf(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--retries=" + value}));
  };
  EXPECT_EQ(retries_error("-1"), "--retries cannot be negative (-1)");
  EXPECT_EQ(retries_error("three"), "strconv.ParseInt: parsing \"three\": invalid syntax");
  EXPECT_EQ(retries_error("2147483648"),
            "strconv.ParseInt: parsing \"2147483648\": value out of range");
  EXPECT_EQ(
      ParseAs<Healthcheck>(MakeNode("HEALTHCHECK", {"CMD", "t"}, {"--retries=+0"})).health.retries,
      0);
}

// --- ONBUILD ---------------------------------------------------------------

TEST(Onbuild, KeepsTheTriggerTextWithoutTheKeyword) {
  EXPECT_EQ(ParseAs<Onbuild>("ONBUILD RUN echo hi").expression, "RUN echo hi");
  EXPECT_EQ(ParseAs<Onbuild>("onbuild   ADD . /app/src").expression, "ADD . /app/src");
}

TEST(Onbuild, AppendsHeredocBodies) {
  EXPECT_EQ(ParseAs<Onbuild>("ONBUILD RUN <<EOF\necho hi\nEOF").expression,
            "RUN <<EOF\necho hi\nEOF");
}

TEST(Onbuild, RejectsForbiddenTriggersInAnyCase) {
  EXPECT_EQ(ErrorOf("ONBUILD ONBUILD RUN touch foobar"),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  EXPECT_EQ(ErrorOf("ONBUILD from scratch"), "FROM isn't allowed as an ONBUILD trigger");
  EXPECT_EQ(ErrorOf("ONBUILD Maintainer me"), "MAINTAINER isn't allowed as an ONBUILD trigger");
}

// --- Stages ------------------------------------------------------------------

TEST(Stages, GroupInstructionsUnderTheirFromAndCollectMetaArgs) {
  absl::StatusOr<ParseResult> ast = Parse(
      "ARG BASE=alpine\nARG TAG\nFROM $BASE:$TAG AS Build\nARG TAG\nRUN make\n"
      "FROM scratch\nCOPY --from=build /out /\n");
  ASSERT_TRUE(ast.ok()) << ast.status();
  absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_EQ(staged->meta_args.size(), 2u);
  EXPECT_EQ(staged->meta_args[0].args[0], (ArgDefinition{"BASE", "alpine"}));
  ASSERT_EQ(staged->stages.size(), 2u);
  EXPECT_EQ(staged->stages[0].name(), "build");
  EXPECT_EQ(staged->stages[0].from.base_name, "$BASE:$TAG");
  EXPECT_EQ(staged->stages[0].from.location, (SourceRange{3, 3}));
  ASSERT_EQ(staged->stages[0].commands.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<Arg>(staged->stages[0].commands[0]));
  EXPECT_EQ(BaseOf(staged->stages[0].commands[1]).code, "RUN make");
  EXPECT_EQ(staged->stages[1].name(), "");
  ASSERT_EQ(staged->stages[1].commands.size(), 1u);
  EXPECT_EQ(std::get<Copy>(staged->stages[1].commands[0]).from, "build");
}

TEST(Stages, AnInstructionBeforeTheFirstFromIsAnError) {
  absl::StatusOr<ParseResult> ast = Parse("ARG X\nRUN true\nFROM scratch\n");
  ASSERT_TRUE(ast.ok()) << ast.status();
  absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast, "build/Dockerfile");
  ASSERT_FALSE(staged.ok());
  EXPECT_EQ(staged.status().message(), "build/Dockerfile:2: no build stage in current context");
  EXPECT_EQ(ReferenceMessage(staged.status()), "no build stage in current context");
  EXPECT_EQ(ErrorRange(staged.status()), (SourceRange{2, 2}));
}

TEST(Stages, ErrorsNameTheFileAndLinesAndKeepTheReferenceText) {
  absl::StatusOr<ParseResult> ast = Parse("FROM a\nRUN true\nCOPY \\\n  only-one\n");
  ASSERT_TRUE(ast.ok()) << ast.status();
  absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast);
  ASSERT_FALSE(staged.ok());
  const std::string reference =
      "COPY requires at least two arguments, but only one was provided. Destination could not "
      "be determined";
  EXPECT_EQ(staged.status().message(), "Dockerfile:3-4: " + reference);
  EXPECT_EQ(ReferenceMessage(staged.status()), reference);
  EXPECT_EQ(ErrorRange(staged.status()), (SourceRange{3, 4}));
}

TEST(Stages, FileWithOnlyArgsHasNoStages) {
  absl::StatusOr<ParseResult> ast = Parse("ARG A=1\n");
  ASSERT_TRUE(ast.ok()) << ast.status();
  absl::StatusOr<StagedDockerfile> staged = ParseStages(*ast);
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_THAT(staged->stages, IsEmpty());
  EXPECT_EQ(staged->meta_args.size(), 1u);
}

}  // namespace
}  // namespace stagefarm::dockerfile

namespace stagefarm::dockerfile {
namespace {

TEST(MountFromField, ReadsTheRawFromFieldLastOneWinning) {
  EXPECT_EQ(*MountFromField("type=bind,from=builder,target=/src"), "builder");
  EXPECT_EQ(*MountFromField("FROM=a,\"from=b,c\""), "b,c");
  EXPECT_EQ(*MountFromField("type=cache,target=/c"), "");
  absl::StatusOr<std::string> bad = MountFromField("from=\"unterminated");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::HasSubstr("failed to parse csv mounts"));
}

}  // namespace
}  // namespace stagefarm::dockerfile

// Runs the real `stagefarm` binary the way a user does and checks its output
// and exit codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/corpus.h"
#include "tests/testing/shell.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

using testing::Invocation;

// Runs `BINARY ARGS` through the shell with `env` ("NAME=value ...")
// prepended, stdout and stderr together; ARGS must be quoted by the caller
// and may end with redirections of their own, which apply last.
Invocation RunBinary(const std::string& binary, const std::string& args,
                     const std::string& env = "") {
  return testing::RunShell(absl::StrCat(env, env.empty() ? "" : " ", binary, " 2>&1 ", args));
}

// A daemon run with --check: it checks and reports its flags, then exits
// instead of serving.
Invocation RunDaemon(const std::string& binary, const std::string& args,
                     const std::string& env = "") {
  return RunBinary(binary, "--check " + args, env);
}

Invocation Stagefarm(const std::string& args, const std::string& env = "") {
  return RunBinary(STAGEFARM_BINARY, args, env);
}

const std::string kExamples = std::string(STAGEFARM_SOURCE_DIR) + "/examples";

// Every test's files go under a temp dir of its own, removed when the test
// ends, whether it passed or failed.
class StagefarmCli : public ::testing::Test {
 protected:
  // A fresh, empty directory for the test (emptied again on each call).
  std::filesystem::path TestDir() {
    const auto dir = temp_.path() / "test";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
  }

 private:
  testing::TempDir temp_{"stagefarm_cli_test"};
};

class StagefarmDaemons : public StagefarmCli {};

TEST_F(StagefarmCli, DumpMatchesTheReferenceResultFile) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto tc = dir / "buildkit-parser/testfiles/lk4d4-the-edge-case-generator";
  const Invocation run =
      Stagefarm(absl::StrCat("dockerfile parse --dump '", (tc / "Dockerfile").string(), "'"));
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.output, testing::ReadFileOrFail(tc / "result"));
}

TEST_F(StagefarmCli, RejectedFileExitsNonZeroWithFileAndLine) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto file = dir / "buildkit-parser/testfiles-negative/env_no_value/Dockerfile";
  const Invocation run = Stagefarm(absl::StrCat("dockerfile parse --dump '", file.string(), "'"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("env_no_value/Dockerfile:3: ENV must have two arguments"));
}

TEST_F(StagefarmCli, InstructionErrorsNameFileLineAndSuggestAFix) {
  const auto file = TestDir() / "typo.Dockerfile";
  std::ofstream(file) << "FROM a\nCOPY --form=b /x /y\n";
  const Invocation run = Stagefarm(absl::StrCat("dockerfile parse '", file.string(), "'"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output,
              HasSubstr("typo.Dockerfile:2: unknown flag: --form (did you mean from?)"));
}

TEST_F(StagefarmCli, MisspeltFlagIsAUsageErrorWithAHint) {
  const Invocation run = Stagefarm("plan --buidl-arg X=1 '" + kExamples + "/diamond'");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("unknown flag: --buidl-arg (did you mean --build-arg?)"));
}

TEST_F(StagefarmCli, PlanShowsStagesEdgesTargetAndWaves) {
  const Invocation run = Stagefarm("plan --platform linux/amd64 '" + kExamples + "/diamond'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("left (copy-from), right (copy-from)"));
  EXPECT_THAT(run.output, HasSubstr("target: final (#2) for linux/amd64"));
  EXPECT_THAT(run.output, HasSubstr("  1: left, right\n  2: final\n"));
}

TEST_F(StagefarmCli, PlanTargetPrunesAndBuildArgsExpandFrom) {
  const Invocation run = Stagefarm("plan --format json --target left --build-arg BASE=debian:12 '" +
                                   kExamples + "/diamond'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr("\"base\": {\n        \"image\": \"docker.io/library/debian:12\""));
  EXPECT_THAT(run.output, HasSubstr("\"target\": 0"));
  EXPECT_THAT(run.output, HasSubstr("\"needed\": false"));
  EXPECT_THAT(run.output, HasSubstr("\"waves\": [\n    [\n      0\n    ]\n  ]"));
}

TEST_F(StagefarmCli, PlanJsonHasTheIssueShape) {
  const Invocation run =
      Stagefarm("plan --format json --platform linux/arm64 '" + kExamples + "/heredoc-app'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (const char* key : {"\"index\": 1", "\"name\": null", "\"platform\": \"linux/arm64\"",
                          "\"deps\": [\n        0\n      ]", "\"images\": []",
                          "\"instructions\": 5", "\"needed\": true"}) {
    EXPECT_THAT(run.output, HasSubstr(key));
  }
}

TEST_F(StagefarmCli, PlanDotDrawsStagesAndEdges) {
  const Invocation run = Stagefarm("plan --format dot '" + kExamples + "/diamond'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("digraph stages {"));
  EXPECT_THAT(run.output, HasSubstr("s0 -> s2 [label=\"copy-from\"];"));
  EXPECT_THAT(run.output, HasSubstr("s1 -> s2 [label=\"copy-from\"];"));
}

TEST_F(StagefarmCli, PlanWarnsAboutUnusedBuildArgsOnStderr) {
  const Invocation run =
      Stagefarm("plan --build-arg NOPE=1 '" + kExamples + "/diamond' 2>&1 >/dev/null");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output, "[Warning] One or more build-args [NOPE] were not consumed\n");
}

TEST_F(StagefarmCli, PlanBareBuildArgTakesTheEnvironmentValue) {
  const Invocation run =
      Stagefarm("plan --format json --build-arg BASE '" + kExamples + "/diamond'", "BASE=alpine:3");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("docker.io/library/alpine:3"));
}

TEST_F(StagefarmCli, PlanErrorsExitOneWithFileAndLine) {
  const auto file = TestDir() / "cycle.Dockerfile";
  std::ofstream(file) << "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n"
                         "COPY --from=a /y /y\n";
  const Invocation run = Stagefarm("plan -f '" + file.string() + "' .");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output,
              HasSubstr("cycle.Dockerfile:4: circular dependency detected on stage: a"));
  const Invocation bad_format = Stagefarm("plan --format yaml '" + kExamples + "/diamond'");
  EXPECT_EQ(bad_format.exit_code, 2);
  EXPECT_THAT(bad_format.output, HasSubstr("--format must be text, json or dot"));
}

TEST_F(StagefarmCli, EveryExamplePlans) {
  for (const auto& entry : std::filesystem::directory_iterator(kExamples)) {
    const Invocation run = Stagefarm("plan '" + entry.path().string() + "'");
    EXPECT_EQ(run.exit_code, 0) << entry.path() << "\n" << run.output;
  }
}

unsigned ModeOf(const std::filesystem::path& file) {
  struct stat st;
  EXPECT_EQ(::stat(file.c_str(), &st), 0) << file;
  return st.st_mode & 0777;
}

std::string ReadFile(const std::filesystem::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `plan` takes --build-context as `build` does: the directory is read as a
// named context (in the JSON and the cache keys), and bad values are usage
// errors naming the value.
TEST_F(StagefarmCli, PlanReadsNamedContextsAndRejectsBadOnes) {
  const auto dir = TestDir();
  std::filesystem::create_directories(dir / "ctx");
  std::filesystem::create_directories(dir / "lib");
  std::ofstream(dir / "ctx/Dockerfile") << "FROM base\nCOPY --from=lib a.txt /a.txt\n";
  std::ofstream(dir / "lib/a.txt") << "a\n";
  const Invocation run = Stagefarm(
      "plan --format json --build-context lib='" + (dir / "lib").string() +
      "' --build-context base=docker-image://busybox:1.36 '" + (dir / "ctx").string() + "'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("\"context\": \"lib\""));
  EXPECT_THAT(run.output, HasSubstr("docker.io/library/busybox:1.36"));
  EXPECT_THAT(run.output, Not(HasSubstr("no cache keys")));
  const Invocation bad = Stagefarm("plan --build-context lib '" + (dir / "ctx").string() + "'");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("--build-context lib: expected NAME=VALUE"));
}

TEST_F(StagefarmCli, KeysGenerateWritesKeypairWithModesAndPrintsThePublicKey) {
  const auto keys = TestDir() / "new/keys";  // neither directory exists yet
  const Invocation run = Stagefarm(absl::StrCat("keys generate '", keys.string(), "'"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(ModeOf(keys), 0700u);
  EXPECT_EQ(ModeOf(keys / "node.key"), 0600u);
  EXPECT_EQ(ModeOf(keys / "node.pub"), 0644u);
  const std::string public_key = ReadFile(keys / "node.pub");
  ASSERT_EQ(public_key.size(), 41u);  // 40 Z85 characters and a newline
  EXPECT_THAT(run.output, HasSubstr((keys / "node.pub").string()));
  EXPECT_THAT(run.output, EndsWith("\n" + public_key));
}

TEST_F(StagefarmCli, KeysGenerateNamesTheFilesAfterName) {
  const auto keys = TestDir();
  const Invocation run =
      Stagefarm(absl::StrCat("keys generate --name worker1 '", keys.string(), "'"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(std::filesystem::exists(keys / "worker1.key"));
  EXPECT_TRUE(std::filesystem::exists(keys / "worker1.pub"));
  EXPECT_FALSE(std::filesystem::exists(keys / "node.key"));
}

TEST_F(StagefarmCli, KeysGenerateRefusesToOverwriteAKey) {
  const auto keys = TestDir();
  ASSERT_EQ(Stagefarm(absl::StrCat("keys generate '", keys.string(), "'")).exit_code, 0);
  const std::string secret = ReadFile(keys / "node.key");
  const std::string public_key = ReadFile(keys / "node.pub");
  const Invocation again = Stagefarm(absl::StrCat("keys generate '", keys.string(), "'"));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.output, HasSubstr((keys / "node.key").string() + ": already exists"));
  EXPECT_EQ(ReadFile(keys / "node.key"), secret);
  EXPECT_EQ(ReadFile(keys / "node.pub"), public_key);
}

TEST_F(StagefarmCli, KeysGenerateUsageErrorsExitTwoWithAHint) {
  const Invocation no_dir = Stagefarm("keys generate");
  EXPECT_EQ(no_dir.exit_code, 2);
  EXPECT_THAT(no_dir.output, HasSubstr("usage: stagefarm keys generate DIR [--name NAME]"));
  const Invocation no_verb = Stagefarm("keys");
  EXPECT_EQ(no_verb.exit_code, 2);
  EXPECT_THAT(no_verb.output, HasSubstr("usage: stagefarm keys generate"));
  const Invocation bad_flag = Stagefarm("keys generate --nmae x '" + TestDir().string() + "'");
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_THAT(bad_flag.output, HasSubstr("unknown flag: --nmae (did you mean --name?)"));
  const auto dir = TestDir();
  const Invocation bad_name = Stagefarm("keys generate --name ../x '" + dir.string() + "'");
  EXPECT_EQ(bad_name.exit_code, 2);
  EXPECT_THAT(bad_name.output, HasSubstr("must be a plain file name"));
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST_F(StagefarmCli, ImageImportListInspectAndRemoveABusyboxRootfs) {
  const auto dir = TestDir();
  ASSERT_TRUE(testing::MakeBusyboxRootfs(dir / "rootfs").ok());
  const std::string tar = (dir / "rootfs.tar").string();
  ASSERT_EQ(std::system(
                absl::StrCat("tar -C '", (dir / "rootfs").string(), "' -cf '", tar, "' .").c_str()),
            0);
  const std::string env = absl::StrCat("STAGEFARM_HOME='", (dir / "home").string(), "'");
  constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

  const Invocation imported = Stagefarm(
      absl::StrCat("image import --rootfs --change \"ENV ", kPath, "\" '", tar, "' busybox"), env);
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  std::smatch digest;
  ASSERT_TRUE(
      std::regex_match(imported.output, digest,
                       std::regex("(sha256:[0-9a-f]{64})\ndocker.io/library/busybox:latest\n")))
      << imported.output;

  const Invocation listed = Stagefarm("image ls", env);
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr("REFERENCE"));
  EXPECT_THAT(listed.output, HasSubstr(absl::StrCat("docker.io/library/busybox:latest  ",
                                                    digest[1].str().substr(0, 19), "  linux/")));
  const Invocation json = Stagefarm("image ls --format json", env);
  EXPECT_THAT(json.output, HasSubstr(absl::StrCat("\"digest\":\"", digest[1].str(), "\"")));
  EXPECT_THAT(json.output, HasSubstr("\"ref\":\"docker.io/library/busybox:latest\""));
  const Invocation inspected = Stagefarm("image inspect busybox", env);
  EXPECT_EQ(inspected.exit_code, 0) << inspected.output;
  EXPECT_THAT(inspected.output, HasSubstr(absl::StrCat("\"Env\":[\"", kPath, "\"]")));

  const Invocation removed = Stagefarm("image rm busybox", env);
  EXPECT_EQ(removed.exit_code, 0) << removed.output;
  EXPECT_EQ(removed.output, "untagged docker.io/library/busybox:latest\n");
  EXPECT_THAT(Stagefarm("image ls", env).output, Not(HasSubstr("busybox")));
  const Invocation again = Stagefarm("image rm busybox", env);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.output,
              HasSubstr("image \"docker.io/library/busybox:latest\" not found locally"));
}

TEST_F(StagefarmCli, ImageUsageErrorsExitTwo) {
  const auto dir = TestDir();
  const std::string env = absl::StrCat("STAGEFARM_HOME='", dir.string(), "'");
  const Invocation no_verb = Stagefarm("image", env);
  EXPECT_EQ(no_verb.exit_code, 2);
  EXPECT_THAT(no_verb.output, HasSubstr("usage: stagefarm image import|pull|push|export|ls|rm|inspect"));
  const Invocation one_arg = Stagefarm("image import x.tar", env);
  EXPECT_EQ(one_arg.exit_code, 2);
  EXPECT_THAT(one_arg.output, HasSubstr("expected FILE and NAME[:TAG]"));
  const Invocation bad_ref = Stagefarm("image import x.tar Busybox", env);
  EXPECT_EQ(bad_ref.exit_code, 2);
  EXPECT_THAT(bad_ref.output, HasSubstr("invalid reference format"));
  const Invocation bad_format = Stagefarm("image ls --format yaml", env);
  EXPECT_EQ(bad_format.exit_code, 2);
  const Invocation no_name = Stagefarm("image rm", env);
  EXPECT_EQ(no_name.exit_code, 2);
  EXPECT_THAT(no_name.output, HasSubstr("expected at least one NAME"));
}

TEST_F(StagefarmDaemons, WithoutSecurityFlags_RefuseToStartNamingBothWays) {
  for (const char* binary : {STAGEFARM_COORDINATOR_BINARY, STAGEFARM_WORKER_BINARY}) {
    const Invocation run = RunDaemon(binary, "");
    EXPECT_EQ(run.exit_code, 2) << binary;
    EXPECT_THAT(run.output, HasSubstr(": no transport security configured: pass "
                                      "--curve-secret-key"));
    EXPECT_THAT(run.output, HasSubstr("or --insecure"));
    EXPECT_THAT(run.output, Not(HasSubstr("security: ")));
  }
  EXPECT_THAT(RunDaemon(STAGEFARM_WORKER_BINARY, "").output,
              HasSubstr("stagefarm-worker: no transport security configured"));
}

TEST_F(StagefarmDaemons, WithInsecure_StartAndSaySo) {
  const Invocation coordinator = RunDaemon(STAGEFARM_COORDINATOR_BINARY, "--insecure");
  EXPECT_EQ(coordinator.exit_code, 0) << coordinator.output;
  EXPECT_THAT(coordinator.output, HasSubstr("insecure=true"));
  EXPECT_THAT(coordinator.output,
              HasSubstr("stagefarm-coordinator: security: INSECURE (plain TCP, --insecure)"));
  const Invocation worker = RunDaemon(STAGEFARM_WORKER_BINARY, "--insecure --slots 3");
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  EXPECT_THAT(worker.output, HasSubstr("slots=3"));
  EXPECT_THAT(worker.output,
              HasSubstr("stagefarm-worker: security: INSECURE (plain TCP, --insecure)"));
}

// A coordinator keypair and a worker keypair made by `stagefarm keys
// generate` under `dir` (c/coordinator.*, w/worker1.*), both allowed in
// `dir`/allowed.
void MakeClusterKeys(const std::filesystem::path& dir) {
  ASSERT_EQ(
      Stagefarm(absl::StrCat("keys generate --name coordinator '", dir.string(), "/c'")).exit_code,
      0);
  ASSERT_EQ(
      Stagefarm(absl::StrCat("keys generate --name worker1 '", dir.string(), "/w'")).exit_code, 0);
  std::filesystem::create_directories(dir / "allowed");
  std::filesystem::copy_file(dir / "w/worker1.pub", dir / "allowed/worker1.pub");
  std::filesystem::copy_file(dir / "c/coordinator.pub", dir / "allowed/coordinator.pub");
}

// The documented spelling: dashes, values as the next argument or after '='.
TEST_F(StagefarmDaemons, WithKeysFromKeysGenerate_StartWithCurve) {
  const auto dir = TestDir();
  MakeClusterKeys(dir);

  const Invocation coordinator =
      RunDaemon(STAGEFARM_COORDINATOR_BINARY,
                absl::StrCat("--data-dir '", (dir / "data-c").string(), "' --curve-secret-key '",
                             (dir / "c/coordinator.key").string(), "' --authorized-keys='",
                             (dir / "allowed").string(), "'"));
  EXPECT_EQ(coordinator.exit_code, 0) << coordinator.output;
  EXPECT_THAT(coordinator.output, HasSubstr(absl::StrCat("data-dir=", (dir / "data-c").string(),
                                                         " curve-secret-key=")));
  EXPECT_THAT(coordinator.output,
              HasSubstr("stagefarm-coordinator: security: CURVE (2 authorised keys)"));

  const std::string worker_flags =
      absl::StrCat("--listen tcp://worker-1:7701 --data-dir='", (dir / "data-w").string(),
                   "' --curve-secret-key='", (dir / "w/worker1.key").string(),
                   "' --authorized-keys '", (dir / "allowed").string(), "'");
  const Invocation worker =
      RunDaemon(STAGEFARM_WORKER_BINARY, absl::StrCat(worker_flags, " --coordinator-public-key '",
                                                      (dir / "c/coordinator.pub").string(), "'"));
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  EXPECT_THAT(worker.output, HasSubstr(absl::StrCat("listen=tcp://worker-1:7701 data-dir=",
                                                    (dir / "data-w").string(), " ")));
  EXPECT_THAT(worker.output, HasSubstr("stagefarm-worker: security: CURVE (2 authorised keys)"));

  const Invocation no_coordinator_key = RunDaemon(STAGEFARM_WORKER_BINARY, worker_flags);
  EXPECT_EQ(no_coordinator_key.exit_code, 2);
  EXPECT_THAT(no_coordinator_key.output, HasSubstr("--coordinator-public-key is missing"));
}

// Abseil's own spelling, with underscores, keeps working.
TEST_F(StagefarmDaemons, UnderscoreSpellingsStillWork) {
  const auto dir = TestDir();
  MakeClusterKeys(dir);
  const Invocation coordinator =
      RunDaemon(STAGEFARM_COORDINATOR_BINARY,
                absl::StrCat("--data_dir='", (dir / "data").string(), "' --curve_secret_key='",
                             (dir / "c/coordinator.key").string(), "' --authorized_keys='",
                             (dir / "allowed").string(), "'"));
  EXPECT_EQ(coordinator.exit_code, 0) << coordinator.output;
  EXPECT_THAT(coordinator.output, HasSubstr("data-dir=" + (dir / "data").string()));
  EXPECT_THAT(coordinator.output, HasSubstr("security: CURVE (2 authorised keys)"));
}

TEST_F(StagefarmDaemons, WithDashedDataDirAndInsecure_Start) {
  const auto dir = TestDir();
  for (const char* binary : {STAGEFARM_COORDINATOR_BINARY, STAGEFARM_WORKER_BINARY}) {
    const Invocation run =
        RunDaemon(binary, absl::StrCat("--insecure --data-dir '", dir.string(), "/data-1'"));
    EXPECT_EQ(run.exit_code, 0) << binary << ": " << run.output;
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat("data-dir=", dir.string(), "/data-1 ")));
    EXPECT_THAT(run.output, HasSubstr("security: INSECURE (plain TCP, --insecure)"));
  }
}

// What the Ansible roles do: every flag in a flagfile, spelt with dashes.
TEST_F(StagefarmDaemons, FlagfileWithDashedNames_Configures) {
  const auto dir = TestDir();
  MakeClusterKeys(dir);
  std::ofstream(dir / "coordinator.flags")
      << "# stagefarm-coordinator, templated by Ansible\n"
      << "--listen=tcp://0.0.0.0:7700\n"
      << "  --data-dir=" << (dir / "data-c").string() << "\n\n"
      << "--curve-secret-key=" << (dir / "c/coordinator.key").string() << "\n"
      << "--authorized-keys=" << (dir / "allowed").string() << "\n";
  for (const std::string form : {"--flagfile ", "--flagfile=", "-flagfile="}) {
    const Invocation coordinator =
        RunDaemon(STAGEFARM_COORDINATOR_BINARY,
                  absl::StrCat(form, "'", (dir / "coordinator.flags").string(), "'"));
    EXPECT_EQ(coordinator.exit_code, 0) << form << ": " << coordinator.output;
    EXPECT_THAT(coordinator.output, HasSubstr("data-dir=" + (dir / "data-c").string()));
    EXPECT_THAT(coordinator.output,
                HasSubstr("stagefarm-coordinator: security: CURVE (2 authorised keys)"));
  }

  std::ofstream(dir / "worker.flags") << "--coordinator=tcp://coordinator-1:7700\n"
                                      << "--slots=4\n"
                                      << "--insecure\n";
  const Invocation worker = RunDaemon(
      STAGEFARM_WORKER_BINARY,
      absl::StrCat("--data-dir=/srv/w-1 --flagfile='", (dir / "worker.flags").string(), "'"));
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  EXPECT_THAT(worker.output, HasSubstr("coordinator=tcp://coordinator-1:7700 "));
  EXPECT_THAT(worker.output, HasSubstr("data-dir=/srv/w-1 slots=4 "));
  EXPECT_THAT(worker.output, HasSubstr("security: INSECURE"));
}

TEST_F(StagefarmDaemons, MissingFlagfile_ExitsTwoNamingTheFile) {
  const auto missing = TestDir() / "missing.flags";
  for (const std::string program : {"stagefarm-coordinator", "stagefarm-worker"}) {
    const Invocation run = RunDaemon(
        program == "stagefarm-worker" ? STAGEFARM_WORKER_BINARY : STAGEFARM_COORDINATOR_BINARY,
        absl::StrCat("--insecure --flagfile '", missing.string(), "'"));
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_THAT(run.output,
                HasSubstr(absl::StrCat(program, ": cannot read flagfile ", missing.string(),
                                       ": No such file or directory")));
    EXPECT_THAT(run.output, Not(HasSubstr("security: ")));
  }
}

// The --flags named in `text`, as an operator would copy them.
std::vector<std::string> FlagsNamedIn(const std::string& text) {
  const std::regex flag("--[a-z][a-z-]*[a-z]");
  std::vector<std::string> flags;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), flag); it != std::sregex_iterator();
       ++it) {
    flags.push_back(it->str());
  }
  return flags;
}

// An operator types the flags the daemons' messages name, and the daemon
// takes them: it answers about their values, not with an unknown flag.
TEST_F(StagefarmDaemons, FlagsNamedInSecurityErrors_AreAccepted) {
  const auto dir = TestDir();
  MakeClusterKeys(dir);
  for (const char* binary : {STAGEFARM_COORDINATOR_BINARY, STAGEFARM_WORKER_BINARY}) {
    std::string messages = RunDaemon(binary, "").output;
    messages += RunDaemon(binary, absl::StrCat("--curve_secret_key='",
                                               (dir / "w/worker1.key").string(), "'"))
                    .output;
    const std::vector<std::string> flags = FlagsNamedIn(messages);
    EXPECT_THAT(flags, ::testing::Contains("--curve-secret-key")) << messages;
    EXPECT_THAT(flags, ::testing::Contains("--authorized-keys")) << messages;
    EXPECT_THAT(flags, ::testing::Contains("--insecure")) << messages;
    for (const std::string& flag : flags) {
      const std::string value = flag == "--insecure" ? "" : "=/nonexistent/x";
      const Invocation run = RunDaemon(binary, flag + value);
      EXPECT_THAT(run.output, Not(HasSubstr("Unknown command line flag"))) << binary << " " << flag;
      EXPECT_THAT(run.output, HasSubstr("stagefarm-")) << binary << " " << flag;
    }
  }
  EXPECT_THAT(
      FlagsNamedIn(RunDaemon(STAGEFARM_WORKER_BINARY,
                             absl::StrCat("--curve-secret-key='", (dir / "w/worker1.key").string(),
                                          "' --authorized-keys='", (dir / "allowed").string(), "'"))
                       .output),
      ::testing::Contains("--coordinator-public-key"));
}

TEST_F(StagefarmDaemons, HelpShowsTheDashedSpellings) {
  const Invocation coordinator = RunDaemon(STAGEFARM_COORDINATOR_BINARY, "--help");
  EXPECT_THAT(coordinator.output,
              HasSubstr("--data-dir DIR (--curve-secret-key FILE --authorized-keys DIR | "
                        "--insecure) [--flagfile FILE]"));
  EXPECT_THAT(coordinator.output, HasSubstr("Flags are spelt with dashes (--data-dir)"));
  const Invocation worker = RunDaemon(STAGEFARM_WORKER_BINARY, "--help");
  EXPECT_THAT(worker.output, HasSubstr("--coordinator-public-key FILE | --insecure)"));
}

TEST_F(StagefarmDaemons, InsecureWithKeys_IsAUsageError) {
  const auto dir = TestDir();
  ASSERT_EQ(Stagefarm(absl::StrCat("keys generate '", dir.string(), "'")).exit_code, 0);
  const Invocation run =
      RunDaemon(STAGEFARM_COORDINATOR_BINARY,
                absl::StrCat("--insecure --curve_secret_key='", (dir / "node.key").string(), "'"));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output,
              HasSubstr("stagefarm-coordinator: --insecure conflicts with --curve-secret-key"));
}

TEST_F(StagefarmDaemons, SecretKeyReadableByOthers_IsRefusedNamingTheFile) {
  const auto dir = TestDir();
  ASSERT_EQ(Stagefarm(absl::StrCat("keys generate '", dir.string(), "'")).exit_code, 0);
  ASSERT_EQ(::chmod((dir / "node.key").c_str(), 0644), 0);
  const Invocation run = RunDaemon(STAGEFARM_COORDINATOR_BINARY,
                                   absl::StrCat("--curve_secret_key='", (dir / "node.key").string(),
                                                "' --authorized_keys='", dir.string(), "'"));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("node.key: secret key file has mode 0644"));
}

}  // namespace
}  // namespace stagefarm

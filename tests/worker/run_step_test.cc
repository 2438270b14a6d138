// A RUN step end to end under runc: environment and build arguments, user,
// working directory, failure reporting and a heredoc script.
#include "worker/step/run_step.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(StepEnvironmentTest, EnvWinsOverBuildArgsAndPathIsDefaulted) {
  EXPECT_THAT(StepEnvironment({"A=env"}, {{"A", "arg"}, {"B", "arg"}}),
              ElementsAre("A=env", "B=arg", absl::StrCat("PATH=", kDefaultPath)));
  EXPECT_THAT(StepEnvironment({"PATH=/x"}, {}), ElementsAre("PATH=/x"));
}

class RunStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "runc needs root";
    rootfs_ = dir_.path() / "rootfs";
    ASSERT_TRUE(stagefarm::testing::MakeBusyboxRootfs(rootfs_).ok());
    std::ofstream(rootfs_ / "etc/passwd", std::ios::app) << "app:x:1234:2345::/home/app:/bin/sh\n";
    std::ofstream(rootfs_ / "etc/group") << "root:x:0:\nappgrp:x:2345:\nwheel:x:10:app\n";
  }
  absl::StatusOr<RunResult> Run(RunStepInput input) {
    input.rootfs = rootfs_;
    RunStepOptions options;
    options.mounts.cache_root = dir_.path() / "cache";
    options.sandbox.state_dir = dir_.path() / "state";
    options.sandbox.bundle_dir = dir_.path() / absl::StrCat("bundle", ++runs_);
    return RunStep(input, options);
  }
  static dockerfile::CommandLine Shell(std::string line) {
    return dockerfile::CommandLine{{std::move(line)}, {}, true};
  }

  stagefarm::testing::TempDir dir_{"run_step_test"};
  std::filesystem::path rootfs_;
  int runs_ = 0;
};

TEST_F(RunStepTest, EnvironmentUserAndWorkdir) {
  RunStepInput input;
  input.command = Shell("echo $GREETING $VERSION; id -u; id -g; id -G; pwd; echo $PATH");
  input.env = {"GREETING=hello"};
  input.build_args = {{"VERSION", "1.2"}, {"GREETING", "overridden?"}};
  input.user = "app";
  input.workdir = "/srv/app";
  absl::StatusOr<RunResult> result = Run(input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_tail,
            absl::StrCat("hello 1.2\n1234\n2345\n2345 10\n/srv/app\n", kDefaultPath, "\n"));
  EXPECT_TRUE(std::filesystem::is_directory(rootfs_ / "srv/app"));
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "etc/hosts"));  // the mount stub went
}

TEST_F(RunStepTest, FailureNamesTheCommandExitCodeAndOutput) {
  RunStepInput input;
  input.command = Shell("echo about to fail; exit 7");
  absl::StatusOr<RunResult> result = Run(input);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("exit code: 7"));
  EXPECT_THAT(result.status().message(), HasSubstr("about to fail"));
  EXPECT_THAT(result.status().message(), HasSubstr("/bin/sh -c echo about to fail; exit 7"));
}

TEST_F(RunStepTest, UnknownUserIsAnErrorBeforeAnythingRuns) {
  RunStepInput input;
  input.command = Shell("touch /ran");
  input.user = "nobody";
  absl::StatusOr<RunResult> result = Run(input);
  EXPECT_THAT(result.status().message(), HasSubstr("unable to find user nobody"));
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "ran"));
}

// CVE-2024-21626: a cwd of /proc/self/fd/N entered a directory runc had
// leaked. Refused before runc starts, also when a symlink in the root leads
// there; /proc itself stays usable.
TEST_F(RunStepTest, WorkdirInsideProc_IsRefusedNamingIt) {
  std::filesystem::create_symlink("/proc", rootfs_ / "p");
  for (const char* workdir : {"/proc/self/fd/7", "/p/self/fd/7", "/proc/1/cwd"}) {
    RunStepInput input;
    input.command = Shell("touch ran");
    input.workdir = workdir;
    absl::StatusOr<RunResult> result = Run(input);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << workdir;
    EXPECT_THAT(result.status().message(),
                HasSubstr(absl::StrCat("working directory \"", workdir, "\" is inside /proc")));
  }
  RunStepInput proc;
  proc.command = Shell("pwd");
  proc.workdir = "/proc";
  absl::StatusOr<RunResult> result = Run(proc);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_tail, "/proc\n");
}

TEST_F(RunStepTest, HeredocScriptAndCustomShell) {
  RunStepInput input;
  dockerfile::Heredoc script;
  script.name = "EOT";
  script.content = "#!/bin/sh\necho \"from $0\" > /script-ran\n";
  input.command = dockerfile::CommandLine{{"<<EOT"}, {script}, true};
  ASSERT_TRUE(Run(input).ok());
  std::ifstream ran(rootfs_ / "script-ran");
  std::string line;
  std::getline(ran, line);
  EXPECT_EQ(line, "from /dev/pipes/EOT");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "dev/pipes"));

  RunStepInput flags;
  flags.command = Shell("echo \"flags=$-\"");
  flags.shell = {"/bin/sh", "-e", "-c"};
  absl::StatusOr<RunResult> result = Run(flags);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->output_tail, HasSubstr("e"));
}

}  // namespace
}  // namespace stagefarm::worker

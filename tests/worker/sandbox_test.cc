// The sandbox with real runc on a busybox root filesystem made from Debian's
// busybox-static (installed by scripts/lib/setup.sh).
#include "worker/sandbox/sandbox.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "runc needs root";
    rootfs_ = dir_.path() / "rootfs";
    absl::Status made = stagefarm::testing::MakeBusyboxRootfs(rootfs_);
    ASSERT_TRUE(made.ok()) << made;
  }

  // Options with this test's state directory and a fresh bundle directory.
  SandboxOptions Options() {
    SandboxOptions options;
    options.state_dir = dir_.path() / "state";
    options.bundle_dir = dir_.path() / absl::StrCat("bundle", ++runs_);
    return options;
  }
  absl::StatusOr<RunResult> Run(SandboxSpec spec, SandboxOptions options) {
    spec.rootfs = rootfs_;
    if (spec.env.empty()) spec.env = {"PATH=/bin"};
    return RunSandboxed(spec, options);
  }
  absl::StatusOr<RunResult> Run(SandboxSpec spec) { return Run(std::move(spec), Options()); }
  absl::StatusOr<RunResult> Shell(const std::string& script) {
    SandboxSpec spec;
    spec.args = {"/bin/sh", "-c", script};
    return Run(spec);
  }

  stagefarm::testing::TempDir dir_{"sandbox_test"};
  std::filesystem::path rootfs_;
  int runs_ = 0;
};

TEST_F(SandboxTest, RunsAProcessAndReportsOutputAndExitCode) {
  absl::StatusOr<RunResult> result = Shell("echo hello from the sandbox; echo to stderr >&2");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_THAT(result->output_tail, HasSubstr("hello from the sandbox\n"));
  EXPECT_THAT(result->output_tail, HasSubstr("to stderr\n"));

  result = Shell("echo failing; exit 3");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_THAT(result->output_tail, HasSubstr("failing"));
}

TEST_F(SandboxTest, LeavesNoContainerStateBehind) {
  for (const char* script : {"true", "exit 3", "kill -9 $$"}) {
    absl::StatusOr<RunResult> result = Shell(script);
    ASSERT_TRUE(result.ok()) << script << ": " << result.status();
  }
  ASSERT_TRUE(std::filesystem::is_directory(dir_.path() / "state"));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path() / "state"));
}

TEST_F(SandboxTest, EnvironmentWorkingDirectoryAndUser) {
  SandboxSpec spec;
  spec.args = {"/bin/sh", "-c", "echo $GREETING; pwd; id -u; id -g; id -G"};
  spec.env = {"PATH=/bin", "GREETING=hi there"};
  spec.cwd = "/work";
  spec.uid = 1000;
  spec.gid = 1000;
  spec.additional_gids = {1000, 27};
  absl::StatusOr<RunResult> result = Run(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_tail, "hi there\n/work\n1000\n1000\n1000 27\n");
}

TEST_F(SandboxTest, WritesLandInTheRootFilesystem) {
  absl::StatusOr<RunResult> result = Shell("mkdir -p /out && echo made > /out/file");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->exit_code, 0) << result->output_tail;
  std::ifstream in(rootfs_ / "out/file");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "made");
}

TEST_F(SandboxTest, StandardMountsAndDefaultCapabilities) {
  absl::StatusOr<RunResult> result = Shell(
      "grep CapEff /proc/self/status; "
      "test -c /dev/null && echo devnull; "
      "test -d /dev/shm && echo shm; test -d /dev/pts && echo pts; "
      "touch /sys/x 2>/dev/null || echo sys-readonly; "
      "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo proc-sys-readonly; "
      "test -f /etc/resolv.conf && echo resolv; hostname");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->output_tail;
  EXPECT_THAT(result->output_tail, HasSubstr("CapEff:\t00000000a80425fb\n"));
  for (const char* want : {"devnull\n", "shm\n", "pts\n", "sys-readonly\n", "proc-sys-readonly\n",
                           "resolv\n", "stagefarm\n"}) {
    EXPECT_THAT(result->output_tail, HasSubstr(want));
  }
}

TEST_F(SandboxTest, NetworkNoneHasOnlyLoopback) {
  SandboxSpec spec;
  spec.args = {"/bin/sh", "-c", "cat /proc/net/dev"};
  spec.network = NetworkMode::kNone;
  absl::StatusOr<RunResult> isolated = Run(spec);
  ASSERT_TRUE(isolated.ok()) << isolated.status();
  EXPECT_THAT(isolated->output_tail, HasSubstr("lo:"));
  // Two header lines and lo.
  EXPECT_EQ(std::count(isolated->output_tail.begin(), isolated->output_tail.end(), '\n'), 3)
      << isolated->output_tail;

  spec.network = NetworkMode::kHost;
  absl::StatusOr<RunResult> host = Run(spec);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_GT(std::count(host->output_tail.begin(), host->output_tail.end(), '\n'), 3)
      << host->output_tail;
}

TEST_F(SandboxTest, MissingProgramIsAFailedStepWithRuncsMessage) {
  SandboxSpec spec;
  spec.args = {"/bin/does-not-exist"};
  absl::StatusOr<RunResult> result = Run(spec);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("does-not-exist"));
}

TEST_F(SandboxTest, OutputTailKeepsTheEnd) {
  SandboxSpec spec;
  spec.args = {"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"};
  SandboxOptions options = Options();
  options.tail_bytes = 100;
  size_t streamed = 0;
  options.on_output = [&](absl::string_view piece) { streamed += piece.size(); };
  absl::StatusOr<RunResult> result = Run(spec, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_tail.size(), 100u);
  EXPECT_THAT(result->output_tail, HasSubstr("line 1999\n"));
  EXPECT_THAT(result->output_tail, Not(HasSubstr("line 1000\n")));
  EXPECT_GT(streamed, 10000u);
}

// A cancelled run kills the container (here a shell and the sleep it
// started), returns Cancelled soon after, and leaves no state behind.
TEST_F(SandboxTest, CancellingKillsTheContainerAndLeavesNoState) {
  SandboxSpec spec;
  spec.args = {"/bin/sh", "-c", "echo started; sleep 60 & sleep 60"};
  SandboxOptions options = Options();
  std::atomic<bool> cancelled{false};
  options.cancelled = &cancelled;
  // Cancelled once the process has started, as a build's cancel finds it.
  options.on_output = [&](absl::string_view piece) {
    if (absl::StrContains(piece, "started")) cancelled.store(true);
  };
  const absl::Time start = absl::Now();
  absl::StatusOr<RunResult> result = Run(spec, options);
  EXPECT_TRUE(absl::IsCancelled(result.status())) << result.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path() / "state"));
}

}  // namespace
}  // namespace stagefarm::worker

// RUN's process arguments and USER resolution, and one heredoc script run
// for real under runc.
#include "worker/step/run_command.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/temp_dir.h"
#include "worker/sandbox/sandbox.h"

namespace stagefarm::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

dockerfile::CommandLine Shell(std::string line, std::vector<dockerfile::Heredoc> files = {}) {
  return dockerfile::CommandLine{{std::move(line)}, std::move(files), true};
}

dockerfile::Heredoc Doc(std::string name, std::string content, bool chomp = false) {
  dockerfile::Heredoc heredoc;
  heredoc.name = std::move(name);
  heredoc.content = std::move(content);
  heredoc.chomp = chomp;
  return heredoc;
}

TEST(BuildRunCommandTest, ExecAndShellForms) {
  absl::StatusOr<RunCommand> exec =
      BuildRunCommand({{"/bin/echo", "a b"}, {}, false}, DefaultShell());
  EXPECT_THAT(exec->args, ElementsAre("/bin/echo", "a b"));
  absl::StatusOr<RunCommand> shell = BuildRunCommand(Shell("echo $HOME && ls"), DefaultShell());
  EXPECT_THAT(shell->args, ElementsAre("/bin/sh", "-c", "echo $HOME && ls"));
  absl::StatusOr<RunCommand> custom =
      BuildRunCommand(Shell("echo hi"), {"/bin/bash", "-e", "-c"});
  EXPECT_THAT(custom->args, ElementsAre("/bin/bash", "-e", "-c", "echo hi"));
}

TEST(BuildRunCommandTest, HeredocForms) {
  // The line is one heredoc: its body goes to the shell.
  absl::StatusOr<RunCommand> body =
      BuildRunCommand(Shell("<<EOF", {Doc("EOF", "echo one\necho two\n")}), DefaultShell());
  EXPECT_THAT(body->args, ElementsAre("/bin/sh", "-c", "echo one\necho two\n"));
  EXPECT_FALSE(body->script);
  // `<<-` loses leading tabs.
  absl::StatusOr<RunCommand> chomped =
      BuildRunCommand(Shell("<<-EOF", {Doc("EOF", "\techo one\n\t\techo two\n", true)}),
                      DefaultShell());
  EXPECT_THAT(chomped->args, ElementsAre("/bin/sh", "-c", "echo one\necho two\n"));
  // A shebang body is a script of its own.
  absl::StatusOr<RunCommand> script =
      BuildRunCommand(Shell("<<EOT", {Doc("EOT", "#!/bin/sh\necho from script\n")}),
                      DefaultShell());
  EXPECT_THAT(script->args, ElementsAre("/dev/pipes/EOT"));
  ASSERT_TRUE(script->script);
  EXPECT_EQ(script->script->content, "#!/bin/sh\necho from script\n");
  // Heredocs inside a longer line: the line, then each body and delimiter.
  absl::StatusOr<RunCommand> inline_doc = BuildRunCommand(
      Shell("cat <<EOF > /out", {Doc("EOF", "text\n")}), DefaultShell());
  EXPECT_THAT(inline_doc->args, ElementsAre("/bin/sh", "-c", "cat <<EOF > /out\ntext\nEOF"));
}

class ResolveExecUserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "etc");
    std::ofstream(dir_.path() / "etc/passwd")
        << "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n"
           "daemon:x:1:1::/:/bin/false\n";
    std::ofstream(dir_.path() / "etc/group")
        << "root:x:0:\ndaemon:x:1:\nappgrp:x:2345:\nextra:x:3456:app,daemon\nwheel:x:10:app\n";
  }
  absl::StatusOr<ExecUser> Resolve(absl::string_view spec) {
    return ResolveExecUser(*fs::RootDir::Open(dir_.path()), spec);
  }
  stagefarm::testing::TempDir dir_{"run_command_test"};
};

TEST_F(ResolveExecUserTest, AsRuncResolvesIt) {
  EXPECT_EQ(Resolve("")->uid, 0u);
  EXPECT_THAT(Resolve("")->additional_gids, ElementsAre(0u));  // no group lists root here
  absl::StatusOr<ExecUser> app = Resolve("app");
  EXPECT_EQ(app->uid, 1234u);
  EXPECT_EQ(app->gid, 2345u);
  // The primary gid first, then the groups listing the user.
  EXPECT_THAT(app->additional_gids, ElementsAre(2345u, 3456u, 10u));
  absl::StatusOr<ExecUser> by_number = Resolve("1234");
  EXPECT_EQ(by_number->gid, 2345u);
  EXPECT_THAT(by_number->additional_gids, ElementsAre(2345u, 3456u, 10u));
  absl::StatusOr<ExecUser> explicit_group = Resolve("app:extra");
  EXPECT_EQ(explicit_group->gid, 3456u);
  EXPECT_THAT(explicit_group->additional_gids, ElementsAre(3456u));
  absl::StatusOr<ExecUser> unknown_number = Resolve("4242:4343");
  EXPECT_EQ(unknown_number->uid, 4242u);
  EXPECT_EQ(unknown_number->gid, 4343u);
  EXPECT_THAT(unknown_number->additional_gids, ElementsAre(4343u));
  EXPECT_EQ(Resolve("4242")->gid, 0u);
  EXPECT_EQ(Resolve("app:")->gid, 2345u);
  EXPECT_THAT(Resolve("nobody").status().message(), HasSubstr("unable to find user nobody"));
  EXPECT_THAT(Resolve("app:nogroup").status().message(),
              HasSubstr("unable to find group nogroup"));
}

TEST(RunCommandSandboxTest, ShebangHeredocRunsAsAScriptUnderRunc) {
  ASSERT_EQ(geteuid(), 0u) << "runc needs root";
  stagefarm::testing::TempDir dir("run_command_sandbox");
  const std::filesystem::path rootfs = dir.path() / "rootfs";
  ASSERT_TRUE(stagefarm::testing::MakeBusyboxRootfs(rootfs).ok());
  absl::StatusOr<RunCommand> command = BuildRunCommand(
      Shell("<<EOT", {Doc("EOT", "#!/bin/sh\necho \"script as $0\"\n")}), DefaultShell());
  ASSERT_TRUE(command.ok() && command->script);
  const std::filesystem::path pipes = dir.path() / "pipes";
  std::filesystem::create_directories(pipes);
  std::ofstream(pipes / command->script->name) << command->script->content;
  std::filesystem::permissions(pipes / command->script->name,
                               std::filesystem::perms(0755));
  SandboxSpec spec;
  spec.rootfs = rootfs;
  spec.args = command->args;
  spec.env = {"PATH=/bin"};
  spec.mounts.push_back({std::string(kInlineScriptDir), "bind", pipes.string(), {"rbind", "ro"}});
  SandboxOptions options;
  options.state_dir = dir.path() / "state";
  options.bundle_dir = dir.path() / "bundle";
  absl::StatusOr<RunResult> result = RunSandboxed(spec, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->output_tail;
  EXPECT_EQ(result->output_tail, "script as /dev/pipes/EOT\n");
}

}  // namespace
}  // namespace stagefarm::worker

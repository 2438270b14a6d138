// NormalizeDaemonArgs against flags registered here, with real flagfiles in a
// temp directory.
#include "common/daemon/daemon_args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(std::string, test_data_dir, "", "A string flag, as --data-dir is");
ABSL_FLAG(std::string, test_listen, "", "A string flag, as --listen is");
ABSL_FLAG(int, test_slots, 0, "An int flag, as --slots is");
ABSL_FLAG(bool, test_insecure, false, "A boolean flag, as --insecure is");

namespace stagefarm::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Args = std::vector<std::string>;

std::string WriteFile(const std::filesystem::path& file, const std::string& text) {
  std::ofstream(file) << text;
  return file.string();
}

TEST(NormalizeFlagName, TurnsDashesInTheNameIntoUnderscores) {
  EXPECT_EQ(NormalizeFlagName("--data-dir"), "--data_dir");
  EXPECT_EQ(NormalizeFlagName("--curve-secret-key=/k-1/node.key"),
            "--curve_secret_key=/k-1/node.key");
  EXPECT_EQ(NormalizeFlagName("-authorized-keys=a-b"), "-authorized_keys=a-b");
  EXPECT_EQ(NormalizeFlagName("--data_dir=x-y"), "--data_dir=x-y");
}

TEST(NormalizeFlagName, LeavesPositionalsAndNonFlagsAlone) {
  for (const char* arg : {"tcp://a-b:1", "a-b", "-", "--", "---data-dir", "--=a-b", ""}) {
    EXPECT_EQ(NormalizeFlagName(arg), arg);
  }
}

TEST(NormalizeFlagName, DashedNegationOfABooleanBecomesAbseilsNoPrefix) {
  EXPECT_EQ(NormalizeFlagName("--no-test-insecure"), "--notest_insecure");
  // Not a boolean, or not a flag at all: only the dashes change.
  EXPECT_EQ(NormalizeFlagName("--no-test-listen"), "--no_test_listen");
  EXPECT_EQ(NormalizeFlagName("--no-such-flag"), "--no_such_flag");
}

TEST(NormalizeDaemonArgs, NormalisesFlagsButNotTheProgramOrPositionals) {
  const auto args = NormalizeDaemonArgs(
      {"-my-daemon", "--test-data-dir=/a-b", "pos-1", "-test-insecure", "--test_slots=3"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, ElementsAre("-my-daemon", "--test_data_dir=/a-b", "pos-1", "-test_insecure",
                                 "--test_slots=3"));
}

TEST(NormalizeDaemonArgs, ValueGivenAsTheNextArgumentIsKept) {
  const auto args = NormalizeDaemonArgs({"prog", "--test-listen", "tcp://a-b:1", "--test-data-dir",
                                         "-odd-dir", "--test-insecure", "-x-y"});
  ASSERT_TRUE(args.ok()) << args.status();
  // A boolean takes no value, so the argument after it is a flag of its own.
  EXPECT_THAT(*args, ElementsAre("prog", "--test_listen", "tcp://a-b:1", "--test_data_dir",
                                 "-odd-dir", "--test_insecure", "-x_y"));
}

TEST(NormalizeDaemonArgs, NothingAfterABareDoubleDashChanges) {
  const auto args =
      NormalizeDaemonArgs({"prog", "--test-insecure", "--", "--test-data-dir", "--flagfile=nope"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args,
              ElementsAre("prog", "--test_insecure", "--", "--test-data-dir", "--flagfile=nope"));
}

TEST(NormalizeDaemonArgs, FlagfileLinesAreNormalisedAndSplicedInPlace) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  const std::string flags = WriteFile(dir / "daemon.flags",
                                      "# written by Ansible\n"
                                      "\n"
                                      "   --test-data-dir=/srv/a-b  \n"
                                      "\t# indented comment\n"
                                      "--test-listen=tcp://a-b:1\n"
                                      "-test-insecure\n"
                                      "--test_slots=4");  // no final newline
  const Args expanded = {"--test_data_dir=/srv/a-b", "--test_listen=tcp://a-b:1", "-test_insecure",
                         "--test_slots=4"};
  for (const Args& form :
       {Args{"--flagfile=" + flags}, Args{"--flagfile", flags}, Args{"-flagfile=" + flags}}) {
    Args args = {"prog", "--test-slots=1"};
    args.insert(args.end(), form.begin(), form.end());
    args.push_back("--test-listen=last");
    const auto result = NormalizeDaemonArgs(args);
    ASSERT_TRUE(result.ok()) << result.status();
    Args want = {"prog", "--test_slots=1"};
    want.insert(want.end(), expanded.begin(), expanded.end());
    want.push_back("--test_listen=last");
    EXPECT_EQ(*result, want) << form[0];
  }
}

TEST(NormalizeDaemonArgs, NestedAndCommaSeparatedFlagfilesAreExpandedInOrder) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  const std::string inner = WriteFile(dir / "inner.flags", "--test-slots=2\n");
  const std::string other = WriteFile(dir / "other.flags", "--test-insecure\n");
  const std::string outer = WriteFile(
      dir / "outer.flags",
      absl::StrCat("--test-data-dir=/d\n--flagfile=", inner, "\n--test-listen=tcp://x:1\n"));
  const auto args = NormalizeDaemonArgs({"prog", absl::StrCat("--flagfile=", outer, ",", other)});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, ElementsAre("prog", "--test_data_dir=/d", "--test_slots=2",
                                 "--test_listen=tcp://x:1", "--test_insecure"));
}

TEST(NormalizeDaemonArgs, MissingFlagfileIsNotFoundNamingTheFile) {
  const testing::TempDir temp("daemon_args_test");
  const std::string missing = (temp.path() / "missing.flags").string();
  const auto args = NormalizeDaemonArgs({"prog", "--flagfile", missing});
  EXPECT_EQ(args.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(args.status().message(),
              HasSubstr("cannot read flagfile " + missing + ": No such file or directory"));
}

TEST(NormalizeDaemonArgs, MissingFlagfileInsideAFlagfileNamesTheMissingOne) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  const std::string flags =
      WriteFile(dir / "a.flags", absl::StrCat("--flagfile=", (dir / "gone.flags").string(), "\n"));
  const auto args = NormalizeDaemonArgs({"prog", "--flagfile=" + flags});
  EXPECT_EQ(args.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(args.status().message(), HasSubstr((dir / "gone.flags").string()));
}

TEST(NormalizeDaemonArgs, DirectoryAsFlagfileIsAnErrorNamingIt) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  const auto args = NormalizeDaemonArgs({"prog", "--flagfile=" + dir.string()});
  EXPECT_EQ(args.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(args.status().message(),
              HasSubstr("cannot read flagfile " + dir.string() + ": Is a directory"));
}

TEST(NormalizeDaemonArgs, FlagfileCycleIsRefusedShowingTheChain) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  const std::string a = (dir / "a.flags").string();
  const std::string b = (dir / "b.flags").string();
  WriteFile(a, "--flagfile=" + b + "\n");
  WriteFile(b, "--test-insecure\n--flagfile=" + a + "\n");
  const auto args = NormalizeDaemonArgs({"prog", "--flagfile=" + a});
  EXPECT_EQ(args.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(args.status().message(),
              HasSubstr(absl::StrCat("flagfile cycle: ", a, " -> ", b, " -> ", a)));

  const std::string self =
      WriteFile(dir / "self.flags", "--flagfile=" + (dir / "self.flags").string());
  EXPECT_THAT(NormalizeDaemonArgs({"prog", "--flagfile=" + self}).status().message(),
              HasSubstr("flagfile cycle: " + self + " -> " + self));
}

TEST(NormalizeDaemonArgs, FlagfilesNestedTooDeeplyAreRefused) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  // f0 includes f1 ... includes f<kMaxFlagfileDepth>: one level too many.
  for (int i = 0; i < kMaxFlagfileDepth; ++i) {
    WriteFile(dir / absl::StrCat("f", i), absl::StrCat("--flagfile=", (dir / "f").string(), i + 1));
  }
  WriteFile(dir / absl::StrCat("f", kMaxFlagfileDepth), "--test-insecure\n");
  const auto too_deep = NormalizeDaemonArgs({"prog", "--flagfile=" + (dir / "f0").string()});
  EXPECT_EQ(too_deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_deep.status().message(),
              HasSubstr(absl::StrCat("flagfiles nested more than ", kMaxFlagfileDepth, " deep")));

  const auto deepest_allowed = NormalizeDaemonArgs({"prog", "--flagfile=" + (dir / "f1").string()});
  ASSERT_TRUE(deepest_allowed.ok()) << deepest_allowed.status();
  EXPECT_THAT(*deepest_allowed, ElementsAre("prog", "--test_insecure"));
}

TEST(NormalizeDaemonArgs, BadFlagfileLinesAreRefusedWithFileAndLine) {
  const testing::TempDir temp("daemon_args_test");
  const auto& dir = temp.path();
  struct Case {
    std::string text;
    std::string error;
  };
  for (const Case& c : {
           Case{"--test-insecure\nlisten=tcp://x:1\n",
                ":2: expected --flag or --flag=value, got "
                "\"listen=tcp://x:1\""},
           Case{"# c\n--\n", ":2: expected --flag or --flag=value, got \"--\""},
           Case{"--test-listen tcp://x:1\n", ":1: expected"},
           Case{"--test-listen\n",
                ":1: --test-listen needs a value on the same line: "
                "--test-listen=VALUE"},
           Case{"--flagfile\n", ":1: --flagfile needs its file on the same line"},
       }) {
    const std::string flags = WriteFile(dir / "bad.flags", c.text);
    const auto args = NormalizeDaemonArgs({"prog", "--flagfile=" + flags});
    EXPECT_EQ(args.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(args.status().message(), HasSubstr(flags + c.error)) << c.text;
  }
}

TEST(NormalizeDaemonArgs, FlagfileWithoutAFileIsRefused) {
  for (const Args& args : {Args{"prog", "--flagfile"}, Args{"prog", "--flagfile="}}) {
    const auto result = NormalizeDaemonArgs(args);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(result.status().message(), HasSubstr("--flagfile needs a file name"));
  }
}

TEST(ParseDaemonCommandLine, SetsFlagsSpeltEitherWayIncludingFromAFlagfile) {
  const testing::TempDir temp("daemon_args_test");
  const std::string flags =
      WriteFile(temp.path() / "daemon.flags", "--test-data-dir=/srv/a-b\n--test-insecure\n");
  std::vector<std::string> storage = {"prog",           "--test-listen", "tcp://a-b:1",
                                      "--test_slots=5", "--flagfile",    flags};
  std::vector<char*> argv;
  for (std::string& arg : storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  ASSERT_TRUE(ParseDaemonCommandLine(static_cast<int>(storage.size()), argv.data()).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_listen), "tcp://a-b:1");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_slots), 5);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_data_dir), "/srv/a-b");
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_insecure));
}

TEST(ParseDaemonCommandLine, FlagfileErrorComesBackBeforeAnyFlagIsSet) {
  const int slots = absl::GetFlag(FLAGS_test_slots);
  std::vector<std::string> storage = {"prog", absl::StrCat("--test-slots=", slots + 1),
                                      "--flagfile=/nonexistent/x.flags"};
  std::vector<char*> argv;
  for (std::string& arg : storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const absl::Status status = ParseDaemonCommandLine(static_cast<int>(storage.size()), argv.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("/nonexistent/x.flags"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_slots), slots);
}

}  // namespace
}  // namespace stagefarm::daemon

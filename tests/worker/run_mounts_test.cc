// RUN --mount with real runc (fidelity case 11-run-mounts as filesystem
// checks): only what the command copies out of a mount stays in the root.
#include "worker/sandbox/run_mounts.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/dockerfile/run_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RunMountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "runc needs root";
    rootfs_ = dir_.path() / "rootfs";
    ASSERT_TRUE(stagefarm::testing::MakeBusyboxRootfs(rootfs_).ok());
    context_ = dir_.path() / "context";
    assets_ = dir_.path() / "assets-stage";
    std::filesystem::create_directories(context_);
    std::filesystem::create_directories(assets_ / "assets/sub");
    std::ofstream(context_ / "ctxfile.txt") << "from the context\n";
    std::ofstream(assets_ / "assets/one.txt") << "asset-one\n";
    std::ofstream(assets_ / "assets/sub/two.txt") << "asset-two\n";
    sources_.root_of = [this](absl::string_view from) -> absl::StatusOr<std::filesystem::path> {
      if (from.empty()) return context_;
      if (from == "assets") return assets_;
      return absl::NotFoundError(absl::StrCat("no stage ", from));
    };
    sources_.cache_root = dir_.path() / "cache-mounts";
    sources_.scratch = dir_.path() / "scratch";
  }

  // Parses `--mount` values and runs `script` with them, then removes stubs.
  RunResult Run(std::vector<std::string> specs, const std::string& script) {
    std::vector<dockerfile::Mount> mounts;
    for (const std::string& spec : specs) {
      absl::StatusOr<dockerfile::Mount> mount = dockerfile::ParseMount(
          spec, [](absl::string_view word) -> absl::StatusOr<std::string> {
            return std::string(word);
          });
      EXPECT_TRUE(mount.ok()) << mount.status();
      mounts.push_back(*mount);
    }
    absl::StatusOr<PreparedMounts> prepared = PrepareRunMounts(mounts, sources_, rootfs_, "/");
    EXPECT_TRUE(prepared.ok()) << prepared.status();
    if (!prepared.ok()) return {};
    SandboxSpec spec;
    spec.rootfs = rootfs_;
    spec.args = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/bin"};
    spec.mounts = prepared->mounts();
    SandboxOptions options;
    options.state_dir = dir_.path() / "state";
    options.bundle_dir = dir_.path() / absl::StrCat("bundle", ++runs_);
    absl::StatusOr<RunResult> result = RunSandboxed(spec, options);
    EXPECT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(prepared->RemoveStubs().ok());
    return result.ok() ? *result : RunResult{};
  }

  stagefarm::testing::TempDir dir_{"run_mounts_test"};
  std::filesystem::path rootfs_, context_, assets_;
  MountSources sources_;
  int runs_ = 0;
};

TEST_F(RunMountsTest, BindFromAStageIsReadOnlyAndLeavesNoMountPoint) {
  RunResult result = Run({"type=bind,from=assets,source=/assets,target=/srcassets"},
                         "cp -R /srcassets /copied-assets && ls /srcassets > /bind-listing.txt"
                         " && touch /srcassets/x 2>/dev/null || echo read-only");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_THAT(result.output_tail, HasSubstr("read-only"));
  EXPECT_EQ(ReadFile(rootfs_ / "copied-assets/sub/two.txt"), "asset-two\n");
  EXPECT_EQ(ReadFile(rootfs_ / "bind-listing.txt"), "one.txt\nsub\n");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "srcassets"));
  EXPECT_FALSE(std::filesystem::exists(assets_ / "assets/x"));
}

TEST_F(RunMountsTest, RwBindWritesAreDiscarded) {
  RunResult result = Run({"type=bind,from=assets,source=/assets,target=/w,rw"},
                         "echo changed > /w/one.txt && cat /w/one.txt");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_EQ(result.output_tail, "changed\n");
  EXPECT_EQ(ReadFile(assets_ / "assets/one.txt"), "asset-one\n");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "w"));
}

TEST_F(RunMountsTest, CacheKeepsItsContentAcrossStepsButNotInTheImage) {
  RunResult first = Run({"type=cache,target=/var/fidcache,id=fid-run-mounts"},
                        "echo cached > /var/fidcache/data && cat /var/fidcache/data > "
                        "/from-cache.txt");
  EXPECT_EQ(first.exit_code, 0) << first.output_tail;
  EXPECT_EQ(ReadFile(rootfs_ / "from-cache.txt"), "cached\n");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "var/fidcache"));
  // The next step (same id, another target) sees what the first one left.
  RunResult second =
      Run({"type=cache,target=/elsewhere,id=fid-run-mounts"}, "cat /elsewhere/data");
  EXPECT_EQ(second.output_tail, "cached\n");
}

TEST_F(RunMountsTest, CacheOwnerAndModeApplyWhenMade) {
  RunResult result = Run({"type=cache,target=/c,uid=1000,gid=1001,mode=0700"},
                         "stat -c '%u:%g %a' /c");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_EQ(result.output_tail, "1000:1001 700\n");
}

TEST_F(RunMountsTest, TmpfsContentIsNotKept) {
  RunResult result = Run({"type=tmpfs,target=/scratch"},
                         "echo temp > /scratch/t && cat /scratch/t > /from-tmpfs.txt");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_EQ(ReadFile(rootfs_ / "from-tmpfs.txt"), "temp\n");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "scratch"));
}

TEST_F(RunMountsTest, BindOfOneContextFile) {
  RunResult result = Run({"type=bind,source=ctxfile.txt,target=/ctxfile.txt"},
                         "cat /ctxfile.txt > /from-context.txt");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_EQ(ReadFile(rootfs_ / "from-context.txt"), "from the context\n");
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "ctxfile.txt"));
}

TEST_F(RunMountsTest, StubParentsGoButWhatTheStepWroteStays) {
  RunResult result = Run({"type=tmpfs,target=/new/deep/mnt"}, "mkdir -p /new/kept");
  EXPECT_EQ(result.exit_code, 0) << result.output_tail;
  EXPECT_FALSE(std::filesystem::exists(rootfs_ / "new/deep"));
  EXPECT_TRUE(std::filesystem::is_directory(rootfs_ / "new/kept"));
}

TEST_F(RunMountsTest, BindSourceOutsideTheStageRootStaysInside) {
  std::filesystem::create_symlink("/etc", assets_ / "hostetc");
  std::vector<dockerfile::Mount> mounts = {*dockerfile::ParseMount(
      "type=bind,from=assets,source=hostetc/shadow,target=/s",
      [](absl::string_view word) -> absl::StatusOr<std::string> { return std::string(word); })};
  absl::StatusOr<PreparedMounts> prepared = PrepareRunMounts(mounts, sources_, rootfs_, "/");
  ASSERT_FALSE(prepared.ok());
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(prepared.status().message(), HasSubstr("target=/s"));
}

}  // namespace
}  // namespace stagefarm::worker

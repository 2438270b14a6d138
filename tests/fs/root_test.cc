#include "common/fs/root.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::fs {
namespace {

using ::testing::HasSubstr;
namespace stdfs = std::filesystem;

void WriteFile(const stdfs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

std::string ReadFile(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The root sits one level below the test's directory, so that "outside"
// (a sibling) is a real place an escape would reach.
class RootDirTest : public ::testing::Test {
 protected:
  RootDirTest() : dir_("root_test") {
    stdfs::create_directory(root_path());
    stdfs::create_directory(outside_path());
    WriteFile(outside_path() / "secret", "outside");
  }
  stdfs::path root_path() const { return dir_.path() / "root"; }
  stdfs::path outside_path() const { return dir_.path() / "outside"; }
  RootDir OpenRoot() const {
    absl::StatusOr<RootDir> root = RootDir::Open(root_path());
    EXPECT_TRUE(root.ok()) << root.status();
    return *std::move(root);
  }

  testing::TempDir dir_;
};

TEST_F(RootDirTest, Open_MissingDirectoryIsNotFound) {
  absl::StatusOr<RootDir> root = RootDir::Open(dir_.path() / "missing");
  EXPECT_TRUE(absl::IsNotFound(root.status())) << root.status();
  EXPECT_THAT(root.status().message(), HasSubstr("missing"));
}

TEST_F(RootDirTest, Open_FileIsFailedPrecondition) {
  absl::StatusOr<RootDir> root = RootDir::Open(outside_path() / "secret");
  EXPECT_TRUE(absl::IsFailedPrecondition(root.status())) << root.status();
}

TEST_F(RootDirTest, OpenAt_AbsoluteSymlinkIsClampedToTheRoot) {
  stdfs::create_directory(root_path() / "etc");
  WriteFile(root_path() / "etc" / "passwd", "inside");
  stdfs::create_symlink("/", root_path() / "evil");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.OpenAt("evil/etc/passwd", O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  char buffer[16] = {};
  ASSERT_EQ(read(fd->get(), buffer, sizeof(buffer)), 6);
  EXPECT_EQ(std::string(buffer), "inside");
}

TEST_F(RootDirTest, OpenAt_DotDotAboveTheRootStaysAtTheRoot) {
  WriteFile(root_path() / "secret", "inside");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.OpenAt("../../../secret", O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  char buffer[16] = {};
  ASSERT_EQ(read(fd->get(), buffer, sizeof(buffer)), 6);
  EXPECT_EQ(std::string(buffer), "inside");
}

TEST_F(RootDirTest, OpenAt_RelativeSymlinkChainCannotClimbOut) {
  stdfs::create_directories(root_path() / "a" / "b");
  stdfs::create_symlink("../../../../..", root_path() / "a" / "b" / "up");
  stdfs::create_symlink("a/b/up/outside", root_path() / "hop");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.OpenAt("hop/secret", O_RDONLY);
  EXPECT_TRUE(absl::IsNotFound(fd.status())) << fd.status();
  EXPECT_THAT(fd.status().message(), HasSubstr("\"hop/secret\": open"));
}

TEST_F(RootDirTest, OpenAt_CreatesThroughSymlinkInsideTheRoot) {
  stdfs::create_symlink("/", root_path() / "evil");
  stdfs::create_directory(root_path() / "tmp");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.OpenAt("evil/tmp/made", O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(stdfs::exists(root_path() / "tmp" / "made"));
}

TEST_F(RootDirTest, MkdirAll_MakesEveryMissingElement) {
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.MkdirAll("a/b/c", 0755);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(stdfs::is_directory(root_path() / "a" / "b" / "c"));
  // And again: existing directories are used as they are.
  EXPECT_TRUE(root.MkdirAll("/a/b/c/", 0755).ok());
}

TEST_F(RootDirTest, MkdirAll_ThroughEscapingSymlinkStaysInside) {
  stdfs::create_symlink("../../..", root_path() / "up");
  const RootDir root = OpenRoot();
  ASSERT_TRUE(root.MkdirAll("up/made/deeper", 0755).ok());
  EXPECT_TRUE(stdfs::is_directory(root_path() / "made" / "deeper"));
  EXPECT_FALSE(stdfs::exists(dir_.path() / "made"));
  EXPECT_FALSE(stdfs::exists(dir_.path().parent_path() / "made"));
}

TEST_F(RootDirTest, MkdirAll_FileInTheWayIsFailedPrecondition) {
  WriteFile(root_path() / "file", "x");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.MkdirAll("file/sub", 0755);
  EXPECT_TRUE(absl::IsFailedPrecondition(fd.status())) << fd.status();
  EXPECT_THAT(fd.status().message(), HasSubstr("file/sub"));
}

TEST_F(RootDirTest, MkdirAll_DanglingSymlinkIsFailedPrecondition) {
  stdfs::create_symlink("nowhere", root_path() / "dangling");
  const RootDir root = OpenRoot();
  absl::StatusOr<UniqueFd> fd = root.MkdirAll("dangling/sub", 0755);
  EXPECT_TRUE(absl::IsFailedPrecondition(fd.status())) << fd.status();
  EXPECT_THAT(fd.status().message(), HasSubstr("\"dangling\""));
  EXPECT_FALSE(stdfs::exists(root_path() / "nowhere"));
}

TEST_F(RootDirTest, OpenParent_DoesNotFollowTheFinalSymlink) {
  stdfs::create_symlink(outside_path() / "secret", root_path() / "link");
  const RootDir root = OpenRoot();
  absl::StatusOr<RootDir::Parent> parent = root.OpenParent("link");
  ASSERT_TRUE(parent.ok()) << parent.status();
  EXPECT_EQ(parent->name, "link");
  ASSERT_EQ(unlinkat(parent->dir.get(), parent->name.c_str(), 0), 0);
  EXPECT_FALSE(stdfs::is_symlink(root_path() / "link"));
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
}

TEST_F(RootDirTest, OpenParent_RejectsPathsThatNameNoEntry) {
  const RootDir root = OpenRoot();
  for (const char* path : {"", "/", ".", "a/..", "a/."}) {
    absl::StatusOr<RootDir::Parent> parent = root.OpenParent(path);
    EXPECT_TRUE(absl::IsInvalidArgument(parent.status())) << path << ": " << parent.status();
  }
}

TEST_F(RootDirTest, MkdirParents_MakesTheParentOnly) {
  const RootDir root = OpenRoot();
  absl::StatusOr<RootDir::Parent> parent = root.MkdirParents("x/y/file", 0755);
  ASSERT_TRUE(parent.ok()) << parent.status();
  EXPECT_EQ(parent->name, "file");
  EXPECT_TRUE(stdfs::is_directory(root_path() / "x" / "y"));
  EXPECT_FALSE(stdfs::exists(root_path() / "x" / "y" / "file"));
}

// The descriptor MkdirParents returns is the parent itself, resolved inside
// the root like OpenParent's: an entry made through it lands there.
TEST_F(RootDirTest, MkdirParents_ThroughASymlinkToSlashStaysInTheRoot) {
  stdfs::create_symlink("/", root_path() / "top");
  const RootDir root = OpenRoot();
  absl::StatusOr<RootDir::Parent> parent = root.MkdirParents("top/made/file", 0755);
  ASSERT_TRUE(parent.ok()) << parent.status();
  const int fd = openat(parent->dir.get(), parent->name.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  close(fd);
  EXPECT_TRUE(stdfs::is_regular_file(root_path() / "made" / "file"));
  EXPECT_FALSE(stdfs::exists("/made"));
}

TEST_F(RootDirTest, MkdirParents_RejectsPathsThatNameNoEntryBeforeMakingAnything) {
  const RootDir root = OpenRoot();
  for (const char* path : {"", "/", "made/..", "made/."}) {
    absl::StatusOr<RootDir::Parent> parent = root.MkdirParents(path, 0755);
    EXPECT_TRUE(absl::IsInvalidArgument(parent.status())) << path << ": " << parent.status();
  }
  EXPECT_FALSE(stdfs::exists(root_path() / "made"));
}

TEST_F(RootDirTest, Lstat_ReportsTheSymlinkNotItsTarget) {
  stdfs::create_symlink("/etc/passwd", root_path() / "link");
  const RootDir root = OpenRoot();
  absl::StatusOr<struct stat> st = root.Lstat("link");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(S_ISLNK(st->st_mode));
  EXPECT_TRUE(S_ISDIR(root.Lstat("/").value().st_mode));
  EXPECT_TRUE(absl::IsNotFound(root.Lstat("missing").status()));
}

TEST_F(RootDirTest, RemoveAll_RemovesTheTreeButNotWhatSymlinksPointAt) {
  stdfs::create_directories(root_path() / "tree" / "sub");
  WriteFile(root_path() / "tree" / "sub" / "file", "x");
  stdfs::create_directory_symlink(outside_path(), root_path() / "tree" / "out");
  const RootDir root = OpenRoot();
  ASSERT_TRUE(root.RemoveAll("tree").ok());
  EXPECT_FALSE(stdfs::exists(root_path() / "tree"));
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
  EXPECT_TRUE(root.RemoveAll("tree").ok());
  EXPECT_TRUE(root.RemoveAll("no/such/parent").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(root.RemoveAll("/")));
}

}  // namespace
}  // namespace stagefarm::fs

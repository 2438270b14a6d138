// ADD of a URL against a real HTTP server on loopback
// (tests/worker/http_test_server.py).
#include "worker/copy/add_url.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace stagefarm::worker {
namespace {

using ::testing::HasSubstr;

class AddUrlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "served");
    std::filesystem::create_directories(dir_.path() / "rootfs");
    std::ofstream(dir_.path() / "served/hello.txt") << "hello over http\n";
    struct timespec times[2] = {{1'600'000'000, 0}, {1'600'000'000, 0}};
    ::utimensat(AT_FDCWD, (dir_.path() / "served/hello.txt").c_str(), times, 0);
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::string script = STAGEFARM_SOURCE_DIR "/tests/worker/http_test_server.py";
    std::string served = (dir_.path() / "served").string();
    char* argv[] = {const_cast<char*>("python3"), script.data(), served.data(), nullptr};
    ASSERT_EQ(posix_spawnp(&server_, "python3", &actions, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    FILE* from = ::fdopen(out[0], "r");
    int port = 0;
    ASSERT_EQ(std::fscanf(from, "%d", &port), 1);
    std::fclose(from);
    base_ = absl::StrCat("http://127.0.0.1:", port);
  }
  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGTERM);
      ::waitpid(server_, nullptr, 0);
    }
  }
  absl::StatusOr<Download> Add(const std::string& path, const std::string& dest,
                               DownloadOptions options = {}) {
    fs::RootDir root = *fs::RootDir::Open(dir_.path() / "rootfs");
    CopyOptions copy{.owner = std::nullopt, .reset_owner = true, .mode = std::nullopt,
                     .excludes = {}};
    return AddUrl(base_ + path, dir_.path() / "scratch", root, dest, copy, options);
  }
  std::filesystem::path Rootfs(const std::string& path) {
    return dir_.path() / "rootfs" / path;
  }

  stagefarm::testing::TempDir dir_{"add_url_test"};
  pid_t server_ = 0;
  std::string base_;
};

TEST_F(AddUrlTest, DownloadsIntoADirectoryWithMode0600AndServerTime) {
  absl::StatusOr<Download> download = Add("/files/hello.txt", "/downloads/");
  ASSERT_TRUE(download.ok()) << download.status();
  EXPECT_EQ(download->filename, "hello.txt");
  EXPECT_EQ(download->digest, digest::Sha256Of("hello over http\n"));
  struct stat info;
  ASSERT_EQ(::stat(Rootfs("downloads/hello.txt").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
  EXPECT_EQ(info.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(info.st_size, 16);
}

TEST_F(AddUrlTest, DestinationWithoutSlashIsTheFileAndRedirectsAreFollowed) {
  ASSERT_TRUE(Add("/redirect", "/renamed.txt").ok());
  EXPECT_TRUE(std::filesystem::is_regular_file(Rootfs("renamed.txt")));
}

TEST_F(AddUrlTest, ChecksumIsVerified) {
  DownloadOptions right;
  right.checksum = digest::Sha256Of("hello over http\n");
  EXPECT_TRUE(Add("/files/hello.txt", "/ok/", right).ok());
  DownloadOptions wrong;
  wrong.checksum = digest::Sha256Of("something else");
  absl::StatusOr<Download> mismatch = Add("/files/hello.txt", "/bad/", wrong);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("digest mismatch"));
  EXPECT_FALSE(std::filesystem::exists(Rootfs("bad")));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path() / "scratch"));
}

TEST_F(AddUrlTest, ServerChosenNamesCannotLeaveTheDestination) {
  absl::StatusOr<Download> download = Add("/cd", "/in/");
  ASSERT_TRUE(download.ok()) << download.status();
  EXPECT_EQ(download->filename, "evil.txt");
  EXPECT_TRUE(std::filesystem::is_regular_file(Rootfs("in/evil.txt")));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "evil.txt"));
}

TEST_F(AddUrlTest, ErrorsNameTheUrl) {
  absl::StatusOr<Download> missing = Add("/files/nope", "/x/");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(missing.status().message(), HasSubstr("HTTP status 404"));
  absl::StatusOr<Download> file = Add("/redirect-to-file", "/x/");
  EXPECT_FALSE(file.ok());
  EXPECT_FALSE(std::filesystem::exists(Rootfs("x")));
  fs::RootDir root = *fs::RootDir::Open(dir_.path() / "rootfs");
  absl::StatusOr<Download> scheme =
      AddUrl("ftp://127.0.0.1/x", dir_.path() / "scratch", root, "/x/", CopyOptions{}, {});
  EXPECT_EQ(scheme.status().code(), absl::StatusCode::kInvalidArgument);
  DownloadOptions small;
  small.max_bytes = 4;
  EXPECT_EQ(Add("/files/hello.txt", "/x/", small).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace stagefarm::worker

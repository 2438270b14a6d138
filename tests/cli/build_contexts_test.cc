// --build-context NAME=VALUE: what is accepted, and the message for what is not.
#include "cli/build_contexts.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;

class BuildContextsTest : public ::testing::Test {
 protected:
  // A directory of its own: ctest runs this fixture's tests at once.
  void SetUp() override {
    std::string pattern = (stdfs::temp_directory_path() / "build_contexts_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    stdfs::create_directories(dir_ / "lib");
    std::ofstream(dir_ / "file") << "x";
  }
  void TearDown() override { stdfs::remove_all(dir_); }

  std::string Error(const std::vector<std::string>& values) {
    absl::StatusOr<std::vector<BuildContextFlag>> parsed = ParseBuildContexts(values);
    if (parsed.ok()) return "parsed without error";
    return std::string(parsed.status().message());
  }

  stdfs::path dir_;
};

TEST_F(BuildContextsTest, DirectoryAndImageValuesAreRead) {
  const std::string lib = (dir_ / "lib").string();
  auto parsed = ParseBuildContexts({"src=" + lib, "alpine:latest=docker-image://busybox:1.36",
                                    "base=docker-image://busybox@sha256:" + std::string(64, 'a')});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ((*parsed)[0].name, "src");
  EXPECT_EQ((*parsed)[0].dir, stdfs::path(lib));
  EXPECT_FALSE((*parsed)[0].image);
  EXPECT_EQ((*parsed)[1].name, "alpine");  // matched as BuildKit matches it
  EXPECT_EQ((*parsed)[1].image->String(), "docker.io/library/busybox:1.36");
  EXPECT_EQ((*parsed)[2].image->digest, "sha256:" + std::string(64, 'a'));
}

TEST_F(BuildContextsTest, BadValuesAreErrorsNamingTheFlagAndValue) {
  EXPECT_EQ(Error({"nothing"}),
            "--build-context nothing: expected NAME=VALUE (a directory or docker-image://REF)");
  EXPECT_EQ(Error({"=dir"}), "--build-context =dir: empty name");
  EXPECT_THAT(Error({"Src=dir"}), HasSubstr("--build-context Src=dir: invalid context name Src"));
  EXPECT_EQ(Error({"src="}), "--build-context src=: empty value");
  const std::string lib = (dir_ / "lib").string();
  EXPECT_EQ(Error({"src=" + lib, "src:latest=docker-image://busybox"}),
            "--build-context src:latest=docker-image://busybox: context src is already given "
            "(--build-context src=" +
                lib + ")");
  EXPECT_THAT(Error({"src=/no/such/dir"}),
              HasSubstr("--build-context src=/no/such/dir: /no/such/dir: no such directory"));
  EXPECT_THAT(Error({"src=" + (dir_ / "file").string()}), HasSubstr(": not a directory"));
  EXPECT_THAT(Error({"img=docker-image://Bad Ref"}),
              HasSubstr("--build-context img=docker-image://Bad Ref: invalid reference format"));
  for (const std::string value :
       {"oci-layout:///tmp/layout", "target:base", "https://github.com/o/r.git",
        "git@github.com:o/r.git", "s3://bucket/x"}) {
    EXPECT_THAT(Error({"x=" + value}), HasSubstr("--build-context x=" + value + ": ")) << value;
    EXPECT_THAT(Error({"x=" + value}), HasSubstr("is not supported as a build context")) << value;
  }
}

TEST_F(BuildContextsTest, NoFlagsIsNoContexts) {
  auto parsed = ParseBuildContexts({});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

}  // namespace
}  // namespace stagefarm::cli

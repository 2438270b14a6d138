// The registry client's parsers: WWW-Authenticate challenges, Docker's
// config.json, and the references `image pull` and `image push` take.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "common/oci/image_ref.h"
#include "common/registry/auth_challenge.h"
#include "common/registry/docker_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagefarm::registry {
namespace {

using ::testing::HasSubstr;

TEST(AuthChallenge, BearerChallengeGivesRealmServiceAndScope) {
  absl::StatusOr<std::vector<AuthChallenge>> parsed = ParseAuthChallenges(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].scheme, "bearer");
  EXPECT_EQ((*parsed)[0].Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*parsed)[0].Param("service"), "registry.docker.io");
  EXPECT_EQ((*parsed)[0].Param("scope"), "repository:library/busybox:pull");
  EXPECT_EQ((*parsed)[0].Param("error"), "");
}

TEST(AuthChallenge, SchemesAndParameterNamesAreCaseInsensitive) {
  absl::StatusOr<std::vector<AuthChallenge>> parsed =
      ParseAuthChallenges(R"(BASIC Realm="Registry Realm")");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)[0].scheme, "basic");
  EXPECT_EQ((*parsed)[0].Param("realm"), "Registry Realm");
}

TEST(AuthChallenge, SeveralChallengesInOneHeaderAreAllRead) {
  absl::StatusOr<std::vector<AuthChallenge>> parsed = ParseAuthChallenges(
      R"(Bearer realm="http://127.0.0.1:1/token", scope="repository:a:pull,push repository:b:pull", Basic realm="r")");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].Param("scope"), "repository:a:pull,push repository:b:pull");
  EXPECT_EQ((*parsed)[1].scheme, "basic");
}

TEST(AuthChallenge, QuotedValuesKeepEscapedQuotesAndCommas) {
  absl::StatusOr<std::vector<AuthChallenge>> parsed =
      ParseAuthChallenges(R"(Bearer realm="a\"b,c",error=insufficient_scope)");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)[0].Param("realm"), "a\"b,c");
  EXPECT_EQ((*parsed)[0].Param("error"), "insufficient_scope");
}

TEST(AuthChallenge, MalformedHeadersAreRejectedNotGuessed) {
  EXPECT_FALSE(ParseAuthChallenges("").ok());
  EXPECT_FALSE(ParseAuthChallenges(R"(Bearer realm="unterminated)").ok());
  EXPECT_FALSE(ParseAuthChallenges(R"(Bearer realm="x" "stray")").ok());
  EXPECT_FALSE(ParseAuthChallenges("=x").ok());
}

class DockerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("docker-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path Write(const std::string& text) {
    const std::filesystem::path path = dir_ / "config.json";
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(DockerConfigTest, AuthFieldIsBase64OfUserColonPassword) {
  const std::string auth = absl::Base64Escape("alice:s3cr:et");
  const auto path = Write(R"({"auths":{"127.0.0.1:5000":{"auth":")" + auth + R"("}}})");
  absl::StatusOr<std::optional<Credentials>> credentials = LoadCredentials(path, "127.0.0.1:5000");
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  ASSERT_TRUE(credentials->has_value());
  EXPECT_EQ((*credentials)->username, "alice");
  EXPECT_EQ((*credentials)->password, "s3cr:et");  // only the first colon splits
}

TEST_F(DockerConfigTest, UrlKeysAndDockerHubsLegacyKeyNameTheirHost) {
  const std::string auth = absl::Base64Escape("bob:pw");
  const auto path = Write(R"({"auths":{"https://index.docker.io/v1/":{"auth":")" + auth +
                          R"("},"https://ghcr.io":{"username":"carol","password":"x"}}})");
  absl::StatusOr<std::optional<Credentials>> hub = LoadCredentials(path, "docker.io");
  ASSERT_TRUE(hub.ok() && hub->has_value());
  EXPECT_EQ((*hub)->username, "bob");
  absl::StatusOr<std::optional<Credentials>> ghcr = LoadCredentials(path, "ghcr.io");
  ASSERT_TRUE(ghcr.ok() && ghcr->has_value());
  EXPECT_EQ((*ghcr)->username, "carol");
}

TEST_F(DockerConfigTest, NoFileOrNoEntryMeansNoCredentials) {
  absl::StatusOr<std::optional<Credentials>> missing =
      LoadCredentials(dir_ / "absent.json", "127.0.0.1:5000");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  const auto path = Write(R"({"auths":{"other:5000":{"auth":"YTpi"}},"credsStore":"desktop"})");
  absl::StatusOr<std::optional<Credentials>> other = LoadCredentials(path, "127.0.0.1:5000");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_F(DockerConfigTest, BrokenFilesAreErrorsNamingTheFileAndKey) {
  absl::StatusOr<std::optional<Credentials>> not_json = LoadCredentials(Write("{not json"), "h:1");
  EXPECT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.status().message(), HasSubstr("config.json: not a JSON object"));
  absl::StatusOr<std::optional<Credentials>> bad_auth =
      LoadCredentials(Write(R"({"auths":{"h:1":{"auth":"bm9jb2xvbg=="}}})"), "h:1");
  EXPECT_FALSE(bad_auth.ok());
  EXPECT_THAT(bad_auth.status().message(), HasSubstr("auths.h:1.auth"));
}

TEST_F(DockerConfigTest, DockerConfigEnvironmentVariableChoosesTheDirectory) {
  ::setenv("DOCKER_CONFIG", dir_.c_str(), 1);
  EXPECT_EQ(DockerConfigPath(), dir_ / "config.json");
  EXPECT_EQ(DockerConfigDisplayName(), (dir_ / "config.json").string());
  ::unsetenv("DOCKER_CONFIG");
  EXPECT_EQ(DockerConfigDisplayName(), "~/.docker/config.json");
}

// The references pull and push take normalise as docker's do.
TEST(PullReference, ShortNamesAreDockerHubLibraryImages) {
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef("busybox");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->domain, "docker.io");
  EXPECT_EQ(ref->path, "library/busybox");
  EXPECT_EQ(ref->tag, "latest");
}

TEST(PullReference, HostWithPortOrLocalhostIsTheRegistry) {
  absl::StatusOr<oci::ImageRef> local = oci::ParseImageRef("localhost:5000/x");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->domain, "localhost:5000");
  EXPECT_EQ(local->path, "x");
  absl::StatusOr<oci::ImageRef> ip = oci::ParseImageRef("127.0.0.1:5000/team/app:1");
  ASSERT_TRUE(ip.ok());
  EXPECT_EQ(ip->domain, "127.0.0.1:5000");
  EXPECT_EQ(ip->path, "team/app");
  EXPECT_EQ(ip->tag, "1");
  absl::StatusOr<oci::ImageRef> user = oci::ParseImageRef("user/app");
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->domain, "docker.io");
  EXPECT_EQ(user->path, "user/app");
}

TEST(PullReference, DigestReferencesNeedNoTag) {
  const std::string digest =
      "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef("127.0.0.1:5000/x@" + digest);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->tag, "");
  EXPECT_EQ(ref->digest, digest);
}

}  // namespace
}  // namespace stagefarm::registry

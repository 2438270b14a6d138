#include "common/net/curve_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace stagefarm::net {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

class CurveKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("curve_keys_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteFile(const std::filesystem::path& file, const std::string& text, mode_t mode) {
    std::ofstream(file) << text;
    ASSERT_EQ(::chmod(file.c_str(), mode), 0);
  }

  static mode_t ModeOf(const std::filesystem::path& file) {
    struct stat st;
    EXPECT_EQ(::stat(file.c_str(), &st), 0);
    return st.st_mode & 0777;
  }

  std::filesystem::path dir_;
};

TEST_F(CurveKeysTest, Generate_GivesDistinctValidZ85Keys) {
  absl::StatusOr<CurveKeyPair> a = CurveKeyPair::Generate();
  absl::StatusOr<CurveKeyPair> b = CurveKeyPair::Generate();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(ValidateCurveKey(a->public_key, "test").ok());
  EXPECT_TRUE(ValidateCurveKey(a->secret_key, "test").ok());
  EXPECT_NE(a->public_key, a->secret_key);
  EXPECT_NE(a->public_key, b->public_key);
}

TEST_F(CurveKeysTest, WriteThenRead_RoundTripsWithSecretModeOnly0600) {
  absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(WriteCurveKeyPair(*keys, dir_, "worker1").ok());
  EXPECT_EQ(ModeOf(dir_ / "worker1.key"), 0600u);
  EXPECT_EQ(ModeOf(dir_ / "worker1.pub"), 0644u);

  absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "worker1");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->public_key, keys->public_key);
  EXPECT_EQ(read->secret_key, keys->secret_key);
}

TEST_F(CurveKeysTest, Write_RefusesToOverwriteAndLeavesExistingKeyIntact) {
  absl::StatusOr<CurveKeyPair> first = CurveKeyPair::Generate();
  absl::StatusOr<CurveKeyPair> second = CurveKeyPair::Generate();
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(WriteCurveKeyPair(*first, dir_, "node").ok());
  absl::Status status = WriteCurveKeyPair(*second, dir_, "node");
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("node.key"));
  absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "node");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->public_key, first->public_key);
}

TEST_F(CurveKeysTest, Write_RejectsNameWithSlash) {
  absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(WriteCurveKeyPair(*keys, dir_, "../evil").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CurveKeysTest, Read_RejectsGroupOrWorldReadableSecretNamingTheFile) {
  absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(WriteCurveKeyPair(*keys, dir_, "node").ok());
  for (mode_t mode : {0640, 0604, 0620}) {
    ASSERT_EQ(::chmod((dir_ / "node.key").c_str(), mode), 0);
    absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "node");
    EXPECT_EQ(read.status().code(), absl::StatusCode::kPermissionDenied) << mode;
    EXPECT_THAT(read.status().message(), HasSubstr((dir_ / "node.key").string()));
    EXPECT_THAT(read.status().message(), HasSubstr("chmod 600"));
  }
}

TEST_F(CurveKeysTest, Read_MissingFileIsNotFoundNamingIt) {
  absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "absent");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("absent.key"));
}

TEST_F(CurveKeysTest, Read_RejectsMalformedKeysNamingFileAndValue) {
  absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
  ASSERT_TRUE(keys.ok());
  WriteFile(dir_ / "short.key", "abc\n", 0600);
  WriteFile(dir_ / "short.pub", keys->public_key, 0644);
  absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "short");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("short.key"));
  EXPECT_THAT(read.status().message(), HasSubstr("got 3"));

  std::string bad = keys->secret_key;
  bad[7] = '"';
  WriteFile(dir_ / "alpha.key", bad, 0600);
  WriteFile(dir_ / "alpha.pub", keys->public_key, 0644);
  read = ReadCurveKeyPair(dir_, "alpha");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("alpha.key: character 8"));

  WriteFile(dir_ / "big.key", std::string(4096, 'a'), 0600);
  WriteFile(dir_ / "big.pub", keys->public_key, 0644);
  read = ReadCurveKeyPair(dir_, "big");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("too large"));
}

TEST_F(CurveKeysTest, Read_RejectsPublicKeyOfAnotherPair) {
  absl::StatusOr<CurveKeyPair> mine = CurveKeyPair::Generate();
  absl::StatusOr<CurveKeyPair> other = CurveKeyPair::Generate();
  ASSERT_TRUE(mine.ok() && other.ok());
  WriteFile(dir_ / "mixed.key", mine->secret_key, 0600);
  WriteFile(dir_ / "mixed.pub", other->public_key, 0644);
  absl::StatusOr<CurveKeyPair> read = ReadCurveKeyPair(dir_, "mixed");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("does not belong"));
}

TEST_F(CurveKeysTest, LoadAuthorizedKeys_ReadsEveryPubFileAndIgnoresOthers) {
  absl::StatusOr<CurveKeyPair> a = CurveKeyPair::Generate();
  absl::StatusOr<CurveKeyPair> b = CurveKeyPair::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(WriteCurveKeyPair(*a, dir_, "a").ok());  // a.key is not a .pub: ignored.
  WriteFile(dir_ / "b.pub", b->public_key + "\n", 0644);
  WriteFile(dir_ / "README", "not a key", 0644);
  absl::StatusOr<absl::flat_hash_set<std::string>> keys = LoadAuthorizedKeys(dir_);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_THAT(*keys, UnorderedElementsAre(a->public_key, b->public_key));
}

TEST_F(CurveKeysTest, LoadAuthorizedKeys_FailsOnMalformedFileNamingIt) {
  WriteFile(dir_ / "typo.pub", "not-a-key", 0644);
  absl::StatusOr<absl::flat_hash_set<std::string>> keys = LoadAuthorizedKeys(dir_);
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(keys.status().message(), HasSubstr("typo.pub"));
}

TEST_F(CurveKeysTest, LoadAuthorizedKeys_MissingDirectoryIsNotFound) {
  absl::StatusOr<absl::flat_hash_set<std::string>> keys = LoadAuthorizedKeys(dir_ / "nope");
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(keys.status().message(), HasSubstr("nope"));
}

}  // namespace
}  // namespace stagefarm::net

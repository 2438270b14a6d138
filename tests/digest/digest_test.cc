#include "common/digest/digest.h"

#include <random>
#include <string>
#include <unordered_set>
#include <utility>

#include "absl/hash/hash_testing.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagefarm::digest {
namespace {

using ::testing::HasSubstr;

// FIPS 180-2 / NIST example vectors.
constexpr absl::string_view kEmpty =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr absl::string_view kAbc =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr absl::string_view kTwoBlocks =
    "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr absl::string_view kMillionA =
    "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

Digest ParseOrDie(absl::string_view text) {
  absl::StatusOr<Digest> digest = Digest::Parse(text);
  EXPECT_TRUE(digest.ok()) << digest.status();
  return *std::move(digest);
}

TEST(Sha256Test, OneShot_MatchesKnownVectors) {
  EXPECT_EQ(Sha256Of("").ToString(), kEmpty);
  EXPECT_EQ(Sha256Of("abc").ToString(), kAbc);
  EXPECT_EQ(Sha256Of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").ToString(),
            kTwoBlocks);
  EXPECT_EQ(Sha256Of(std::string(1000000, 'a')).ToString(), kMillionA);
}

TEST(Sha256Test, Streaming_EqualsOneShotWhateverTheChunking) {
  std::mt19937 random(12345);
  std::string data(300000, '\0');
  for (char& c : data) c = static_cast<char>(random());
  const Digest expected = Sha256Of(data);
  for (int round = 0; round < 20; ++round) {
    Sha256 hasher;
    size_t at = 0;
    while (at < data.size()) {
      const size_t chunk = std::min(data.size() - at, static_cast<size_t>(random() % 70000));
      hasher.Update(absl::string_view(data).substr(at, chunk));
      at += chunk;
    }
    EXPECT_EQ(hasher.Finish(), expected) << "round " << round;
  }
}

TEST(Sha256Test, Streaming_MillionAInOddChunks) {
  Sha256 hasher;
  const std::string chunk(999, 'a');
  for (int i = 0; i < 1000000 / 999; ++i) hasher.Update(chunk);
  hasher.Update(std::string(1000000 % 999, 'a'));
  EXPECT_EQ(hasher.Finish().ToString(), kMillionA);
}

TEST(Sha256Test, MovedHasher_KeepsItsState) {
  Sha256 first;
  first.Update("ab");
  Sha256 second = std::move(first);
  second.Update("c");
  EXPECT_EQ(second.Finish().ToString(), kAbc);
}

TEST(Sha256Test, LengthPrefixed_IsEightByteBigEndianLengthThenBytes) {
  Sha256 hasher;
  hasher.UpdateLengthPrefixed("abc");
  EXPECT_EQ(hasher.Finish(), Sha256Of(absl::string_view("\0\0\0\0\0\0\0\3abc", 11)));
}

TEST(Sha256Test, LengthPrefixed_SameBytesCutDifferently_Differ) {
  Sha256 ab_c;
  ab_c.UpdateLengthPrefixed("ab");
  ab_c.UpdateLengthPrefixed("c");
  Sha256 a_bc;
  a_bc.UpdateLengthPrefixed("a");
  a_bc.UpdateLengthPrefixed("bc");
  EXPECT_NE(ab_c.Finish(), a_bc.Finish());
}

TEST(DigestTest, Parse_RoundTripsToString) {
  const Digest digest = ParseOrDie(kAbc);
  EXPECT_EQ(digest.algorithm(), Algorithm::kSha256);
  EXPECT_EQ(digest.hex(), kAbc.substr(7));
  EXPECT_EQ(digest.ToString(), kAbc);
  EXPECT_EQ(digest, Sha256Of("abc"));
}

TEST(DigestTest, Parse_RejectsMissingAlgorithm) {
  const absl::StatusOr<Digest> digest = Digest::Parse(kAbc.substr(7));
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(digest.status().message(), HasSubstr("expected \"<algorithm>:<hex>\""));
  EXPECT_THAT(digest.status().message(), HasSubstr(kAbc.substr(7)));
}

TEST(DigestTest, Parse_RejectsUnsupportedAlgorithm) {
  const absl::StatusOr<Digest> digest = Digest::Parse("sha512:" + std::string(128, 'a'));
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(digest.status().message(),
              HasSubstr("unsupported algorithm \"sha512\" (supported: sha256)"));
  EXPECT_FALSE(Digest::Parse("SHA256:" + std::string(kAbc.substr(7))).ok());
  EXPECT_FALSE(Digest::Parse(":" + std::string(kAbc.substr(7))).ok());
}

TEST(DigestTest, Parse_RejectsWrongLength) {
  const absl::StatusOr<Digest> digest = Digest::Parse("sha256:abc");
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(digest.status().message(),
            "invalid digest \"sha256:abc\": sha256 needs 64 hex characters, got 3");
  EXPECT_FALSE(Digest::Parse(std::string(kAbc) + "0").ok());
  EXPECT_FALSE(Digest::Parse("sha256:").ok());
}

TEST(DigestTest, Parse_RejectsUppercaseAndNonHexNamingThePosition) {
  std::string upper(kAbc);
  upper[10] = 'F';
  absl::StatusOr<Digest> digest = Digest::Parse(upper);
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(digest.status().message(), HasSubstr("character 'F' at position 10"));

  std::string non_hex(kAbc);
  non_hex.back() = 'g';
  digest = Digest::Parse(non_hex);
  EXPECT_THAT(digest.status().message(), HasSubstr("character 'g' at position 70"));

  std::string control(kAbc);
  control[7] = '\n';
  digest = Digest::Parse(control);
  EXPECT_THAT(digest.status().message(), HasSubstr("character '\\n' at position 7"));
}

TEST(DigestTest, ComparisonAndHash_FollowTheValue) {
  const Digest abc = Sha256Of("abc");
  const Digest empty = Sha256Of("");
  EXPECT_EQ(abc, ParseOrDie(kAbc));
  EXPECT_NE(abc, empty);
  EXPECT_LT(abc, empty);  // "ba78..." < "e3b0..."
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({abc, empty, Sha256Of("x")}));
  std::unordered_set<Digest, absl::Hash<Digest>> set = {abc, ParseOrDie(kAbc), empty};
  EXPECT_EQ(set.size(), 2u);
}

}  // namespace
}  // namespace stagefarm::digest

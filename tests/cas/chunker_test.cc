#include "common/cas/chunker.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/digest/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagefarm::cas {
namespace {

using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr size_t kMiB = 1024 * 1024;

// Seeded pseudo-random bytes; std::mt19937_64's output is fixed by the standard.
std::string RandomBytes(uint64_t seed, size_t size) {
  std::mt19937_64 random(seed);
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    uint64_t word = random();
    for (size_t j = 0; j < 8 && i + j < size; ++j) out[i + j] = static_cast<char>(word >> (8 * j));
  }
  return out;
}

std::vector<std::string> ChunkDigests(const std::string& data) {
  std::vector<std::string> digests;
  size_t offset = 0;
  for (size_t length : ChunkLengths(data)) {
    digests.push_back(digest::Sha256Of(absl::string_view(data).substr(offset, length)).ToString());
    offset += length;
  }
  return digests;
}

TEST(ChunkerTest, BoundariesOfSeededInputMatchGoldenList) {
  // If this fails, every chunk digest in every existing store changes: the
  // gear table, seed or sizes were modified.
  const std::vector<size_t> golden = {1050534, 1093105, 2692101, 1055468, 1697294, 800106};
  EXPECT_THAT(ChunkLengths(RandomBytes(42, 8 * kMiB)), ElementsAreArray(golden));
}

TEST(ChunkerTest, StreamingInOddPiecesGivesSameBoundariesAsWholeInput) {
  const std::string data = RandomBytes(7, 9 * kMiB + 123);
  Chunker chunker;
  std::vector<size_t> lengths;
  size_t in_chunk = 0;
  absl::string_view rest = data;
  for (size_t piece_size = 1; !rest.empty(); piece_size = piece_size * 3 % 100003 + 1) {
    absl::string_view piece = rest.substr(0, piece_size);
    rest.remove_prefix(piece.size());
    while (!piece.empty()) {
      std::optional<size_t> cut = chunker.Next(piece);
      if (!cut) {
        in_chunk += piece.size();
        break;
      }
      lengths.push_back(in_chunk + *cut);
      in_chunk = 0;
      piece.remove_prefix(*cut);
    }
  }
  ASSERT_EQ(in_chunk, chunker.pending());
  if (in_chunk > 0) lengths.push_back(in_chunk);
  EXPECT_THAT(lengths, ElementsAreArray(ChunkLengths(data)));
}

TEST(ChunkerTest, ChunksRespectMinAndMaxSize) {
  const ChunkerOptions options;
  for (const std::string& data : {RandomBytes(1, 32 * kMiB), std::string(20 * kMiB, '\0')}) {
    std::vector<size_t> lengths = ChunkLengths(data);
    ASSERT_FALSE(lengths.empty());
    size_t total = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      total += lengths[i];
      EXPECT_LE(lengths[i], options.max_size) << "chunk " << i;
      if (i + 1 < lengths.size()) {
        EXPECT_GE(lengths[i], options.min_size) << "chunk " << i;
      }
    }
    EXPECT_EQ(total, data.size());
  }
}

TEST(ChunkerTest, AverageChunkSizeIsNearOneMiB) {
  std::vector<size_t> lengths = ChunkLengths(RandomBytes(3, 64 * kMiB));
  const double average = 64.0 * kMiB / lengths.size();
  EXPECT_GT(average, 0.6 * kMiB);
  EXPECT_LT(average, 1.6 * kMiB);
}

TEST(ChunkerTest, OneByteInsertedInMiddleChangesOnlyNearbyChunks) {
  std::string original = RandomBytes(5, 32 * kMiB);
  std::string edited = original;
  edited.insert(edited.begin() + 16 * kMiB, 'x');
  std::vector<std::string> before = ChunkDigests(original);
  std::vector<std::string> after = ChunkDigests(edited);
  absl::flat_hash_set<std::string> before_set(before.begin(), before.end());
  size_t shared = 0;
  for (const std::string& chunk : after) shared += before_set.contains(chunk);
  EXPECT_GE(shared + 2, before.size()) << "only the chunk(s) around the insertion may change";
  EXPECT_GE(shared + 2, after.size());
}

TEST(ChunkerTest, EmptyInputHasNoChunks) {
  EXPECT_THAT(ChunkLengths(""), IsEmpty());
  Chunker chunker;
  EXPECT_EQ(chunker.Next(""), std::nullopt);
  EXPECT_EQ(chunker.pending(), 0u);
}

TEST(ChunkerTest, InputShorterThanMinimumIsOneChunk) {
  EXPECT_THAT(ChunkLengths(RandomBytes(9, 1000)), ElementsAreArray({size_t{1000}}));
}

}  // namespace
}  // namespace stagefarm::cas

// BlobAssembler: building a blob from a peer's chunk list, chunk by chunk.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::cas {
namespace {

using digest::Digest;
using stagefarm::testing::kMiB;
using stagefarm::testing::PutRandom;
using stagefarm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BlobAssemblerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = Open("source");
    target_ = Open("target");
  }
  std::unique_ptr<BlobStore> Open(const std::string& name) {
    absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(dir_.path() / name);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // The bytes of chunk `index` of `manifest`, read from the source store.
  std::string ChunkBytes(const BlobManifest& manifest, size_t index) {
    std::string bytes;
    EXPECT_TRUE(source_->ReadChunkBytes(manifest.chunks[index].digest, &bytes).ok());
    return bytes;
  }

  TempDir dir_{"blob_assembler_test"};
  std::unique_ptr<BlobStore> source_;
  std::unique_ptr<BlobStore> target_;
};

TEST_F(BlobAssemblerTest, ChunksInAnyOrderMakeTheBlobVisibleOnlyAtCommit) {
  absl::StatusOr<Digest> blob = PutRandom(*source_, 1, 20 * kMiB);
  ASSERT_TRUE(blob.ok()) << blob.status();
  absl::StatusOr<BlobManifest> manifest = source_->Manifest(*blob);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_GT(manifest->chunks.size(), 5u);

  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(*manifest);
  ASSERT_TRUE(assembler.ok()) << assembler.status();
  std::vector<size_t> order = (*assembler)->MissingChunks();
  ASSERT_EQ(order.size(), manifest->chunks.size());
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  for (size_t index : order) {
    EXPECT_FALSE(*target_->Has(*blob));
    ASSERT_TRUE((*assembler)->AddChunk(index, ChunkBytes(*manifest, index)).ok());
  }
  EXPECT_TRUE((*assembler)->complete());
  ASSERT_TRUE((*assembler)->Commit().ok());
  absl::StatusOr<std::pair<Digest, uint64_t>> stored =
      stagefarm::testing::HashStored(*target_, *blob);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->first, *blob);
  EXPECT_EQ(stored->second, 20 * kMiB);
}

TEST_F(BlobAssemblerTest, ChunksTheStoreHasAreNotNeededAgain) {
  absl::StatusOr<Digest> blob = PutRandom(*source_, 2, 12 * kMiB);
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(PutRandom(*target_, 2, 12 * kMiB).ok());  // same bytes, same chunks
  absl::StatusOr<BlobManifest> manifest = source_->Manifest(*blob);
  ASSERT_TRUE(target_->Delete(*blob).ok());  // chunks stay until GC
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(*manifest);
  ASSERT_TRUE(assembler.ok());
  EXPECT_THAT((*assembler)->MissingChunks(), IsEmpty());
  // The chunks are protected from GC while the assembler lives.
  ASSERT_TRUE(target_->CollectGarbage(0).ok());
  ASSERT_TRUE((*assembler)->Commit().ok());
  EXPECT_TRUE(*target_->Has(*blob));
}

TEST_F(BlobAssemblerTest, CorruptChunkIsRejectedAndCanBeAddedAgain) {
  absl::StatusOr<Digest> blob = PutRandom(*source_, 3, 3 * kMiB);
  ASSERT_TRUE(blob.ok());
  absl::StatusOr<BlobManifest> manifest = source_->Manifest(*blob);
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(*manifest);
  ASSERT_TRUE(assembler.ok());
  std::string bytes = ChunkBytes(*manifest, 0);
  bytes[bytes.size() / 2] ^= 1;
  absl::Status status = (*assembler)->AddChunk(0, bytes);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(manifest->chunks[0].digest.ToString()));
  EXPECT_EQ(target_->StoredBytes(), 0u);
  EXPECT_EQ((*assembler)->AddChunk(0, bytes.substr(1)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*assembler)->AddChunk(manifest->chunks.size(), "x").code(),
            absl::StatusCode::kOutOfRange);
  for (size_t i = 0; i < manifest->chunks.size(); ++i) {
    ASSERT_TRUE((*assembler)->AddChunk(i, ChunkBytes(*manifest, i)).ok());
  }
  EXPECT_TRUE((*assembler)->Commit().ok());
}

TEST_F(BlobAssemblerTest, ChunkListThatDoesNotHashToTheBlobStoresNothingVisible) {
  absl::StatusOr<Digest> real = PutRandom(*source_, 4, 2 * kMiB);
  absl::StatusOr<Digest> other = PutRandom(*source_, 5, 2 * kMiB);
  ASSERT_TRUE(real.ok() && other.ok());
  absl::StatusOr<BlobManifest> manifest = source_->Manifest(*other);
  manifest->digest = *real;  // a peer claims other's chunks make up real
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(*manifest);
  ASSERT_TRUE(assembler.ok());
  for (size_t i = 0; i < manifest->chunks.size(); ++i) {
    ASSERT_TRUE((*assembler)->AddChunk(i, ChunkBytes(*manifest, i)).ok());
  }
  absl::Status status = (*assembler)->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(real->ToString()));
  EXPECT_FALSE(*target_->Has(*real));
  EXPECT_FALSE(*target_->Has(*other));
  assembler->reset();
  ASSERT_TRUE(target_->CollectGarbage(1ull << 40).ok());
  EXPECT_EQ(target_->StoredBytes(), 0u);
}

TEST_F(BlobAssemblerTest, InconsistentManifestsAreRefused) {
  BlobManifest manifest{.digest = digest::Sha256Of("abc"),
                        .size = 4,
                        .chunks = {{digest::Sha256Of("abc"), 3}},
                        .media_type = ""};
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(manifest);
  EXPECT_EQ(assembler.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(assembler.status().message(), HasSubstr("add up to 3 bytes"));

  manifest.size = 0;
  manifest.chunks = {{digest::Sha256Of(""), 0}};
  EXPECT_EQ(target_->NewAssembler(manifest).status().code(), absl::StatusCode::kInvalidArgument);

  manifest.size = kMaxChunkBytes + 1;
  manifest.chunks = {{digest::Sha256Of("x"), kMaxChunkBytes + 1}};
  EXPECT_THAT(target_->NewAssembler(manifest).status().message(), HasSubstr("has length"));
}

TEST_F(BlobAssemblerTest, EmptyBlobCommitsWithoutChunks) {
  BlobManifest manifest{.digest = digest::Sha256Of(""), .size = 0, .chunks = {}, .media_type = ""};
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(manifest);
  ASSERT_TRUE(assembler.ok());
  EXPECT_TRUE((*assembler)->complete());
  ASSERT_TRUE((*assembler)->Commit().ok());
  EXPECT_THAT(*target_->ReadAll(manifest.digest), IsEmpty());
}

TEST_F(BlobAssemblerTest, CommitWithChunksMissingIsRefused) {
  absl::StatusOr<Digest> blob = PutRandom(*source_, 6, 3 * kMiB);
  absl::StatusOr<BlobManifest> manifest = source_->Manifest(*blob);
  absl::StatusOr<std::unique_ptr<BlobAssembler>> assembler = target_->NewAssembler(*manifest);
  ASSERT_TRUE(assembler.ok());
  absl::Status status = (*assembler)->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("chunks are missing"));
  EXPECT_FALSE(*target_->Has(*blob));
}

// Table files in a store's directory: a flush adds some.
size_t TableFiles(const std::filesystem::path& dir) {
  size_t count = 0;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".sst") ++count;
  }
  return count;
}

// A blob past the logged prefix leaves chunks unlogged in a memtable until
// its commit flushes them; a blob assembled meanwhile from chunks the store
// did not have commits without a flush of its own (seen: a 15,000-file
// context fetched with 450 flushes, one per blob assembled while a large
// file's chunks were unlogged).
TEST_F(BlobAssemblerTest, NewChunksCommitWithoutFlushingAnotherBlobsUnloggedChunks) {
  absl::StatusOr<Digest> large = PutRandom(*source_, 3, 12 * kMiB);
  absl::StatusOr<Digest> small = PutRandom(*source_, 4, 100 * 1024);
  ASSERT_TRUE(large.ok() && small.ok());
  absl::StatusOr<BlobManifest> large_manifest = source_->Manifest(*large);
  absl::StatusOr<BlobManifest> small_manifest = source_->Manifest(*small);
  ASSERT_TRUE(large_manifest.ok() && small_manifest.ok());

  absl::StatusOr<std::unique_ptr<BlobAssembler>> large_assembler =
      target_->NewAssembler(*large_manifest);
  ASSERT_TRUE(large_assembler.ok()) << large_assembler.status();
  for (size_t index : (*large_assembler)->MissingChunks()) {
    ASSERT_TRUE((*large_assembler)->AddChunk(index, ChunkBytes(*large_manifest, index)).ok());
  }
  const size_t tables = TableFiles(dir_.path() / "target");

  absl::StatusOr<std::unique_ptr<BlobAssembler>> small_assembler =
      target_->NewAssembler(*small_manifest);
  ASSERT_TRUE(small_assembler.ok()) << small_assembler.status();
  for (size_t index : (*small_assembler)->MissingChunks()) {
    ASSERT_TRUE((*small_assembler)->AddChunk(index, ChunkBytes(*small_manifest, index)).ok());
  }
  ASSERT_TRUE((*small_assembler)->Commit().ok());
  EXPECT_TRUE(*target_->Has(*small));
  EXPECT_EQ(TableFiles(dir_.path() / "target"), tables);

  // The large blob's own commit does flush.
  ASSERT_TRUE((*large_assembler)->Commit().ok());
  EXPECT_GT(TableFiles(dir_.path() / "target"), tables);
  absl::StatusOr<std::pair<Digest, uint64_t>> stored =
      stagefarm::testing::HashStored(*target_, *large);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->first, *large);
}

}  // namespace
}  // namespace stagefarm::cas

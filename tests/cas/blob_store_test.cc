#include "common/cas/blob_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cas/chunker.h"
#include "common/cas/read_ahead.h"
#include "common/digest/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "tests/testing/random_blobs.h"

namespace stagefarm::cas {
namespace {

using digest::Digest;
using digest::Sha256Of;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

using testing::HashStored;
using testing::kMiB;
using testing::PutRandom;
using testing::RandomBytes;
using testing::RandomStream;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "blob_store_test.XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    BlobStoreOptions options;
    options.now = [this] { return now_; };
    absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(dir_ / "cas", options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  Digest PutBytes(const std::string& bytes) {
    Digest blob = Sha256Of(bytes);
    EXPECT_TRUE(store_->Put(bytes, blob).ok());
    return blob;
  }
  // Corrupts the first chunk in key order (CorruptFirstStoredChunk) with the
  // store closed, then reopens it.
  void CorruptFirstChunk() {
    store_.reset();
    ASSERT_TRUE(testing::CorruptFirstStoredChunk(dir_ / "cas").ok());
    Reopen();
  }

  std::filesystem::path dir_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, SmallBlobsRoundTrip) {
  for (const std::string& bytes : {std::string(), std::string("x"), RandomBytes(1, 100'000)}) {
    Digest blob = Sha256Of(bytes);
    ASSERT_TRUE(store_->Put(bytes, blob, "application/octet-stream").ok());
    EXPECT_EQ(store_->Has(blob).value(), true);
    absl::StatusOr<std::string> read = store_->ReadAll(blob);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, bytes);
    absl::StatusOr<BlobInfo> info = store_->Stat(blob);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->size, bytes.size());
    EXPECT_EQ(info->chunk_count, bytes.empty() ? 0u : 1u);
    EXPECT_EQ(info->media_type, "application/octet-stream");
  }
}

// Every open replays the logs written since the last flush; a store opened
// by many short commands (each writing a little) or left with a large log
// flushes at close, so that replay stays short. Everything is still there.
TEST_F(BlobStoreTest, LogsLeftForTheNextOpenStayFewAndSmall) {
  auto logs = [this] {
    size_t count = 0;
    uint64_t bytes = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_ / "cas")) {
      if (entry.path().extension() != ".log") continue;
      ++count;
      bytes += entry.file_size();
    }
    return std::make_pair(count, bytes);
  };
  std::vector<Digest> blobs;
  for (int i = 0; i < 30; ++i) {
    blobs.push_back(PutBytes(absl::StrCat("small blob ", i)));
    Reopen();
    EXPECT_LE(logs().first, 10u) << "after " << i + 1 << " opens";
  }
  // Chunks smaller than a blob file value live in the log until a flush.
  std::string big;
  for (int i = 0; big.size() < (3u << 20); ++i) absl::StrAppend(&big, i, ",");
  blobs.push_back(PutBytes(big));
  Reopen();
  EXPECT_LT(logs().second, 1u << 20);
  for (const Digest& blob : blobs) EXPECT_TRUE(*store_->Has(blob)) << blob.ToString();
  EXPECT_EQ(store_->ReadAll(blobs.back()).value(), big);
}

TEST_F(BlobStoreTest, BlobOfExactlyChunkBoundarySizeRoundTrips) {
  const std::string data = RandomBytes(2, 8 * kMiB);
  const std::vector<size_t> lengths = ChunkLengths(data);
  ASSERT_GE(lengths.size(), 2u);
  // A prefix ending exactly at the first boundary is one whole chunk; max_size
  // bytes of zeros is one max-size chunk.
  for (const std::string& bytes : {data.substr(0, lengths[0]), std::string(4 * kMiB, '\0')}) {
    Digest blob = PutBytes(bytes);
    EXPECT_EQ(store_->Stat(blob)->chunk_count, 1u);
    EXPECT_EQ(store_->ReadAll(blob).value(), bytes);
  }
}

TEST_F(BlobStoreTest, MultiGiBBlobRoundTripsStreaming) {
  // 2 GiB from a seeded PRNG, never in memory as a whole.
  constexpr uint64_t kSize = 2048 * kMiB;
  absl::StatusOr<Digest> blob = PutRandom(*store_, 11, kSize);
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(store_->Stat(*blob)->size, kSize);
  EXPECT_EQ(store_->StoredBytes(), kSize);
  absl::StatusOr<std::pair<Digest, uint64_t>> read = HashStored(*store_, *blob);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->first, *blob);
  EXPECT_EQ(read->second, kSize);
}

TEST_F(BlobStoreTest, BlobsDifferingInOneByteShareAllButAboutOneChunk) {
  std::string bytes = RandomBytes(3, 64 * kMiB);
  PutBytes(bytes);
  const uint64_t first = store_->StoredBytes();
  EXPECT_EQ(first, 64 * kMiB);
  bytes[32 * kMiB] ^= 1;
  Digest second = PutBytes(bytes);
  const uint64_t growth = store_->StoredBytes() - first;
  EXPECT_GT(growth, 0u);
  EXPECT_LE(growth, ChunkerOptions().max_size) << "more than one chunk was stored again";
  EXPECT_EQ(store_->ReadAll(second).value(), bytes);
}

TEST_F(BlobStoreTest, CommitAsWrittenNamesTheBlobByItsContent) {
  for (const std::string& bytes : {std::string(), std::string("x"), RandomBytes(2, 5'000'000)}) {
    std::unique_ptr<BlobWriter> writer = store_->NewWriter();
    for (size_t at = 0; at < bytes.size(); at += 100'000) {
      ASSERT_TRUE(writer->Write(absl::string_view(bytes).substr(at, 100'000)).ok());
    }
    absl::StatusOr<Digest> committed = writer->CommitAsWritten("application/octet-stream");
    ASSERT_TRUE(committed.ok()) << committed.status();
    EXPECT_EQ(*committed, Sha256Of(bytes));
    absl::StatusOr<std::string> read = store_->ReadAll(*committed);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, bytes);
    EXPECT_TRUE(absl::IsFailedPrecondition(writer->CommitAsWritten().status()));
  }
}

// Seal names the blob before it is visible, so a caller can check more (an
// imported layer's diff id) and then commit without hashing it again.
TEST_F(BlobStoreTest, SealGivesTheDigestWithNothingVisibleUntilCommit) {
  for (const std::string& bytes : {std::string(), std::string("x"), RandomBytes(3, 5'000'000)}) {
    std::unique_ptr<BlobWriter> writer = store_->NewWriter();
    for (size_t at = 0; at < bytes.size(); at += 100'000) {
      ASSERT_TRUE(writer->Write(absl::string_view(bytes).substr(at, 100'000)).ok());
    }
    absl::StatusOr<Digest> sealed = writer->Seal();
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(*sealed, Sha256Of(bytes));
    EXPECT_EQ(writer->Seal().value(), *sealed);  // again: the same, not hashed anew
    EXPECT_FALSE(store_->Has(*sealed).value());
    EXPECT_TRUE(absl::IsFailedPrecondition(writer->Write("more")));
    ASSERT_TRUE(writer->Commit(*sealed, "application/octet-stream").ok());
    EXPECT_EQ(store_->ReadAll(*sealed).value(), bytes);
    EXPECT_TRUE(absl::IsFailedPrecondition(writer->Seal().status()));
  }
  // A sealed writer committed under another digest stores nothing visible.
  const std::string bytes = RandomBytes(6, 3 * kMiB);
  std::unique_ptr<BlobWriter> writer = store_->NewWriter();
  ASSERT_TRUE(writer->Write(bytes).ok());
  ASSERT_TRUE(writer->Seal().ok());
  const Digest wrong = Sha256Of("something else");
  EXPECT_EQ(writer->Commit(wrong).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store_->Has(Sha256Of(bytes)).value());
  EXPECT_FALSE(store_->Has(wrong).value());
}

TEST_F(BlobStoreTest, WrongExpectedDigestStoresNothingVisible) {
  const std::string bytes = RandomBytes(4, 3 * kMiB);
  const Digest actual = Sha256Of(bytes);
  const Digest wrong = Sha256Of("something else");
  absl::Status status = store_->Put(bytes, wrong);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(actual.ToString()));
  EXPECT_THAT(status.message(), HasSubstr(wrong.ToString()));
  EXPECT_FALSE(store_->Has(actual).value());
  EXPECT_FALSE(store_->Has(wrong).value());
  EXPECT_EQ(store_->Get(wrong).status().code(), absl::StatusCode::kNotFound);
  // The chunks it wrote are garbage, collected whatever the cap.
  ASSERT_TRUE(store_->CollectGarbage(UINT64_MAX).ok());
  EXPECT_EQ(store_->StoredBytes(), 0u);
}

TEST_F(BlobStoreTest, WrongExpectedDigestOfOneChunkBlobStoresNothingVisible) {
  // One chunk: the whole digest is taken from the chunk's, not hashed again.
  const std::string bytes = RandomBytes(5, 100'000);
  const Digest wrong = Sha256Of("something else");
  absl::Status status = store_->Put(bytes, wrong);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(Sha256Of(bytes).ToString()));
  EXPECT_FALSE(store_->Has(Sha256Of(bytes)).value());
}

TEST_F(BlobStoreTest, DestroyingAnUncommittedWriterMidBlobAbandonsThePut) {
  // Many chunks in flight to the whole-blob hashing thread, some in tiny
  // writes; the writer goes without Commit.
  const std::string bytes = RandomBytes(6, 24 * kMiB);
  for (size_t piece : {size_t{4} * kMiB, size_t{4093}}) {
    std::unique_ptr<BlobWriter> writer = store_->NewWriter();
    for (size_t offset = 0; offset < bytes.size(); offset += piece) {
      ASSERT_TRUE(writer->Write(absl::string_view(bytes).substr(offset, piece)).ok());
    }
    writer.reset();
    EXPECT_FALSE(store_->Has(Sha256Of(bytes)).value());
  }
  ASSERT_TRUE(store_->CollectGarbage(UINT64_MAX).ok());
  EXPECT_EQ(store_->StoredBytes(), 0u);
  // The same bytes written again in odd pieces commit under their digest.
  std::unique_ptr<BlobWriter> writer = store_->NewWriter();
  for (size_t offset = 0; offset < bytes.size(); offset += 1'000'003) {
    ASSERT_TRUE(writer->Write(absl::string_view(bytes).substr(offset, 1'000'003)).ok());
  }
  ASSERT_TRUE(writer->Commit(Sha256Of(bytes)).ok());
  EXPECT_EQ(store_->ReadAll(Sha256Of(bytes)).value(), bytes);
}

TEST_F(BlobStoreTest, WriterIsSpentAfterCommit) {
  std::unique_ptr<BlobWriter> writer = store_->NewWriter();
  ASSERT_TRUE(writer->Write("abc").ok());
  ASSERT_TRUE(writer->Commit(Sha256Of("abc")).ok());
  EXPECT_EQ(writer->Write("d").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer->Commit(Sha256Of("abc")).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(BlobStoreTest, RangedReadsAcrossChunkBoundaries) {
  const std::string bytes = RandomBytes(5, 8 * kMiB);
  const Digest blob = PutBytes(bytes);
  std::vector<uint64_t> boundaries;
  uint64_t offset = 0;
  for (size_t length : ChunkLengths(bytes)) boundaries.push_back(offset += length);
  ASSERT_GE(boundaries.size(), 3u);
  for (uint64_t b : {boundaries[0], boundaries[1]}) {
    EXPECT_EQ(store_->ReadAll(blob, b - 1, 2).value(), bytes.substr(b - 1, 2));
    EXPECT_EQ(store_->ReadAll(blob, b, 10).value(), bytes.substr(b, 10));
    EXPECT_EQ(store_->ReadAll(blob, b - 10, 10).value(), bytes.substr(b - 10, 10));
    EXPECT_EQ(store_->ReadAll(blob, b).value(), bytes.substr(b));
  }
  EXPECT_EQ(store_->ReadAll(blob, 100, 3 * kMiB).value(), bytes.substr(100, 3 * kMiB));
  EXPECT_EQ(store_->ReadAll(blob, 0, 0).value(), "");
  EXPECT_EQ(store_->ReadAll(blob, bytes.size()).value(), "");
  EXPECT_EQ(store_->ReadAll(blob, bytes.size() - 5, 100).value(), bytes.substr(bytes.size() - 5));
  EXPECT_EQ(store_->Get(blob, bytes.size() + 1).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(BlobStoreTest, FindMissingReturnsAbsentDigestsInOrder) {
  const Digest a = PutBytes("a");
  const Digest b = PutBytes("b");
  const Digest x = Sha256Of("x");
  const Digest y = Sha256Of("y");
  const std::vector<Digest> query = {x, a, y, b};
  EXPECT_THAT(store_->FindMissing(query).value(), ElementsAre(x, y));
  EXPECT_THAT(store_->FindMissing({}).value(), IsEmpty());

  std::vector<Digest> many;
  for (int i = 0; i < 10'000; ++i) many.push_back(Sha256Of(absl::StrCat(i)));
  many.push_back(a);
  EXPECT_EQ(store_->FindMissing(many)->size(), 10'000u);
}

TEST_F(BlobStoreTest, DeleteRemovesBlobAndRefsProtectIt) {
  const Digest a = PutBytes("a");
  ASSERT_TRUE(store_->SetRef("images/a", a).ok());
  EXPECT_EQ(store_->Delete(a).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->DeleteRef("images/a").ok());
  ASSERT_TRUE(store_->Delete(a).ok());
  EXPECT_FALSE(store_->Has(a).value());
  EXPECT_EQ(store_->Delete(a).code(), absl::StatusCode::kNotFound);
}

TEST_F(BlobStoreTest, RefsSetGetListDelete) {
  const Digest a = PutBytes("a");
  const Digest b = PutBytes("b");
  EXPECT_EQ(store_->SetRef("x", Sha256Of("absent")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->SetRef("", a).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->SetRef("img/one", a).ok());
  ASSERT_TRUE(store_->SetRef("img/two", b).ok());
  ASSERT_TRUE(store_->SetRef("other", a).ok());
  ASSERT_TRUE(store_->SetRef("img/one", b).ok());  // moving a ref
  EXPECT_EQ(store_->GetRef("img/one").value(), b);
  EXPECT_THAT(store_->ListRefs("img/").value(),
              ElementsAre(Pair("img/one", b), Pair("img/two", b)));
  EXPECT_EQ(store_->ListRefs()->size(), 3u);
  ASSERT_TRUE(store_->DeleteRef("img/one").ok());
  EXPECT_EQ(store_->GetRef("img/one").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteRef("img/one").code(), absl::StatusCode::kNotFound);
  Reopen();
  EXPECT_EQ(store_->GetRef("other").value(), a);
}

TEST_F(BlobStoreTest, CacheEntriesPutGetOverwriteDeleteAndSurviveReopen) {
  const std::string binary_key = std::string("key\0with\xff", 9) + "bytes";
  const std::string binary_value("\0\1\2value", 8);
  ASSERT_TRUE(store_->PutCacheEntry("stage/abc", "first").ok());
  ASSERT_TRUE(store_->PutCacheEntry(binary_key, binary_value).ok());
  EXPECT_EQ(store_->GetCacheEntry("stage/abc").value(), "first");
  ASSERT_TRUE(store_->PutCacheEntry("stage/abc", "second").ok());
  EXPECT_EQ(store_->GetCacheEntry("stage/abc").value(), "second");
  Reopen();
  EXPECT_EQ(store_->GetCacheEntry("stage/abc").value(), "second");
  EXPECT_EQ(store_->GetCacheEntry(binary_key).value(), binary_value);
  ASSERT_TRUE(store_->DeleteCacheEntry("stage/abc").ok());
  EXPECT_EQ(store_->GetCacheEntry("stage/abc").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetCacheEntry(binary_key).value(), binary_value);
}

TEST_F(BlobStoreTest, MissingCacheEntryIsNotFoundNamingTheKey) {
  absl::StatusOr<std::string> got = store_->GetCacheEntry("stage/missing");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("stage/missing"));
  absl::Status deleted = store_->DeleteCacheEntry("stage/missing");
  EXPECT_EQ(deleted.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(deleted.message(), HasSubstr("stage/missing"));
}

TEST_F(BlobStoreTest, CacheEntriesAreNotBlobsOrRefs) {
  const Digest blob = PutBytes("blob bytes");
  ASSERT_TRUE(store_->PutCacheEntry(blob.ToString(), "entry").ok());
  ASSERT_TRUE(store_->Delete(blob).ok());
  EXPECT_EQ(store_->GetCacheEntry(blob.ToString()).value(), "entry");
  EXPECT_EQ(store_->GetRef(blob.ToString()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BlobStoreTest, StoreMadeBeforeTheCacheFamilyOpensWithItsBlobsAndGainsIt) {
  const std::string bytes = RandomBytes(12, 3 * kMiB);
  const Digest blob = PutBytes(bytes);
  store_.reset();
  const std::string path = (dir_ / "cas").string();
  {
    // Make it a store of the layout before the cache family: drop the family
    // with RocksDB directly, leaving exactly the older families.
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const std::string& name : names) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open({}, path, families, &handles, &db).ok());
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "cache") {
        ASSERT_TRUE(db->DropColumnFamily(handles[i]).ok());
      }
    }
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    delete db;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, path, &names).ok());
    EXPECT_THAT(
        names, ElementsAre("default", "chunks", "chunk_meta", "blobs", "access", "refs", "leases"));
  }
  Reopen();
  EXPECT_EQ(store_->ReadAll(blob).value(), bytes);
  EXPECT_EQ(store_->GetCacheEntry("k").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->PutCacheEntry("k", "v").ok());
  Reopen();
  EXPECT_EQ(store_->GetCacheEntry("k").value(), "v");
  EXPECT_EQ(store_->ReadAll(blob).value(), bytes);
}

TEST_F(BlobStoreTest, GarbageCollectionKeepsLeasedAndReferencedAndEvictsLeastRecentlyUsed) {
  // Four 1 MiB blobs sharing no chunks, written a minute apart.
  std::vector<Digest> blobs;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    now_ += absl::Minutes(1);
    blobs.push_back(PutBytes(RandomBytes(100 + seed, kMiB)));
  }
  const Digest& referenced = blobs[0];  // oldest
  const Digest& leased = blobs[1];
  ASSERT_TRUE(store_->SetRef("keep", referenced).ok());
  absl::StatusOr<std::string> lease = store_->AcquireLease({&leased, 1}, absl::Hours(1));
  ASSERT_TRUE(lease.ok()) << lease.status();
  now_ += absl::Minutes(1);
  ASSERT_TRUE(store_->ReadAll(blobs[2]).ok());  // blobs[3] is now least recently used

  absl::StatusOr<GcStats> stats = store_->CollectGarbage(3 * kMiB);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->blobs_deleted, 1u);
  EXPECT_EQ(store_->StoredBytes(), 3 * kMiB);
  EXPECT_THAT(store_->FindMissing(blobs).value(), ElementsAre(blobs[3]));

  // Down to nothing: only the referenced and the leased blob survive.
  ASSERT_TRUE(store_->CollectGarbage(0).ok());
  EXPECT_THAT(store_->FindMissing(blobs).value(), ElementsAre(blobs[2], blobs[3]));
  EXPECT_EQ(store_->StoredBytes(), 2 * kMiB);

  // An expired lease protects nothing; a released one neither.
  now_ += absl::Hours(2);
  ASSERT_TRUE(store_->CollectGarbage(0).ok());
  EXPECT_THAT(store_->FindMissing(blobs).value(), ElementsAre(blobs[1], blobs[2], blobs[3]));
  EXPECT_EQ(store_->ReleaseLease(*lease).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadAll(referenced).value(), RandomBytes(100, kMiB));
}

TEST_F(BlobStoreTest, ConcurrentPutsAndGarbageCollectionNeverLeaveBrokenBlobs) {
  // Writers share chunks (the same seeds) while GC with a zero cap runs: GC may
  // delete committed blobs, but never a chunk a visible blob or open put uses.
  std::vector<Digest> blobs(8, Sha256Of(""));
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int round = 0; round < 2; ++round) {
        absl::StatusOr<Digest> blob = PutRandom(*store_, 200 + round, 6 * kMiB);
        EXPECT_TRUE(blob.ok()) << blob.status();
        if (blob.ok()) blobs[2 * t + round] = *blob;
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store_->CollectGarbage(0).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (std::thread& writer : writers) writer.join();
  for (const Digest& blob : blobs) {
    if (!store_->Has(blob).value()) continue;
    absl::StatusOr<std::pair<Digest, uint64_t>> read = HashStored(*store_, blob);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->first, blob);
  }
  ASSERT_TRUE(store_->CollectGarbage(0).ok());
  EXPECT_EQ(store_->StoredBytes(), 0u);
}

TEST_F(BlobStoreTest, ReleasedLeaseNoLongerProtects) {
  const Digest a = PutBytes(RandomBytes(7, kMiB));
  absl::StatusOr<std::string> lease = store_->AcquireLease({&a, 1}, absl::Hours(1));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(store_->CollectGarbage(0).ok());
  EXPECT_TRUE(store_->Has(a).value());
  ASSERT_TRUE(store_->ReleaseLease(*lease).ok());
  ASSERT_TRUE(store_->CollectGarbage(0).ok());
  EXPECT_FALSE(store_->Has(a).value());
  EXPECT_EQ(store_->StoredBytes(), 0u);
}

TEST_F(BlobStoreTest, GarbageCollectionKeepsChunksSharedWithSurvivingBlob) {
  std::string bytes = RandomBytes(8, 16 * kMiB);
  const Digest kept = PutBytes(bytes);
  bytes[8 * kMiB] ^= 1;
  PutBytes(bytes);  // shares most chunks with `kept`
  now_ += absl::Minutes(1);
  ASSERT_TRUE(store_->ReadAll(kept).ok());  // the second blob is least recently used
  ASSERT_TRUE(store_->CollectGarbage(16 * kMiB).ok());
  EXPECT_EQ(store_->StoredBytes(), 16 * kMiB);
  absl::StatusOr<std::pair<Digest, uint64_t>> read = HashStored(*store_, kept);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->first, kept);
}

constexpr uint64_t kCrashBlobSize = 64 * kMiB;
constexpr char kCrashChildEnv[] = "STAGEFARM_CAS_CRASH_CHILD";

// Not a test by itself (hence DISABLED_, so normal runs do not list it): the
// writer process of the test below, which starts this binary again with
// kCrashChildEnv="<store dir>:<pipe fd>". (A fork without exec would lack
// RocksDB's background threads, so flushes would never run.)
TEST(BlobStoreCrashChild, DISABLED_WritesBlobsUntilKilled) {
  const char* spec = std::getenv(kCrashChildEnv);
  if (spec == nullptr) GTEST_SKIP() << "helper process for the kill -9 test";
  const std::string text = spec;
  const size_t colon = text.rfind(':');
  const int fd = std::stoi(text.substr(colon + 1));
  absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(text.substr(0, colon));
  if (!store.ok()) _exit(2);
  for (uint64_t seed = 0;; ++seed) {
    if (!PutRandom(**store, seed, kCrashBlobSize).ok()) _exit(3);
    char done = 1;
    if (write(fd, &done, 1) != 1) _exit(4);
  }
}

TEST_F(BlobStoreTest, ReopenAfterWriterKilledMidPutShowsNoPartialBlob) {
  constexpr uint64_t kBlobSize = kCrashBlobSize;
  store_.reset();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const std::string spec = absl::StrCat((dir_ / "cas").string(), ":", ready[1]);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    setenv(kCrashChildEnv, spec.c_str(), 1);
    execl("/proc/self/exe", "blob_store_test", "--gtest_also_run_disabled_tests",
          "--gtest_filter=BlobStoreCrashChild.DISABLED_WritesBlobsUntilKilled",
          static_cast<char*>(nullptr));
    _exit(5);
  }
  close(ready[1]);
  char done = 0;
  ASSERT_EQ(read(ready[0], &done, 1), 1) << "child failed before committing one blob";
  // Kill it part-way through a later put.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  uint64_t reported = 1;
  while (read(ready[0], &done, 1) == 1) ++reported;
  close(ready[0]);

  Reopen();
  // Every blob the child committed is whole; the one it was writing is absent
  // or (if killed between its commit and the report) whole too.
  uint64_t visible = 0;
  for (uint64_t seed = 0; seed <= reported; ++seed) {
    std::string buffer;
    RandomStream stream(seed);
    digest::Sha256 hasher;
    for (uint64_t i = 0; i < kBlobSize; i += 4 * kMiB) {
      stream.Fill(&buffer, 4 * kMiB);
      hasher.Update(buffer);
    }
    const Digest blob = hasher.Finish();
    if (seed < reported) {
      ASSERT_TRUE(store_->Has(blob).value()) << "seed " << seed;
    }
    if (!store_->Has(blob).value()) continue;
    ++visible;
    absl::StatusOr<std::pair<Digest, uint64_t>> read = HashStored(*store_, blob);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->first, blob);
    EXPECT_EQ(read->second, kBlobSize);
  }
  // Orphan chunks of the killed put were swept at open.
  EXPECT_EQ(store_->StoredBytes(), visible * kBlobSize);
  // And the store still works.
  const Digest after = PutBytes("after the crash");
  EXPECT_EQ(store_->ReadAll(after).value(), "after the crash");
}

// ReadAhead's pieces, concatenated until the end or an error (returned).
absl::StatusOr<std::string> ReadAllAhead(ReadAhead& ahead, std::string* before_error = nullptr) {
  std::string all;
  while (true) {
    absl::StatusOr<absl::string_view> piece = ahead.Next();
    if (!piece.ok()) {
      if (before_error != nullptr) *before_error = all;
      return piece.status();
    }
    if (piece->empty()) return all;
    all.append(piece->data(), piece->size());
  }
}

TEST_F(BlobStoreTest, ReadAheadGivesTheBlobOrARangeOfItInOrderThenTheEnd) {
  const std::string bytes = RandomBytes(21, 24 * kMiB);
  const Digest blob = PutBytes(bytes);
  {
    ReadAhead ahead(store_->Get(blob).value(), /*depth=*/2);
    EXPECT_EQ(ReadAllAhead(ahead).value(), bytes);
    absl::StatusOr<absl::string_view> after = ahead.Next();  // the end, again
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_TRUE(after->empty());
  }
  const uint64_t offset = 3 * kMiB + 17;
  const uint64_t length = 10 * kMiB + 5;
  ReadAhead range(store_->Get(blob, offset, length).value());
  EXPECT_EQ(ReadAllAhead(range).value(), bytes.substr(offset, length));
}

TEST_F(BlobStoreTest, ReadAheadReturnsACorruptChunkInItsPlaceAndAgain) {
  const std::string bytes = RandomBytes(22, 24 * kMiB);
  const Digest blob = PutBytes(bytes);
  CorruptFirstChunk();
  ReadAhead ahead(store_->Get(blob).value());
  std::string before;
  absl::StatusOr<std::string> read = ReadAllAhead(ahead, &before);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << read.status();
  EXPECT_THAT(read.status().message(), HasSubstr("corrupt"));
  EXPECT_EQ(before, bytes.substr(0, before.size()));  // what came before it is the blob's
  EXPECT_LT(before.size(), bytes.size());
  EXPECT_EQ(ahead.Next().status(), read.status());
}

TEST_F(BlobStoreTest, ReadAheadLeftBeforeTheEndStopsItsThread) {
  const std::string bytes = RandomBytes(23, 24 * kMiB);
  const Digest blob = PutBytes(bytes);
  auto ahead = std::make_unique<ReadAhead>(store_->Get(blob).value(), /*depth=*/1);
  absl::StatusOr<absl::string_view> first = ahead->Next();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_FALSE(first->empty());
  EXPECT_EQ(*first, absl::string_view(bytes).substr(0, first->size()));
  ahead.reset();  // joins the thread, which waits for room behind a full queue
  EXPECT_EQ(store_->ReadAll(blob).value(), bytes);
}

TEST_F(BlobStoreTest, CorruptedChunkIsDetectedOnRead) {
  const std::string bytes = RandomBytes(9, 100'000);
  const Digest blob = PutBytes(bytes);
  CorruptFirstChunk();
  absl::StatusOr<std::string> read = store_->ReadAll(blob);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("corrupt"));
  // A single-chunk blob: the chunk digest is the blob digest.
  EXPECT_THAT(read.status().message(), HasSubstr("chunk " + blob.ToString()));
  EXPECT_TRUE(store_->Stat(blob).ok());
}

}  // namespace
}  // namespace stagefarm::cas

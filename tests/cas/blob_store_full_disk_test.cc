// The store on a file system that runs out of space: a small tmpfs mounted
// in the test's temp dir (tests run as root; without the right to mount they
// are skipped). Debian's librocksdb keeps assert() enabled, and RocksDB's
// error path after a failed write aborted the process; a test that dies of
// SIGABRT here is that.
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::cas {
namespace {

using digest::Digest;
using ::testing::HasSubstr;
using testing::kMiB;
using testing::PutRandom;
using testing::RandomBytes;

class BlobStoreFullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(mount_point_);
    if (mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=64m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs: " << strerror(errno) << " (tests run as root)";
    }
    mounted_ = true;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    if (mounted_) umount2(mount_point_.c_str(), MNT_DETACH);
  }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(store_dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  uint64_t FreeBytes() const {
    struct statvfs fs;
    EXPECT_EQ(statvfs(mount_point_.c_str(), &fs), 0);
    return uint64_t{fs.f_bavail} * fs.f_frsize;
  }

  // Writes a file beside the store until `left` bytes are free (or none).
  void FillLeaving(uint64_t left) {
    std::ofstream filler(filler_, std::ios::binary | std::ios::app);
    const std::string block(4096, 'x');
    while (FreeBytes() > left && filler.write(block.data(), block.size()).flush()) {
    }
  }

  testing::TempDir temp_{"blob_store_full_disk_test"};
  const std::filesystem::path mount_point_ = temp_.path() / "fs";
  const std::filesystem::path store_dir_ = mount_point_ / "cas";
  const std::filesystem::path filler_ = mount_point_ / "filler";
  bool mounted_ = false;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreFullDiskTest, PutThatDoesNotFit_IsRefusedNamingTheStoreAndTheStoreStaysWritable) {
  const std::string earlier = RandomBytes(1, kMiB);
  const Digest earlier_digest = digest::Sha256Of(earlier);
  ASSERT_TRUE(store_->Put(earlier, earlier_digest).ok());
  FillLeaving(16 * kMiB);

  const std::string big = RandomBytes(2, 32 * kMiB);
  const absl::Status put = store_->Put(big, digest::Sha256Of(big));
  EXPECT_EQ(put.code(), absl::StatusCode::kResourceExhausted) << put;
  EXPECT_THAT(put.message(), HasSubstr("no space left on device"));
  EXPECT_THAT(put.message(), HasSubstr(store_dir_.native()));
  EXPECT_FALSE(*store_->Has(digest::Sha256Of(big)));

  // RocksDB never saw the failure: the store takes what fits at once.
  EXPECT_EQ(store_->ReadAll(earlier_digest).value(), earlier);
  absl::StatusOr<Digest> small = PutRandom(*store_, 3, 100'000);
  ASSERT_TRUE(small.ok()) << small.status();
  Reopen();
  EXPECT_EQ(store_->ReadAll(earlier_digest).value(), earlier);
  EXPECT_TRUE(*store_->Has(*small));
  EXPECT_FALSE(*store_->Has(digest::Sha256Of(big)));
}

TEST_F(BlobStoreFullDiskTest, FlushThatFailsInRocksDb_StoresNothingVisibleAndTheStoreReopens) {
  const std::string earlier = RandomBytes(1, kMiB);
  const Digest earlier_digest = digest::Sha256Of(earlier);
  ASSERT_TRUE(store_->Put(earlier, earlier_digest).ok());
  // Most of this blob waits in a memtable, unlogged, for the flush at
  // Commit; the disk fills before it (another writer on the same disk), so
  // that RocksDB's flush fails rather than the store's own check.
  const std::string big = RandomBytes(2, 24 * kMiB);
  std::unique_ptr<BlobWriter> writer = store_->NewWriter();
  ASSERT_TRUE(writer->Write(big).ok());
  ASSERT_TRUE(writer->Seal().ok());
  FillLeaving(0);

  const absl::Status committed = writer->Commit(digest::Sha256Of(big));
  EXPECT_EQ(committed.code(), absl::StatusCode::kResourceExhausted) << committed;
  EXPECT_THAT(committed.message(), HasSubstr("No space left on device"));
  EXPECT_THAT(committed.message(), HasSubstr(store_dir_.native()));
  EXPECT_FALSE(*store_->Has(digest::Sha256Of(big)));
  EXPECT_EQ(store_->ReadAll(earlier_digest).value(), earlier);
  EXPECT_EQ(PutRandom(*store_, 3, 100'000).status().code(), absl::StatusCode::kResourceExhausted);

  // Closing asks nothing more of RocksDB (it waited two minutes for a flush
  // that a failed one had left queued for good).
  writer.reset();
  const absl::Time closing = absl::Now();
  store_.reset();
  EXPECT_LT(absl::Now() - closing, absl::Seconds(20));

  std::filesystem::remove(filler_);
  Reopen();
  EXPECT_EQ(store_->ReadAll(earlier_digest).value(), earlier);
  EXPECT_FALSE(*store_->Has(digest::Sha256Of(big)));
  absl::StatusOr<Digest> after = PutRandom(*store_, 4, 100'000);
  ASSERT_TRUE(after.ok()) << after.status();
}

}  // namespace
}  // namespace stagefarm::cas
